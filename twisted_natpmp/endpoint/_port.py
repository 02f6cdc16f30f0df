# -*- test-case-name: tests.endpoint.test_port -*-
"""
L{MappedListeningPort}: the L{IListeningPort} of a C{natpmp:} endpoint.  It
listens where the wrapped port listens (L{getHost} is the local address) and
keeps that port mapped on the gateway, with a
L{PortMapperService <twisted_natpmp.service.PortMapperService>} of one
declaration, for as long as it listens: the same keeper (renewals, backoff)
and gateway watch (restarts, address changes) as C{twistd natpmp}.

The public side is L{MappedListeningPort.mappedAddress}, set at each grant;
L{MappedListeningPort.whenMapped} waits for it, and observers hear every
change.  L{MappedListeningPort.stopListening} deletes the mapping, within
the service's deadline, while the wrapped port stops; it is called before
the reactor shuts down, if nothing called it before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from ipaddress import IPv4Address as _IPv4
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._types import ProtocolName
from ..interfaces import IMappingObserver
from ..service import MappingState, PortMapperService
from ..service._declared import tellObservers

__all__ = ["WHEN_MAPPED_TIMEOUT", "MappedListeningPort", "publicAddress"]

log = Logger(namespace="twisted_natpmp.endpoint")

#: How long L{MappedListeningPort.whenMapped} waits by default, in seconds.
WHEN_MAPPED_TIMEOUT = 30.0


def publicAddress(state: MappingState) -> IPv4Address | IPv6Address | None:
    """
    Where a mapping's state says the port is reached from outside: the
    external address and port, as a Twisted address of type C{"TCP"}, or
    L{None} while no mapping is held or the external address is not known.
    """
    address, port = state.externalAddress, state.externalPort
    if address is None or port is None or state.removed:
        return None
    kind = IPv4Address if isinstance(address, _IPv4) else IPv6Address
    return kind("TCP", str(address), port)


class _Phase(Enum):
    """
    The port's states.
    """

    LISTENING = "listening"
    STOPPING = "stopping"
    STOPPED = "stopped"


@implementer(IMappingObserver)
class _Relay:
    """
    Hears the service's changes for the port (so that the port itself does
    not offer C{mappingChanged}).
    """

    def __init__(self, changed: Callable[[MappingState], None]) -> None:
        self._changed = changed

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        self._changed(state)


@implementer(IListeningPort)
class MappedListeningPort:
    """
    A listening port kept mapped on the gateway.

    @ivar wrappedPort: the wrapped endpoint's port.
    @ivar mappedAddress: where the port is reached from outside (the
        gateway's external address and the external port granted, an
        L{IPv4Address <twisted.internet.address.IPv4Address>} or
        L{IPv6Address <twisted.internet.address.IPv6Address>} of type
        C{"TCP"}), or L{None} while no mapping is held.
    @ivar state: the mapping's last
        L{MappingState <twisted_natpmp.service.MappingState>}, or L{None}
        before the first change.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        wrappedPort: IListeningPort,
        makeService: Callable[[int], PortMapperService],
    ) -> None:
        """
        Start keeping C{wrappedPort}'s port mapped.

        @param reactor: the clock of the timeouts and of the observers'
            calls.
        @param wrappedPort: the port, listening.
        @param makeService: makes the (not yet started) service that keeps
            the given TCP port mapped.
        """
        self._reactor = reactor
        self.wrappedPort = wrappedPort
        self._makeService = makeService
        self.mappedAddress: IPv4Address | IPv6Address | None = None
        self.state: MappingState | None = None
        self._observers: list[IMappingObserver] = []
        self._waiting: list[Deferred[IPv4Address | IPv6Address]] = []
        self._service: PortMapperService | None = None
        self._stopWaiters: list[Deferred[None]] = []
        self._toldFailure = False
        self._shutdown: object = None
        self._internalPort = 0
        self._phase = _Phase.STOPPED
        self._startMapping()

    def __repr__(self) -> str:
        return (
            f"<MappedListeningPort {self._describe()} -> {self._public()}"
            f" ({self._phase.value})>"
        )

    def _describe(self) -> str:
        # (The port as mapped: a stopped port may not tell its address.)
        return f"tcp port {self._internalPort}"

    def _public(self) -> str:
        address = self.mappedAddress
        return "not mapped" if address is None else f"{address.host}:{address.port}"

    def _startMapping(self) -> None:
        """
        Start the service that keeps the wrapped port's port mapped.

        @raise Exception: whatever making or starting the service raised;
            the port is then still stopped (the caller stops the wrapped
            port), and no shutdown trigger is left behind.
        """
        port: int = self.wrappedPort.getHost().port  # type: ignore[attr-defined]
        self._internalPort = port
        service = self._makeService(port)
        service.addObserver(_Relay(self._changed))
        service.startService()
        self._service = service
        self._phase = _Phase.LISTENING
        if IReactorCore.providedBy(self._reactor):
            # When the reactor stops, stop (and delete the mapping) first,
            # as twistd's endpoint service does.
            self._shutdown = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self._reactorStopping
            )

    def _reactorStopping(self) -> Deferred[None]:
        self._shutdown = None
        return self.stopListening()

    # What the service tells

    def _changed(self, state: MappingState) -> None:
        """
        The mapping changed.  (Called from within the keeper's report: only
        the state given is read here, and whoever waits is told on the next
        turn of the reactor, so that they may stop the port or ask anything
        of it.)
        """
        self.state = state
        address = publicAddress(state)
        if address is not None:
            self._toldFailure = False
            if address != self.mappedAddress:
                protocol = state.protocolName or ProtocolName.NATPMP
                log.info(
                    "{local} is reachable from outside at {address}:{port}"
                    " (gateway {gateway}, {protocol}){note}",
                    local=self._describe(),
                    address=address.host,
                    port=address.port,
                    gateway=str(state.gateway),
                    protocol=protocol.display,
                    note=(
                        "; but that address is private: a second NAT stands"
                        " between it and the Internet"
                        if state.doubleNAT
                        else ""
                    ),
                )
        elif state.error is not None and not self._toldFailure and not state.removed:
            # (The keeper, or the gateway watch, warned of the failure
            # itself; this says what it means for the port, once.)
            self._toldFailure = True
            log.info(
                "{local} listens, but is not reachable from outside yet:"
                " {error}; still trying",
                local=self._describe(),
                error=str(state.error),
            )
        self.mappedAddress = address
        self._reactor.callLater(0, self._tell, state, address)

    def _tell(
        self, state: MappingState, address: IPv4Address | IPv6Address | None
    ) -> None:
        if address is not None:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(address)
        tellObservers(self._observers, state)

    # The public side

    def addObserver(self, observer: IMappingObserver) -> None:
        """
        Call C{observer.mappingChanged(state)} with the mapping's
        L{MappingState <twisted_natpmp.service.MappingState>} on every change
        (granted, renewed, moved, failed, expired, removed), on the turn of
        the reactor after it.
        """
        self._observers.append(observer)

    def removeObserver(self, observer: IMappingObserver) -> None:
        """
        Stop calling C{observer}.
        """
        self._observers.remove(observer)

    def whenMapped(
        self, timeout: float | None = WHEN_MAPPED_TIMEOUT
    ) -> Deferred[IPv4Address | IPv6Address]:
        """
        Wait until the port is reached from outside.

        @param timeout: the longest wait, in seconds (finite, 0 or more);
            L{None}: until the port stops.
        @return: fires with L{mappedAddress} once a mapping is held (at once
            if one is); fails with L{TimeoutError
            <twisted.internet.defer.TimeoutError>} after C{timeout} seconds,
            saying why if a request failed, or with L{CancelledError
            <twisted.internet.defer.CancelledError>} when the port stops
            first.
        @raise ValueError: C{timeout} is negative or not finite, named.
        """
        if timeout is not None and not (math.isfinite(timeout) and timeout >= 0):
            raise ValueError(
                f"timeout {timeout!r} is not a finite number of seconds, 0 or more"
            )
        if self.mappedAddress is not None:
            return succeed(self.mappedAddress)
        if self._phase is not _Phase.LISTENING:
            return fail(CancelledError(f"{self._describe()} is not listening"))

        def cancel(d: Deferred[Any]) -> None:
            # (The timer, if any, is cancelled as the wait fails: done.)
            if d in self._waiting:
                self._waiting.remove(d)

        d: Deferred[IPv4Address | IPv6Address] = Deferred(cancel)
        self._waiting.append(d)
        if timeout is not None:
            timer = self._reactor.callLater(timeout, self._timedOut, d, timeout)

            def done(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            d.addBoth(done)
        return d

    def _timedOut(self, d: Deferred[Any], timeout: float) -> None:
        if d not in self._waiting:
            return
        self._waiting.remove(d)
        d.errback(TimeoutError(self._timeoutMessage(timeout)))

    def _timeoutMessage(self, timeout: float) -> str:
        text = f"{self._describe()} was not mapped within {timeout:g} s"
        error = None if self.state is None else self.state.error
        return text if error is None else f"{text}: {error}"

    # IListeningPort

    def getHost(self) -> IPv4Address | IPv6Address:
        """
        The local address the wrapped port listens on (as
        L{IListeningPort.getHost} promises; the public one is
        L{mappedAddress}): a TCP address, as the endpoint checked.
        """
        return cast("IPv4Address | IPv6Address", self.wrappedPort.getHost())

    def startListening(self) -> None:
        """
        Listen again after L{stopListening}, and map the port bound (which,
        for a wrapped C{tcp:0}, may be another one).  Nothing while
        listening or stopping.

        @raise Exception: what the wrapped port's C{startListening} raised,
            or what starting the mapping raised (the wrapped port is then
            stopped again).
        """
        if self._phase is _Phase.STOPPED:
            self.wrappedPort.startListening()
            try:
                self._startMapping()
            except BaseException:
                # Listen only while mapped: stop the wrapped port again.
                maybeDeferred(self.wrappedPort.stopListening).addErrback(
                    lambda failure: log.failure(
                        "{local} did not stop", failure, local=self._describe()
                    )
                )
                raise

    def stopListening(self) -> Deferred[None]:
        """
        Delete the mapping and stop the wrapped port, both at once.

        @return: fires once the wrapped port stopped and the gateway
            confirmed the deletion, or its deadline passed (a gateway that
            never answers does not hold the port open); fails if the wrapped
            port fails to stop.
        """
        if self._phase is _Phase.STOPPED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stopWaiters.append(d)
        if self._phase is _Phase.STOPPING:
            return d
        self._phase = _Phase.STOPPING
        shutdown, self._shutdown = self._shutdown, None
        if shutdown is not None:
            cast(IReactorCore, self._reactor).removeSystemEventTrigger(shutdown)
        service, self._service = self._service, None
        assert service is not None
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            w.errback(CancelledError(f"{self._describe()} stopped listening"))
        both: list[Deferred[Any]] = [
            maybeDeferred(self.wrappedPort.stopListening),
            service.stopService(),
        ]
        # Stopped once both are done, even if the wrapped port fails to stop
        # (the deletion may still be in flight).
        DeferredList(both, consumeErrors=True).addCallback(self._stopped)
        return d

    def _stopped(self, results: list[tuple[bool, Any]]) -> None:
        self._phase = _Phase.STOPPED
        self.mappedAddress = None
        # The wrapped port's failure first: it is the one a caller can act on.
        failures = [result for ok, result in results if not ok]
        outcome: Failure | None = failures[0] if failures else None
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            if outcome is None:
                d.callback(None)
            else:
                d.errback(outcome)
