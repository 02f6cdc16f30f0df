"""
L{PortMapperService}: an L{IService} that keeps a declared set of ports
mapped on the NAT-PMP gateway for as long as it runs.

It talks to an L{IPortMapper} (the L{NATPMPClient} by default), never to
packets.  What it does, and where RFC 6886 asks for it:

  - maps every declaration when it starts, and renews each at half the
    lifetime the gateway I{granted} (s3.3), suggesting the external port it
    holds;
  - retries a failed request after a capped exponential backoff, for as long
    as it runs: a declaration is never forgotten;
  - re-maps everything, after a random 0-5 s hold-off and one request at a
    time, each suggesting the external port held before (s3.7), when the
    gateway is seen to have lost its state (s3.6), or when it announces
    itself on 224.0.0.1:5350 (s3.2.1, or a PCP ANNOUNCE, RFC 6887 s14.1,
    which is what miniupnpd sends when it starts) with news: a new epoch,
    a new external address, or a mapping waiting to be retried;
  - asks for the external address every C{healthInterval} seconds, so a
    gateway reboot is noticed even when no announcement arrives (s3.6);
  - follows the default gateway when it changes;
  - reports a private external address (RFC 1918 or 100.64/10): the host is
    behind a second NAT;
  - deletes every mapping when it stops (s3.4), quickly (s3.1 lets a client
    try a deletion only once or twice).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, cast

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorMulticast,
    IReactorTime,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._epoch import EpochTracker
from ._types import Mapping
from ._wire import RECOMMENDED_LIFETIME, Protocol
from .announce import (
    Announcement,
    AnnouncementKind,
    AnnouncementProtocol,
    listenAnnouncements,
)
from .client import listenClient
from .discovery import defaultGateway
from .errors import NoGatewayError, NoResponseError
from .interfaces import IMappingObserver, IPortMapper

__all__ = [
    "MappingDeclaration",
    "MappingState",
    "PortMapperService",
    "isPrivateAddress",
]

log = Logger()

#: RFC 6886 s3.7: wait a random time, uniform in 0-5 s, before re-mapping.
MAX_HOLD_OFF = 5.0
#: The default interval of the external-address health check, in seconds.
HEALTH_INTERVAL = 60.0
#: The default interval between default-gateway checks, in seconds.
GATEWAY_CHECK_INTERVAL = 60.0
#: Retransmission schedule of the deletions sent when stopping or removing
#: (RFC 6886 s3.1: a deletion may be tried only once or twice).
STOP_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0)
#: Retransmission schedule of the health check: short, so that it does not
#: hold up the request queue (RFC 6886 s3.1) for two minutes when the gateway
#: is away; a missed check is only logged.
HEALTH_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
#: However many mappings remain, stopping gives up on them after this long.
STOP_DEADLINE = 5.0

#: External addresses that mean a second NAT: RFC 1918, and RFC 6598's
#: shared address space (carrier-grade NAT).
_PRIVATE_NETWORKS = tuple(
    IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def isPrivateAddress(address: IPv4Address) -> bool:
    """
    Is C{address} private (RFC 1918) or shared (RFC 6598, 100.64/10)?  A
    gateway with such an external address is itself behind another NAT.
    """
    return any(address in network for network in _PRIVATE_NETWORKS)


def _randomHoldOff() -> float:
    return random.uniform(0.0, MAX_HOLD_OFF)


def defaultBackoff(
    jitter: Callable[[], float] = random.random,
) -> Callable[[int], float]:
    """
    The default retry policy: 1 s after the first failure, doubling up to 5
    minutes, plus C{jitter()} seconds (0 to 1 by default).  (Each failure of
    the default client already took up to 127.75 s of retransmissions, RFC
    6886 s3.1.)
    """
    return backoffPolicy(initialDelay=1.0, maxDelay=300.0, factor=2.0, jitter=jitter)


@dataclass(frozen=True, slots=True)
class MappingDeclaration:
    """
    A port the service is asked to keep mapped.

    @ivar protocol: UDP or TCP.
    @ivar internalPort: the port on this host.
    @ivar externalPort: the external port to suggest at first (L{None}: the
        internal port).  Once granted a port, the service suggests that one.
    @ivar lifetime: the lifetime to request, in seconds.
    """

    protocol: Protocol
    internalPort: int
    externalPort: int | None = None
    lifetime: int = RECOMMENDED_LIFETIME

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", Protocol(self.protocol))
        if not 1 <= self.internalPort <= 0xFFFF:
            raise ValueError(f"internal port {self.internalPort!r} is not 1-65535")
        if self.externalPort is not None and not 1 <= self.externalPort <= 0xFFFF:
            raise ValueError(f"external port {self.externalPort!r} is not 1-65535")
        if not 1 <= self.lifetime <= 0xFFFFFFFF:
            raise ValueError(f"lifetime {self.lifetime!r} is not 1-4294967295 s")

    @property
    def key(self) -> tuple[Protocol, int]:
        """
        What identifies a mapping on the gateway: protocol and internal port.
        """
        return (self.protocol, self.internalPort)

    def __str__(self) -> str:
        text = f"{self.protocol.label}:{self.internalPort}"
        if self.externalPort is not None:
            text += f":{self.externalPort}"
        return text


@dataclass(frozen=True, slots=True)
class MappingState:
    """
    What the service knows of one declaration, as observers see it.

    @ivar declaration: what was declared.
    @ivar gateway: the gateway asked, if any.
    @ivar externalAddress: the gateway's external address, if known.
    @ivar externalPort: the external port held, or L{None} if no mapping is
        held.
    @ivar lifetime: the lifetime the gateway granted, if a mapping is held.
    @ivar expires: when the mapping expires, in the reactor's seconds.
    @ivar error: why the last request failed, if it did (cleared by the next
        success).  A mapping may still be held until it expires.
    @ivar doubleNAT: the external address is private: the host is behind a
        second NAT and the mapping does not make it reachable from the
        Internet.
    @ivar removed: the declaration was removed, or the service stopped.
    """

    declaration: MappingDeclaration
    gateway: IPv4Address | None = None
    externalAddress: IPv4Address | None = None
    externalPort: int | None = None
    lifetime: int | None = None
    expires: float | None = None
    error: BaseException | None = None
    doubleNAT: bool = False
    removed: bool = False

    @property
    def mapped(self) -> bool:
        """
        Is a mapping held?
        """
        return self.externalPort is not None

    def describe(self) -> str:
        """
        One line for a person.
        """
        if self.mapped:
            where = f"{self.externalAddress or '?'}:{self.externalPort}"
            text = f"{self.declaration} -> {where}"
            if self.doubleNAT:
                text += " (behind a second NAT)"
            return text
        if self.removed:
            return f"{self.declaration} removed"
        if self.error is not None:
            return f"{self.declaration} not mapped: {self.error}"
        return f"{self.declaration} not mapped yet"


class _Entry:
    """
    The service's bookkeeping for one declaration.
    """

    def __init__(self, declaration: MappingDeclaration) -> None:
        self.declaration = declaration
        self.mapping: Mapping | None = None
        self.expires: float | None = None
        self.error: BaseException | None = None
        #: The external port last granted: suggested again (s3.3, s3.7).
        self.heldPort: int | None = None
        self.failures = 0
        #: The pending renewal or retry.
        self.timer: IDelayedCall | None = None
        self.expiry: IDelayedCall | None = None
        #: The request in flight, if any; fires with None once handled.
        self.request: Deferred[None] | None = None
        self.waiters: list[Deferred[MappingState]] = []

    def cancelTimers(self) -> None:
        for call in (self.timer, self.expiry):
            if call is not None and call.active():
                call.cancel()
        self.timer = self.expiry = None

    def cancelRequest(self) -> bool:
        """
        Cancel the request in flight; return whether there was one.
        """
        request, self.request = self.request, None
        if request is None:
            return False
        request.cancel()
        return True

    def forgetMapping(self) -> None:
        self.mapping = None
        self.expires = None


class PortMapperService(Service):
    """
    Keep declared ports mapped on the gateway while the service runs.

    Declarations are given to the constructor or added and removed with
    L{addMapping} and L{removeMapping} at any time.  L{states} tells what
    each one holds; observers (L{IMappingObserver}) hear every change.

    @ivar gateway: the gateway in use, or L{None} before one is known.
    @ivar externalAddress: the gateway's external address, if known.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        mappings: Iterable[MappingDeclaration] = (),
        *,
        gateway: IPv4Address | str | None = None,
        discoverGateway: Callable[[], IPv4Address] = defaultGateway,
        clientFactory: Callable[[IPv4Address], IPortMapper] | None = None,
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None]
        | None = None,
        holdOff: Callable[[], float] = _randomHoldOff,
        healthInterval: float = HEALTH_INTERVAL,
        gatewayCheckInterval: float = GATEWAY_CHECK_INTERVAL,
        backoff: Callable[[int], float] | None = None,
        stopTimeouts: Sequence[float] = STOP_TIMEOUTS,
        stopDeadline: float = STOP_DEADLINE,
    ) -> None:
        """
        @param reactor: the clock; also the UDP and multicast reactor of the
            default C{clientFactory} and C{announcements}.
        @param mappings: the initial declarations.
        @param gateway: the gateway to use; L{None} finds the default
            gateway with C{discoverGateway} and follows it as it changes.
        @param discoverGateway: returns the default gateway, or raises
            L{NoGatewayError}.
        @param clientFactory: makes a listening L{IPortMapper} for a gateway
            (one per gateway; one with a C{stop()} method is stopped when
            done with); by default a L{twisted_natpmp.client.NATPMPClient}.
        @param announcements: starts listening with an L{AnnouncementProtocol}
            and returns the port, or L{None} for none; by default it binds
            224.0.0.1:5350 (a failure to bind is logged, not fatal).
        @param holdOff: returns the seconds to wait before re-mapping after a
            loss of state (RFC 6886 s3.7: uniform in 0-5 s).
        @param healthInterval: seconds between external-address checks.
        @param gatewayCheckInterval: seconds between default-gateway checks
            (only when C{gateway} is not given).
        @param backoff: given the number of failures so far, returns the
            seconds to wait before retrying (like the C{retryPolicy} of
            L{twisted.application.internet.ClientService}); by default
            L{defaultBackoff}.
        @param stopTimeouts: the retransmission schedule of deletions.
        @param stopDeadline: the longest L{stopService} waits for deletions.
        """
        self._reactor = reactor
        self._entries: dict[tuple[Protocol, int], _Entry] = {}
        for declaration in mappings:
            self._declare(declaration)
        self._fixedGateway = None if gateway is None else IPv4Address(gateway)
        self._discoverGateway = discoverGateway
        self._clientFactory = clientFactory or self._defaultClient
        self._announcements = announcements or self._defaultAnnouncements
        self._holdOff = holdOff
        self._healthInterval = healthInterval
        self._gatewayCheckInterval = gatewayCheckInterval
        self._backoff = backoff or defaultBackoff()
        self._stopTimeouts = tuple(stopTimeouts)
        self._stopDeadline = stopDeadline
        self._observers: list[IMappingObserver] = []

        self.gateway: IPv4Address | None = None
        self.externalAddress: IPv4Address | None = None
        self._client: IPortMapper | None = None
        self._announcer: AnnouncementProtocol | None = None
        self._announcePort: IListeningPort | None = None
        self._healthLoop: LoopingCall | None = None
        self._gatewayLoop: LoopingCall | None = None
        self._healthRequest: Deferred[None] | None = None
        self._recoveryCall: IDelayedCall | None = None
        self._recovery: Deferred[None] | None = None
        #: Where the re-mapping under way is: "address", "mappings" or None.
        self._remapStage: str | None = None
        #: Why to re-map again once the one under way is done, if need be.
        self._remapAgain: str | None = None
        self._pcpEpochs = EpochTracker()
        self._gatewayMissing = False

    # Declarations

    @property
    def doubleNAT(self) -> bool:
        """
        Is the gateway's external address private (a second NAT upstream)?
        """
        return self.externalAddress is not None and isPrivateAddress(
            self.externalAddress
        )

    def states(self) -> list[MappingState]:
        """
        The state of every declaration, in the order declared.
        """
        return [self._state(entry) for entry in self._entries.values()]

    def state(self, protocol: Protocol, internalPort: int) -> MappingState:
        """
        The state of one declaration.

        @raise KeyError: nothing is declared for C{protocol} and
            C{internalPort}.
        """
        return self._state(self._entries[(Protocol(protocol), internalPort)])

    def addMapping(
        self,
        protocol: Protocol,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = RECOMMENDED_LIFETIME,
    ) -> Deferred[MappingState]:
        """
        Declare a port to keep mapped, and map it now if the service runs.

        @return: fires with the declaration's state after the first attempt
            (mapped, or with its error: the service keeps trying either way),
            or at once if the service is not running or has no gateway; fails
            with L{ValueError} for a bad or duplicate declaration.
        """
        try:
            declaration = MappingDeclaration(
                Protocol(protocol), internalPort, externalPort, lifetime
            )
            entry = self._declare(declaration)
        except ValueError as e:
            return fail(e)
        if not self.running or self._client is None:
            return succeed(self._state(entry))
        waiter: Deferred[MappingState] = Deferred(
            lambda d: entry.waiters.remove(d) if d in entry.waiters else None
        )
        entry.waiters.append(waiter)
        self._request(entry)
        return waiter

    def removeMapping(self, protocol: Protocol, internalPort: int) -> Deferred[None]:
        """
        Forget a declaration and delete its mapping from the gateway.

        @return: fires when the gateway confirmed the deletion (or at once if
            nothing was mapped); fails with the deletion's error, or with
            L{KeyError} if nothing is declared for that port.
        """
        try:
            entry = self._entries.pop((Protocol(protocol), internalPort))
        except (KeyError, ValueError) as e:
            return fail(e)
        entry.cancelTimers()
        held = entry.cancelRequest() or entry.mapping is not None
        entry.forgetMapping()
        self._changed(entry, removed=True)
        client = self._client
        if not self.running or client is None or not held:
            return succeed(None)
        d = self._quickDelete(client, entry.declaration)
        d.addCallback(lambda _: log.info("removed {what}", what=entry.declaration))
        return d

    def addObserver(self, observer: IMappingObserver) -> None:
        """
        Call C{observer.mappingChanged(state)} on every change of state.
        """
        self._observers.append(observer)

    def removeObserver(self, observer: IMappingObserver) -> None:
        """
        Stop calling C{observer}.
        """
        self._observers.remove(observer)

    # IService

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._startAnnouncements()
        gateway = self._fixedGateway or self._discover()
        if gateway is not None:
            self._useGateway(gateway)
        self._healthLoop = self._loop(self._healthCheck, self._healthInterval)
        if self._fixedGateway is None:
            self._gatewayLoop = self._loop(
                self._checkGateway, self._gatewayCheckInterval
            )

    def stopService(self) -> Deferred[None]:
        """
        Stop keeping ports mapped and delete every mapping held.

        @return: fires when the gateway confirmed every deletion, or after
            at most C{stopDeadline} seconds.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        for loop in (self._healthLoop, self._gatewayLoop):
            if loop is not None and loop.running:
                loop.stop()
        self._healthLoop = self._gatewayLoop = None
        # What may be mapped on the gateway is known before anything is
        # cancelled: cancelling a re-mapping cancels the request it awaits,
        # and a request in flight may have been granted.
        held = [
            entry
            for entry in self._entries.values()
            if entry.request is not None or entry.mapping is not None
        ]
        self._cancelRecovery()
        self._cancelHealthRequest()
        waits: list[Deferred[Any]] = []
        port, self._announcePort = self._announcePort, None
        if port is not None:
            waits.append(maybeDeferred(port.stopListening))
        self._announcer = None
        client = self._client
        for entry in self._entries.values():
            entry.cancelTimers()
            entry.cancelRequest()
        if client is not None:
            waits.append(self._deleteAll(client, held))
        return DeferredList(waits, consumeErrors=True).addCallback(self._stopped)

    # Internals: gateways and clients

    def _defaultClient(self, gateway: IPv4Address) -> IPortMapper:
        return listenClient(self._reactor, gateway)

    def _defaultAnnouncements(
        self, protocol: AnnouncementProtocol
    ) -> IListeningPort | None:
        if not hasattr(self._reactor, "listenMulticast"):
            log.warn(
                "the reactor cannot listen for gateway announcements; the health"
                " check every {interval} s will notice a gateway reboot",
                interval=self._healthInterval,
            )
            return None
        try:
            return listenAnnouncements(cast(IReactorMulticast, self._reactor), protocol)
        except CannotListenError as e:
            log.warn(
                "not listening for gateway announcements ({error}); the health"
                " check every {interval} s will notice a gateway reboot",
                error=e,
                interval=self._healthInterval,
            )
            return None

    def _startAnnouncements(self) -> None:
        self._announcer = AnnouncementProtocol(self.gateway, self._announced)
        self._announcePort = self._announcements(self._announcer)

    def _discover(self) -> IPv4Address | None:
        try:
            gateway = self._discoverGateway()
        except NoGatewayError as e:
            if not self._gatewayMissing:
                log.warn("no gateway: {error}", error=e)
                self._gatewayMissing = True
                for entry in self._entries.values():
                    entry.error = e
                    self._changed(entry)
            return None
        except Exception:
            log.failure("finding the default gateway failed")
            return None
        self._gatewayMissing = False
        return gateway

    def _useGateway(self, gateway: IPv4Address) -> None:
        log.info("using NAT-PMP gateway {gateway}", gateway=gateway)
        self.gateway = gateway
        client = self._clientFactory(gateway)
        client.addStateLossObserver(self._stateLost)
        self._client = client
        if self._announcer is not None:
            self._announcer.gateway = gateway
        self._askExternalAddress(client)
        for entry in self._entries.values():
            self._request(entry)

    def _releaseClient(self) -> Deferred[None]:
        client, self._client = self._client, None
        if client is None:
            return succeed(None)
        client.removeStateLossObserver(self._stateLost)
        stop = getattr(client, "stop", None)
        if stop is None:
            return succeed(None)
        return maybeDeferred(stop).addCallback(lambda _: None)

    def _checkGateway(self) -> None:
        gateway = self._discover()
        if gateway is None or gateway == self.gateway:
            return
        if self.gateway is not None:
            log.info(
                "the default gateway changed from {old} to {new}: moving the mappings",
                old=self.gateway,
                new=gateway,
            )
        # Mappings on the old gateway are left to expire: it is most likely
        # out of reach now (the host moved to another network).
        self._cancelRecovery()
        self._cancelHealthRequest()
        for entry in self._entries.values():
            entry.cancelTimers()
            entry.cancelRequest()
            entry.forgetMapping()
            entry.heldPort = None
            entry.failures = 0
        self._releaseClient().addErrback(
            lambda f: log.failure("stopping the old client failed", f)
        )
        self.externalAddress = None
        self._pcpEpochs.reset()
        self.gateway = gateway
        for entry in self._entries.values():
            self._changed(entry)
        self._useGateway(gateway)

    # Internals: mapping

    def _declare(self, declaration: MappingDeclaration) -> _Entry:
        if declaration.key in self._entries:
            raise ValueError(
                f"{declaration.protocol.label} port {declaration.internalPort}"
                " is already declared"
            )
        entry = _Entry(declaration)
        self._entries[declaration.key] = entry
        return entry

    def _request(self, entry: _Entry) -> Deferred[None]:
        """
        Map or renew C{entry} now, unless a request for it is in flight.

        @return: fires (with L{None}) once the outcome is handled.
        """
        if entry.request is not None:
            return entry.request
        client = self._client
        if not self.running or client is None:
            return succeed(None)
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        declaration = entry.declaration
        suggested = entry.heldPort or declaration.externalPort
        requested = client.addMapping(
            declaration.protocol,
            declaration.internalPort,
            suggested,
            declaration.lifetime,
        )
        handled = requested.addCallbacks(
            self._granted,
            self._failed,
            callbackArgs=(entry, client),
            errbackArgs=(entry, client),
        )
        if not handled.called:
            entry.request = handled
        return handled

    def _current(self, entry: _Entry, client: IPortMapper) -> bool:
        return (
            bool(self.running)
            and client is self._client
            and self._entries.get(entry.declaration.key) is entry
        )

    def _granted(self, mapping: Mapping, entry: _Entry, client: IPortMapper) -> None:
        entry.request = None
        if not self._current(entry, client):
            return
        previous = entry.mapping
        now = self._reactor.seconds()
        entry.mapping = mapping
        entry.heldPort = mapping.externalPort
        entry.error = None
        entry.failures = 0
        entry.expires = now + mapping.lifetime
        entry.cancelTimers()
        # RFC 6886 s3.3: renew halfway to expiry, by the GRANTED lifetime.
        entry.timer = self._reactor.callLater(mapping.lifetime / 2, self._renew, entry)
        entry.expiry = self._reactor.callLater(mapping.lifetime, self._expired, entry)
        fields = dict(
            what=entry.declaration,
            address=mapping.externalAddress or self.externalAddress or "?",
            port=mapping.externalPort,
            lifetime=mapping.lifetime,
        )
        if previous is None:
            log.info("mapped {what} -> {address}:{port} for {lifetime} s", **fields)
        elif previous.externalPort != mapping.externalPort:
            log.warn(
                "{what} moved to {address}:{port} (was port {old}) for {lifetime} s",
                old=previous.externalPort,
                **fields,
            )
        else:
            log.info("renewed {what} -> {address}:{port} for {lifetime} s", **fields)
        self._changed(entry)

    def _failed(self, failure: Failure, entry: _Entry, client: IPortMapper) -> None:
        entry.request = None
        if failure.check(CancelledError) or not self._current(entry, client):
            return
        entry.error = failure.value
        delay = self._backoff(entry.failures)
        entry.failures += 1
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = self._reactor.callLater(delay, self._renew, entry)
        log.warn(
            "could not map {what} via {gateway}: {error}; retrying in {delay:.1f} s",
            what=entry.declaration,
            gateway=self.gateway,
            error=failure.getErrorMessage(),
            delay=delay,
        )
        self._changed(entry)

    def _renew(self, entry: _Entry) -> None:
        entry.timer = None
        self._request(entry)

    def _expired(self, entry: _Entry) -> None:
        entry.expiry = None
        log.warn("the mapping of {what} expired", what=entry.declaration)
        entry.forgetMapping()
        self._changed(entry)

    # Internals: state loss and recovery (RFC 6886 s3.6, s3.7)

    def _stateLost(self) -> None:
        self._scheduleRecovery("the gateway lost its state (RFC 6886 s3.6)")

    def _announced(self, announcement: Announcement) -> None:
        """
        An announcement from the gateway (RFC 6886 s3.2.1, RFC 6887 s14.1):
        re-map everything if it brings news.

        News is a loss of state by the epoch rule (s3.6, which s3.2.1
        applies to announcements too), a new external address, a mapping
        waiting to be retried (s3.1: an announcement is the signal to try
        again), or a PCP ANNOUNCE when none was seen before (miniupnpd
        sends one at start, none repeated).  The copies s3.2.1 has the
        gateway repeat bring none, and are only logged.
        """
        client = self._client
        if not self.running or client is None:
            return
        kind = announcement.kind
        if kind is AnnouncementKind.NATPMP:
            # A loss of state reaches _stateLost through the client.
            if client.noteEpoch(announcement.epoch):
                return
            known = self.externalAddress
            if known is None and announcement.externalAddress is not None:
                # The address was not known yet (the first request failed):
                # the announcement tells it.
                self._gotExternalAddress(announcement.externalAddress, client, False)
            news = known is not None and announcement.externalAddress != known
        else:
            first = self._pcpEpochs.lastEpoch is None
            lost = self._pcpEpochs.update(announcement.epoch, self._reactor.seconds())
            news = first or lost
        waiting = any(
            e.mapping is None and e.request is None for e in self._entries.values()
        )
        if news or waiting:
            self._scheduleRecovery(f"{kind.value} announcement from {self.gateway}")
        else:
            log.debug(
                "a {kind} announcement with nothing new (epoch {epoch})",
                kind=kind.value,
                epoch=announcement.epoch,
            )

    def _scheduleRecovery(self, reason: str) -> None:
        if not self.running or self._client is None:
            return
        if self._recoveryCall is not None and self._recoveryCall.active():
            log.debug("{reason}: re-mapping is already due", reason=reason)
            return
        if self._remapStage == "address":
            # Most likely the re-mapping's own first reply showed the reset:
            # every mapping is still to be renewed by it.
            log.debug("{reason}: re-mapping under way", reason=reason)
            return
        if self._remapStage == "mappings":
            log.debug("{reason}: re-mapping again after this one", reason=reason)
            self._remapAgain = reason
            return
        delay = self._holdOff()
        log.info(
            "{reason}: re-mapping everything in {delay:.2f} s",
            reason=reason,
            delay=delay,
        )
        self._recoveryCall = self._reactor.callLater(delay, self._recover)

    def _cancelRecovery(self) -> None:
        call, self._recoveryCall = self._recoveryCall, None
        if call is not None and call.active():
            call.cancel()
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
        self._remapStage = self._remapAgain = None

    def _recover(self) -> None:
        self._recoveryCall = None
        previous, self._recovery = self._recovery, None
        if previous is not None:
            previous.cancel()
        client = self._client
        if client is None:
            return
        d = Deferred.fromCoroutine(self._remapAll(client))
        d.addErrback(self._recoveryFailed)
        self._recovery = d

    def _recoveryFailed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.failure("re-mapping failed", failure)

    async def _remapAll(self, client: IPortMapper) -> None:
        """
        RFC 6886 s3.7: refresh the external address, then renew every
        mapping one request at a time, each suggesting the external port it
        held before.
        """
        try:
            self._remapStage = "address"
            await self._askExternalAddress(client, recovering=True)
            self._remapStage = "mappings"
            for entry in list(self._entries.values()):
                if not self._current(entry, client):
                    continue
                entry.failures = 0
                await self._request(entry)
        finally:
            self._remapStage = None
        self._recovery = None
        log.info(
            "re-mapping done: {states}",
            states="; ".join(s.describe() for s in self.states()),
        )
        again, self._remapAgain = self._remapAgain, None
        if again is not None:
            self._scheduleRecovery(again)

    # Internals: external address and health

    def _askExternalAddress(
        self, client: IPortMapper, recovering: bool = False
    ) -> Deferred[None]:
        d = client.externalAddress()
        return d.addCallbacks(
            self._gotExternalAddress,
            self._externalAddressFailed,
            callbackArgs=(client, recovering),
            errbackArgs=(client,),
        )

    def _gotExternalAddress(
        self, address: IPv4Address, client: IPortMapper, recovering: bool
    ) -> None:
        if client is not self._client:
            return
        previous, self.externalAddress = self.externalAddress, address
        if address == previous:
            return
        log.info(
            "gateway {gateway} has external address {address}",
            gateway=self.gateway,
            address=address,
        )
        if isPrivateAddress(address):
            log.warn(
                "the external address {address} is private: this host is behind"
                " a second NAT, and its mappings do not make it reachable from"
                " the Internet",
                address=address,
            )
        if previous is not None and not recovering:
            self._scheduleRecovery(f"the external address changed from {previous}")
        for entry in self._entries.values():
            if entry.mapping is not None:
                self._changed(entry)

    def _externalAddressFailed(self, failure: Failure, client: IPortMapper) -> None:
        if failure.check(CancelledError) or client is not self._client:
            return
        log.warn(
            "gateway {gateway} did not tell its external address: {error}",
            gateway=self.gateway,
            error=failure.getErrorMessage(),
        )

    def _healthCheck(self) -> None:
        """
        RFC 6886 s3.6: any reply carries the epoch, so a cheap external
        address request every so often reveals a gateway that lost its state
        without announcing it.
        """
        client = self._client
        if client is None or self._healthRequest is not None:
            return
        d = client.externalAddress(timeouts=HEALTH_TIMEOUTS)
        handled = d.addCallbacks(
            self._healthy,
            self._externalAddressFailed,
            callbackArgs=(client,),
            errbackArgs=(client,),
        )
        if not handled.called:
            self._healthRequest = handled
            handled.addBoth(self._healthDone, handled)

    def _healthDone(self, result: object, request: Deferred[None]) -> None:
        if self._healthRequest is request:
            self._healthRequest = None

    def _healthy(self, address: IPv4Address, client: IPortMapper) -> None:
        self._gotExternalAddress(address, client, False)
        if client is not self._client:
            return
        # The gateway answers again: retry at once what failed for want of
        # an answer, rather than at the end of a long backoff.
        for entry in self._entries.values():
            if isinstance(entry.error, NoResponseError) and entry.request is None:
                self._request(entry)

    def _cancelHealthRequest(self) -> None:
        request, self._healthRequest = self._healthRequest, None
        if request is not None:
            request.cancel()

    def _loop(self, f: Callable[[], object], interval: float) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = self._reactor
        loop.start(interval, now=False).addErrback(
            lambda failure: log.failure("periodic check failed", failure)
        )
        return loop

    # Internals: stopping

    def _quickDelete(
        self, client: IPortMapper, declaration: MappingDeclaration
    ) -> Deferred[None]:
        # RFC 6886 s3.1: a deletion may be tried only once or twice.
        return client.deleteMapping(
            declaration.protocol, declaration.internalPort, timeouts=self._stopTimeouts
        )

    def _deleteAll(self, client: IPortMapper, entries: list[_Entry]) -> Deferred[Any]:
        deletions: list[Deferred[None]] = []

        def giveUp() -> None:
            for d in deletions:
                d.cancel()

        def deleted(result: object, entry: _Entry) -> None:
            if isinstance(result, Failure):
                log.warn(
                    "could not delete the mapping of {what}: {error}",
                    what=entry.declaration,
                    error=result.getErrorMessage(),
                )
                if result.check(NoResponseError):
                    # The gateway is gone: the rest would fail the same way.
                    giveUp()
            else:
                log.info("deleted the mapping of {what}", what=entry.declaration)

        for entry in entries:
            d = self._quickDelete(client, entry.declaration)
            deletions.append(d)
            d.addBoth(deleted, entry)
        deadline = self._reactor.callLater(self._stopDeadline, giveUp)

        def done(result: object) -> object:
            if deadline.active():
                deadline.cancel()
            return result

        return DeferredList(deletions, consumeErrors=True).addBoth(done)

    def _stopped(self, result: object) -> Deferred[None]:
        for entry in self._entries.values():
            entry.forgetMapping()
            entry.error = None
            self._changed(entry, removed=True)
        self.externalAddress = None
        self.gateway = None
        return self._releaseClient()

    # Internals: state

    def _state(self, entry: _Entry, removed: bool = False) -> MappingState:
        mapping = entry.mapping
        address = self.externalAddress
        if address is None and mapping is not None:
            address = mapping.externalAddress
        return MappingState(
            declaration=entry.declaration,
            gateway=self.gateway,
            externalAddress=address,
            externalPort=None if mapping is None else mapping.externalPort,
            lifetime=None if mapping is None else mapping.lifetime,
            expires=entry.expires,
            error=entry.error,
            doubleNAT=address is not None and isPrivateAddress(address),
            removed=removed,
        )

    def _changed(self, entry: _Entry, removed: bool = False) -> None:
        state = self._state(entry, removed)
        waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            waiter.callback(state)
        for observer in list(self._observers):
            try:
                observer.mappingChanged(state)
            except Exception:
                log.failure("observer {observer} failed", observer=observer)
