"""
The NAT-PMP client: a L{DatagramProtocol} that talks to one gateway, and
L{NATPMPClient}, whose calls return L{Deferred}s.

Requests are queued and sent one at a time (RFC 6886 s3.1, s3.7), each
retransmitted on the RFC 6886 s3.1 schedule until a matching reply arrives.
Every reply from the gateway feeds the s3.6 epoch rule; observers hear when
the gateway has lost its state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._epoch import EpochTracker
from ._types import Mapping
from ._wire import (
    RECOMMENDED_LIFETIME,
    SERVER_PORT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
    Response,
    ResultCode,
    decodeResponse,
)
from .errors import (
    InvalidResponseError,
    NATPMPError,
    NoResponseError,
    NotSupportedError,
    errorForResult,
)
from .interfaces import IPortMapper

__all__ = [
    "RETRANSMIT_TIMEOUTS",
    "NATPMPClient",
    "NATPMPClientProtocol",
    "listenClient",
]

log = Logger()

#: RFC 6886 s3.1: wait 250 ms after the first request, doubling after each
#: retransmission; after the 9th attempt and its 64 s wait, give up.
RETRANSMIT_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)

_T = TypeVar("_T")
_RESPONSE_BIT = 128


@dataclass(eq=False)
class _Pending:
    """
    One request waiting for its reply.
    """

    request: Request
    timeouts: Sequence[float]
    deferred: Deferred[Response] = field(init=False)
    attempts: int = 0
    firstSent: float | None = None
    timer: IDelayedCall | None = None


def _matches(request: Request, response: Response) -> bool:
    """
    Is C{response} the answer to C{request}?  The opcode must be the
    request's plus 128, and a mapping reply must echo the internal port
    (RFC 6886 s3.3, s3.5; old routers garbled ports).  The unsupported
    version reply may carry opcode 0 or 128 whatever was asked (Errata 3618).
    """
    if isinstance(response, ErrorResponse):
        if response.opcode == _RESPONSE_BIT | request.opcode:
            return True
        return (
            response.opcode in (0, _RESPONSE_BIT)
            and response.resultCode == ResultCode.UNSUPPORTED_VERSION
        )
    if isinstance(request, ExternalAddressRequest):
        return isinstance(response, ExternalAddressResponse)
    if not (
        isinstance(response, MapResponse)
        and response.protocol == request.protocol
        and response.internalPort == request.internalPort
    ):
        return False
    # A late duplicate reply to a mapping request must not confirm a
    # deletion of the same port, nor the reverse: a successful reply grants
    # a lifetime exactly when one was asked for (s3.3, s3.4).  Error replies
    # carry lifetime 0 whatever was asked (s3.5).
    return response.resultCode != ResultCode.SUCCESS or (
        (response.lifetime == 0) == (request.lifetime == 0)
    )


class NATPMPClientProtocol(DatagramProtocol):
    """
    The UDP side of a L{NATPMPClient}: sends its packets to the gateway and
    hands it what comes back.

    Unless extra source addresses are accepted, the socket is connected to
    the gateway, so the kernel filters other sources and reports ICMP port
    unreachable (RFC 6886 s3.1).
    """

    def __init__(self, client: NATPMPClient) -> None:
        self.client = client

    def startProtocol(self) -> None:
        if self.client.connectSocket:
            assert self.transport is not None
            self.transport.connect(str(self.client.gateway), self.client.gatewayPort)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.client._datagramReceived(datagram, addr)

    def connectionRefused(self) -> None:
        self.client._refused()

    def stopProtocol(self) -> None:
        self.client._portLost()

    def send(self, packet: bytes) -> None:
        """
        Send C{packet} to the gateway.

        @raise NATPMPError: the protocol is not listening.
        """
        if self.transport is None:
            raise NATPMPError("the NAT-PMP client is not listening")
        if self.client.connectSocket:
            # A connected UDP port takes no address.
            self.transport.write(packet, None)  # type: ignore[arg-type]
        else:
            self.transport.write(
                packet, (str(self.client.gateway), self.client.gatewayPort)
            )


@implementer(IPortMapper)
class NATPMPClient:
    """
    Ask one NAT-PMP gateway for its external address and for port mappings.

    @ivar gateway: the gateway's address.
    @ivar gatewayPort: the gateway's port (5351; other values are for tests).
    @ivar protocol: the L{NATPMPClientProtocol} to listen with, e.g.
        C{reactor.listenUDP(0, client.protocol)}; or use L{listenClient}.
    @ivar lastExternalAddress: the external address the gateway last
        reported, or L{None}.
    @ivar epochTracker: the RFC 6886 s3.6 judge of the gateway's epochs.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPv4Address | str,
        *,
        gatewayPort: int = SERVER_PORT,
        extraSources: Iterable[IPv4Address | str] = (),
        timeouts: Sequence[float] = RETRANSMIT_TIMEOUTS,
    ) -> None:
        """
        @param clock: the time source for retransmissions.
        @param gateway: the gateway to ask.
        @param gatewayPort: the gateway's UDP port.
        @param extraSources: other addresses the gateway may answer from (a
            CARP/VRRP pair answering from its real address); replies from any
            other address are ignored (RFC 6886 s3.1).
        @param timeouts: the default retransmission schedule: one wait, in
            seconds, after each send.
        """
        self._clock = clock
        self.gateway = IPv4Address(gateway)
        self.gatewayPort = gatewayPort
        self._sources = frozenset(
            [self.gateway, *(IPv4Address(a) for a in extraSources)]
        )
        # Twisted reports a datagram's source as a dotted-quad string.
        self._sourceHosts = frozenset(str(a) for a in self._sources)
        self.connectSocket = len(self._sources) == 1
        self.timeouts = _checkTimeouts(timeouts)
        self.protocol = NATPMPClientProtocol(self)
        self.lastExternalAddress: IPv4Address | None = None
        self.epochTracker = EpochTracker()
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._observers: list[Callable[[], object]] = []
        self._port: IListeningPort | None = None
        self._stopping = False
        self._untrigger: Callable[[], object] = lambda: None
        self._binding: tuple[IReactorUDP, str] | None = None

    def __repr__(self) -> str:
        return f"<NATPMPClient gateway={self.gateway}:{self.gatewayPort}>"

    # IPortMapper

    def externalAddress(
        self, timeouts: Sequence[float] | None = None
    ) -> Deferred[IPv4Address]:
        """
        Ask the gateway for its external address (RFC 6886 s3.2).
        """
        d = self._submit(ExternalAddressRequest(), timeouts)
        return d.addCallback(self._gotExternalAddress)

    def addMapping(
        self,
        protocol: Protocol,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = RECOMMENDED_LIFETIME,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Create or renew a mapping (RFC 6886 s3.3).

        @param externalPort: the external port to suggest; by default the
            internal port (some routers fail on 0).
        @param lifetime: the requested lifetime, 1 s or more; the granted
            one, in the result, may differ.
        """
        if lifetime == 0:
            return fail(ValueError("lifetime 0 deletes a mapping; use deleteMapping"))
        if internalPort == 0:
            return fail(ValueError("internal port 0 cannot be mapped"))
        suggested = internalPort if externalPort is None else externalPort
        try:
            request = MapRequest(Protocol(protocol), internalPort, suggested, lifetime)
        except ValueError as e:
            return fail(e)
        d = self._submit(request, timeouts)
        return d.addCallback(self._gotMapping, request)

    def deleteMapping(
        self,
        protocol: Protocol,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete this host's mapping of C{internalPort}: lifetime 0 and
        suggested external port 0 (RFC 6886 s3.4).  Deleting a mapping that
        does not exist succeeds.
        """
        if internalPort == 0:
            return fail(
                ValueError("internal port 0 deletes all; use deleteAllMappings")
            )
        return self._delete(protocol, internalPort, timeouts)

    def deleteAllMappings(
        self, protocol: Protocol, timeouts: Sequence[float] | None = None
    ) -> Deferred[None]:
        """
        Delete all of this host's mappings of C{protocol}: internal port 0,
        external port 0, lifetime 0 (RFC 6886 s3.4).
        """
        return self._delete(protocol, 0, timeouts)

    def noteEpoch(self, epoch: int) -> bool:
        """
        Judge an epoch that arrived in an announcement (RFC 6886 s3.2.1,
        s3.6); observers hear of a loss of state.
        """
        return self._observeEpoch(epoch)

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        self._observers.append(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        self._observers.remove(observer)

    # Lifecycle

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port for this client.  Should the port be
        closed under it (see L{_portLost}), the client binds a new one the
        same way.
        """
        self._binding = (reactor, interface)
        self._port = self._bind()
        # A reactor shutting down closes the port; that is no ICMP error.
        addTrigger = getattr(reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            trigger = addTrigger("before", "shutdown", self._reactorStopping)
            remove = reactor.removeSystemEventTrigger  # type: ignore[attr-defined]
            self._untrigger = lambda: remove(trigger)
        return self._port

    def _bind(self) -> IListeningPort:
        assert self._binding is not None
        reactor, interface = self._binding
        return reactor.listenUDP(
            0, self.protocol, interface=interface, maxPacketSize=8192
        )

    def stop(self) -> Deferred[None]:
        """
        Cancel every pending request and stop listening.
        """
        self._stopping = True
        self._untrigger()
        self._untrigger = lambda: None
        # The queued ones first, so that cancelling the current request does
        # not send the next.
        pending = [*reversed(self._queue), self._current]
        for p in pending:
            if p is not None:
                p.deferred.cancel()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    # Internals

    def _delete(
        self, protocol: Protocol, internalPort: int, timeouts: Sequence[float] | None
    ) -> Deferred[None]:
        try:
            request = MapRequest(Protocol(protocol), internalPort, 0, 0)
        except ValueError as e:
            return fail(e)
        return self._submit(request, timeouts).addCallback(self._gotDeletion)

    def _submit(
        self, request: Request, timeouts: Sequence[float] | None
    ) -> Deferred[Response]:
        try:
            schedule = self.timeouts if timeouts is None else _checkTimeouts(timeouts)
        except ValueError as e:
            return fail(e)
        pending = _Pending(request, schedule)
        pending.deferred = Deferred(lambda d: self._cancel(pending))
        self._queue.append(pending)
        self._sendNext()
        return pending.deferred.addCallback(self._checkResult)

    def _sendNext(self) -> None:
        if self._current is None and self._queue:
            self._current = self._queue.popleft()
            self._transmit()

    def _transmit(self) -> None:
        pending = self._current
        assert pending is not None
        try:
            self.protocol.send(pending.request.encode())
        except Exception:
            self._finish(pending, Failure())
            return
        if pending.firstSent is None:
            pending.firstSent = self._clock.seconds()
        wait = pending.timeouts[pending.attempts]
        pending.attempts += 1
        if pending.attempts > 1:
            # Only retransmissions: a log event per request costs as much as
            # the rest of the request's work.
            log.debug(
                "sent {request} to {gateway} again (attempt {attempt}, next"
                " wait {wait} s)",
                request=pending.request,
                gateway=self.gateway,
                attempt=pending.attempts,
                wait=wait,
            )
        pending.timer = self._clock.callLater(wait, self._timedOut, pending)

    def _timedOut(self, pending: _Pending) -> None:
        pending.timer = None
        if pending.attempts < len(pending.timeouts):
            self._transmit()
            return
        elapsed = self._clock.seconds() - (pending.firstSent or 0.0)
        log.info(
            "gateway {gateway} did not answer {request} after {attempts} attempts",
            gateway=self.gateway,
            request=pending.request,
            attempts=pending.attempts,
        )
        self._finish(
            pending, Failure(NoResponseError(self.gateway, pending.attempts, elapsed))
        )

    def _finish(self, pending: _Pending, result: Response | Failure) -> None:
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if self._current is pending:
            self._current = None
        self._sendNext()
        if isinstance(result, Failure):
            pending.deferred.errback(result)
        else:
            pending.deferred.callback(result)

    def _cancel(self, pending: _Pending) -> None:
        if self._current is pending:
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
            self._current = None
            self._sendNext()
        elif pending in self._queue:
            self._queue.remove(pending)

    def _refused(self) -> None:
        pending = self._current
        if pending is not None:
            log.warn("gateway {gateway} refused NAT-PMP", gateway=self.gateway)
            self._finish(pending, Failure(NotSupportedError(self.gateway)))

    def _reactorStopping(self) -> None:
        self._stopping = True
        self._untrigger = lambda: None  # the reactor has used it up

    def _portLost(self) -> None:
        """
        The socket that L{listen} bound closed while neither the client nor
        the reactor was stopping.  Twisted's epoll
        reactor closes a connected UDP port on ICMP port unreachable (EPOLLERR
        without EPOLLIN) instead of calling C{connectionRefused}; either way
        the gateway does not speak NAT-PMP now (RFC 6886 s3.1).  The pending
        requests fail, and a fresh port is bound so that later requests (a
        gateway that starts NAT-PMP later) can still be made.
        """
        if self._stopping or self._port is None:
            return
        self._port = None
        try:
            self._port = self._bind()
        except Exception:
            log.failure("could not bind a new port for {client}", client=self)
        pending = [p for p in (self._current, *self._queue) if p is not None]
        self._queue.clear()
        for p in pending:
            self._finish(p, Failure(NotSupportedError(self.gateway)))

    def _datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        if host not in self._sourceHosts or port != self.gatewayPort:
            # RFC 6886 s3.1: only replies from the gateway's port 5351 count.
            log.warn(
                "ignored a packet from {host}:{port}, not the gateway {gateway}",
                host=host,
                port=port,
                gateway=self.gateway,
            )
            return
        try:
            response = decodeResponse(datagram)
        except MalformedPacket as e:
            log.warn(
                "dropped a malformed packet from {host}:{port}: {reason} ({hex})",
                host=host,
                port=port,
                reason=e.reason,
                hex=datagram.hex(),
            )
            return
        self._observeEpoch(response.epoch)
        pending = self._current
        if pending is None or not _matches(pending.request, response):
            log.debug(
                "ignored {response}: it answers no pending request",
                response=response,
            )
            return
        self._finish(pending, response)

    def _observeEpoch(self, epoch: int) -> bool:
        lost = self.epochTracker.update(epoch, self._clock.seconds())
        if lost:
            log.warn(
                "gateway {gateway} lost its mapping state (epoch {epoch})",
                gateway=self.gateway,
                epoch=epoch,
            )
            for observer in list(self._observers):
                try:
                    observer()
                except Exception:
                    log.failure(
                        "state-loss observer {observer} failed", observer=observer
                    )
        return lost

    def _checkResult(self, response: Response) -> Response:
        if response.resultCode != ResultCode.SUCCESS:
            raise errorForResult(response.resultCode)
        if isinstance(response, ErrorResponse):
            raise InvalidResponseError(
                f"gateway answered success in a bare 8-byte header (opcode"
                f" {response.opcode})"
            )
        return response

    def _gotExternalAddress(self, response: Response) -> IPv4Address:
        assert isinstance(response, ExternalAddressResponse)
        self.lastExternalAddress = response.externalAddress
        return response.externalAddress

    def _gotMapping(self, response: Response, request: MapRequest) -> Mapping:
        assert isinstance(response, MapResponse)
        if response.externalPort == 0 or response.lifetime == 0:
            raise InvalidResponseError(
                f"gateway granted external port {response.externalPort} for"
                f" {response.lifetime} s: not a usable mapping"
            )
        return Mapping(
            protocol=request.protocol,
            internalPort=response.internalPort,
            externalPort=response.externalPort,
            lifetime=response.lifetime,
            epoch=response.epoch,
            externalAddress=self.lastExternalAddress,
        )

    def _gotDeletion(self, response: Response) -> None:
        return None


def _checkTimeouts(timeouts: Sequence[float]) -> tuple[float, ...]:
    schedule = tuple(float(t) for t in timeouts)
    if not schedule or any(t <= 0 for t in schedule):
        raise ValueError(f"retransmission timeouts must be positive: {timeouts!r}")
    return schedule


def listenClient(
    reactor: Any,
    gateway: IPv4Address | str,
    *,
    interface: str = "",
    **kwargs: Any,
) -> NATPMPClient:
    """
    Make a L{NATPMPClient} for C{gateway} and bind it to an ephemeral UDP
    port.

    @param reactor: provides L{IReactorUDP} and L{IReactorTime}.
    @param interface: the local address to bind.
    @param kwargs: passed to L{NATPMPClient}.
    """
    client = NATPMPClient(reactor, gateway, **kwargs)
    client.listen(reactor, interface)
    return client
