"""
The NAT-PMP client: a L{DatagramProtocol} that talks to one gateway, and
L{NATPMPClient}, whose calls return L{Deferred}s.

Requests are queued and sent one at a time (RFC 6886 s3.1, s3.7), each
retransmitted on the RFC 6886 s3.1 schedule until a matching reply arrives.
Every reply from the gateway feeds the s3.6 epoch rule, judged on a
monotonic clock (C{monotonic=}, by default L{time.monotonic}) so that a step
of the wall clock is no gateway reboot; observers hear when the gateway has
lost its state.

Stopping: L{NATPMPClient.cancelPending} cancels every queued and in-flight
request without sending the next; L{NATPMPClient.deleteMappings} then sends
a batch of deletions together, outside the queue, each still unanswered
resent on the s3.1 doubling schedule within a stop deadline
(L{DELETION_TIMEOUTS}), and fires, never later than the sum of
its timeouts, with a C{dict} from each C{(protocol, internalPort)} to
L{None} (deleted) or the L{Failure} saying why not (L{NoResponseError},
L{GatewayError} with the result code, ...).  L{NATPMPClient.stop} cancels
everything, batches included, and closes the port.
"""

from __future__ import annotations

import time
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
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ._droplog import DropLog
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
    errorForResult,
)
from .errors import (
    InvalidResponseError,
    NATPMPError,
    NoResponseError,
    NotSupportedError,
)
from .interfaces import IPortMapper

__all__ = [
    "DELETION_TIMEOUTS",
    "RETRANSMIT_TIMEOUTS",
    "STATE_LOSS_INTERVAL",
    "MappingKey",
    "NATPMPClient",
    "NATPMPClientProtocol",
    "describeRequest",
    "listenClient",
]

log = Logger()

#: RFC 6886 s3.1: wait 250 ms after the first request, doubling after each
#: retransmission; after the 9th attempt and its 64 s wait, give up.
RETRANSMIT_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)

#: The waits after each send of a batch of deletions at stop
#: (L{NATPMPClient.deleteMappings}).  RFC 6886 s3.1, s3.4: a deletion is
#: retransmitted like any request (250 ms, doubling), but a client MAY give
#: up sooner, and SHOULD send it at least once.  So each deletion is sent at
#: 0, 0.25, 0.75, 1.75 and 3.75 s until answered, and given up at 4.75 s,
#: within the 5 s a stopping service has
#: (L{twisted_natpmp.service.STOP_DEADLINE}).
DELETION_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 1.0)

#: Seconds between two summaries of the gateway's losses of state: the
#: first loss of a quiet period is warned of at once, further ones (a flood
#: of forged replies or announcements with lower epochs, or a gateway
#: restarting again and again) in one line per interval.
STATE_LOSS_INTERVAL = 60.0

#: How long after a deletion was last sent a success with lifetime 0 for the
#: same port is taken for that deletion's late duplicate reply rather than an
#: invalid answer to a mapping request (RFC 6886 s3.3, s3.4).
_LATE_REPLY_SECONDS = 30.0

_T = TypeVar("_T")
_RESPONSE_BIT = 128

#: What a mapping is known by: its protocol and internal port.
MappingKey = tuple[Protocol, int]


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


def _matches(request: Request, response: Response, lateDeletion: bool) -> bool:
    """
    Is C{response} the answer to C{request}?  The opcode must be the
    request's plus 128, and a mapping reply must echo the internal port
    (RFC 6886 s3.3, s3.5; old routers garbled ports).  The unsupported
    version reply may carry opcode 0 or 128 whatever was asked (Errata 3618).

    @param lateDeletion: a deletion of the same port was sent lately, so a
        success with lifetime 0 may be its late duplicate reply.
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
    # carry lifetime 0 whatever was asked (s3.5).  A success with lifetime 0
    # to a mapping request when no deletion of the port was sent lately is
    # an invalid answer, which fails the request at once (s3.3).
    if response.resultCode != ResultCode.SUCCESS:
        return True
    if request.lifetime == 0:
        return response.lifetime == 0
    return response.lifetime != 0 or not lateDeletion


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
    @ivar drops: counts and logs, in aggregate, the packets dropped:
        malformed, or from another source than the gateway.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPv4Address | str,
        *,
        gatewayPort: int = SERVER_PORT,
        extraSources: Iterable[IPv4Address | str] = (),
        timeouts: Sequence[float] = RETRANSMIT_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param clock: schedules the retransmissions.
        @param gateway: the gateway to ask.
        @param gatewayPort: the gateway's UDP port.
        @param extraSources: other addresses the gateway may answer from (a
            CARP/VRRP pair answering from its real address); replies from any
            other address are ignored (RFC 6886 s3.1).
        @param timeouts: the default retransmission schedule: one wait, in
            seconds, after each send.
        @param monotonic: returns the seconds of a clock that never steps,
            for the RFC 6886 s3.6 judgement of the gateway's epochs (a wall
            clock set by NTP at boot would look like a gateway reboot);
            tests pass their L{twisted.internet.task.Clock}'s C{seconds}.
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
        self._monotonic = monotonic
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        # Requests sent outside the queue (deleteMappings), all in flight;
        # a dict as an ordered set.
        self._batched: dict[_Pending, None] = {}
        # When each mapping's deletion was last sent (clock seconds).
        self._deletionsSent: dict[MappingKey, float] = {}
        self._stopped = False
        self.drops = DropLog(log, clock, f"NAT-PMP client of {self.gateway}")
        self._unanswered = DropLog(
            log, clock, f"NAT-PMP client of {self.gateway}", level=LogLevel.info
        )
        self._observers: list[Callable[[], object]] = []
        #: Losses of state not yet told, the last one's epoch, and the
        #: summary that tells them (None: the next loss is told at once).
        self._lossesUntold = 0
        self._lastLossEpoch = 0
        self._lossSummary: IDelayedCall | None = None
        self._retryObservers: list[Callable[[str, int, float], object]] = []
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

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several of this host's mappings at once, as a client does
        when it stops (RFC 6886 s3.4): every deletion request is sent at
        once, outside the queue of L{addMapping} and the others, and each is
        resent after the waits of C{timeouts} until its reply comes.  Each
        reply is matched by opcode, protocol and internal port.

        Sending the deletions together departs from the one request at a
        time of s3.1 and s3.7 on purpose.  At stop, time is short (a
        service manager waits a few seconds), and a deletion left unsent
        holds a port on the gateway until its lifetime runs out, up to
        hours; one at a time, twenty deletions over a 600 ms round trip do
        not fit in 5 s.  The burst is small and bounded: one 12-byte packet
        per mapping this host made, each resent on the s3.1 doubling schedule
        only until answered (s3.1 lets a client give up on a deletion sooner
        than on other requests), no more than the serial schedule would
        send; and the one-at-a-time rule of s3.7 protects a
        gateway just rebooted from every host re-mapping at once, which a
        host leaving does not do.

        @param keys: the mappings, as C{(protocol, internalPort)}; internal
            port 0 (delete all) is refused, use L{deleteAllMappings}.
        @param timeouts: the wait, in seconds, after each send; by default
            L{DELETION_TIMEOUTS}.  N waits mean each deletion is sent at
            most N times; the result comes at the latest after their sum.
        @return: fires with a C{dict} from each key to L{None} (deleted: the
            gateway answered success) or a L{Failure}: L{NoResponseError}
            (no answer in time), a L{GatewayError} (refused with a result
            code), L{NotSupportedError} (ICMP port unreachable),
            L{twisted.internet.defer.CancelledError} (cancelled, or the
            client stopped).  It fails only with C{ValueError} for a bad key
            or schedule, sending nothing.  Cancelling it cancels every
            deletion still waiting.
        """
        try:
            schedule = _checkTimeouts(timeouts)
            requests: dict[MappingKey, MapRequest] = {}
            for protocol, internalPort in keys:
                if internalPort == 0:
                    raise ValueError(
                        "internal port 0 deletes all; use deleteAllMappings"
                    )
                key = (Protocol(protocol), internalPort)
                requests[key] = MapRequest(key[0], internalPort, 0, 0)
        except ValueError as e:
            return fail(e)
        batch = {
            key: self._newPending(request, schedule)
            for key, request in requests.items()
        }
        outcomes: dict[MappingKey, Failure | None] = {}

        def cancel(_: object) -> None:
            # Fires every deletion's Deferred at once, and so this one.
            for pending in batch.values():
                pending.deferred.cancel()

        done: Deferred[dict[MappingKey, Failure | None]] = Deferred(cancel)

        def settle(key: MappingKey) -> Callable[[object], None]:
            def settled(result: object) -> None:
                outcomes[key] = result if isinstance(result, Failure) else None
                if len(outcomes) == len(batch):
                    done.callback({key: outcomes[key] for key in batch})

            return settled

        self._batched.update(dict.fromkeys(batch.values()))
        for key, pending in batch.items():
            pending.deferred.addCallback(self._checkResult).addBoth(settle(key))
        for pending in batch.values():
            if pending in self._batched:  # not failed by an earlier send
                self._transmit(pending)
        if not batch:
            done.callback({})
        return done

    def cancelPending(self) -> None:
        """
        Cancel every request that is queued or waiting for its reply,
        batches of L{deleteMappings} included, sending nothing more: the
        queued ones go first, so that cancelling the one in flight does not
        send the next.  The client stays usable.
        """
        queued = [*reversed(self._queue)]
        self._queue.clear()
        for p in [*queued, *self._batched, self._current]:
            if p is not None:
                p.deferred.cancel()

    def noteEpoch(self, epoch: int) -> bool:
        """
        Judge an epoch that arrived in an announcement (RFC 6886 s3.2.1,
        s3.6); observers hear of a loss of state.
        """
        return self._observeEpoch(epoch)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        """
        Hear of every retransmission: C{observer(request, attempt, elapsed)}
        is called when a request goes unanswered and is sent again, with
        what it asks (C{"the external address request"}), the number of
        the attempt now sent (2 or more) and the seconds since the first.
        For a person waiting: "no answer yet; still trying".
        """
        self._retryObservers.append(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        """
        Stop calling an observer given to L{addRetryObserver}.
        """
        self._retryObservers.remove(observer)

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
        Cancel every pending request (L{cancelPending}) and stop listening;
        later requests fail at once.
        """
        self._stopping = True
        self._stopped = True
        self._untrigger()
        self._untrigger = lambda: None
        self.cancelPending()
        self.drops.stop()
        self._unanswered.stop()
        summary, self._lossSummary = self._lossSummary, None
        if summary is not None and summary.active():
            summary.cancel()
        self._summariseLosses()
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
        if self._stopped:
            return fail(NATPMPError("the NAT-PMP client is stopped"))
        try:
            schedule = self.timeouts if timeouts is None else _checkTimeouts(timeouts)
        except ValueError as e:
            return fail(e)
        pending = self._newPending(request, schedule)
        self._queue.append(pending)
        self._sendNext()
        return pending.deferred.addCallback(self._checkResult)

    def _newPending(self, request: Request, schedule: Sequence[float]) -> _Pending:
        pending = _Pending(request, schedule)
        pending.deferred = Deferred(lambda d: self._cancel(pending))
        return pending

    def _sendNext(self) -> None:
        if self._current is None and self._queue:
            self._current = self._queue.popleft()
            self._transmit(self._current)

    def _transmit(self, pending: _Pending) -> None:
        request = pending.request
        try:
            self.protocol.send(request.encode())
        except Exception:
            self._finish(pending, Failure())
            return
        if pending is not self._current and pending not in self._batched:
            # Finished during the send: Twisted's UDP port reports an ICMP
            # refusal (ECONNREFUSED on write) by calling connectionRefused
            # at once, which fails every request in flight, this one too.
            return
        if isinstance(request, MapRequest) and request.lifetime == 0:
            self._deletionsSent[(request.protocol, request.internalPort)] = (
                self._clock.seconds()
            )
        if pending.firstSent is None:
            pending.firstSent = self._clock.seconds()
        wait = pending.timeouts[pending.attempts]
        pending.attempts += 1
        if pending.attempts > 1:
            # Only retransmissions: a log event per request costs as much as
            # the rest of the request's work.
            what = describeRequest(request)
            elapsed = self._clock.seconds() - pending.firstSent
            log.debug(
                "sent {request} to {gateway} again (attempt {attempt}, next"
                " wait {wait} s)",
                request=what,
                gateway=str(self.gateway),
                attempt=pending.attempts,
                wait=wait,
            )
            _notify(self._retryObservers, "retry", what, pending.attempts, elapsed)
        pending.timer = self._clock.callLater(wait, self._timedOut, pending)

    def _timedOut(self, pending: _Pending) -> None:
        pending.timer = None
        if pending.attempts < len(pending.timeouts):
            self._transmit(pending)
            return
        elapsed = self._clock.seconds() - (pending.firstSent or 0.0)
        log.info(
            "gateway {gateway} did not answer {request} after {attempts} attempts",
            gateway=str(self.gateway),
            request=describeRequest(pending.request),
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
        elif pending in self._batched:
            del self._batched[pending]
        self._sendNext()
        if isinstance(result, Failure):
            pending.deferred.errback(result)
        else:
            pending.deferred.callback(result)

    def _cancel(self, pending: _Pending) -> None:
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if self._current is pending:
            self._current = None
            self._sendNext()
        elif pending in self._batched:
            del self._batched[pending]
        elif pending in self._queue:
            self._queue.remove(pending)

    def _inFlight(self) -> list[_Pending]:
        """
        The requests sent and waiting for their reply.
        """
        current = [] if self._current is None else [self._current]
        return [*current, *self._batched]

    def _refused(self) -> None:
        waiting = self._inFlight()
        if waiting:
            log.warn("gateway {gateway} refused NAT-PMP", gateway=str(self.gateway))
        for pending in waiting:
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
            log.failure("could not bind a new port for {client}", client=repr(self))
        pending = [*self._inFlight(), *self._queue]
        self._queue.clear()
        for p in pending:
            self._finish(p, Failure(NotSupportedError(self.gateway)))

    def _datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self._stopped:
            # The port closes after stop returns; what still comes asks
            # nothing of a stopped client (and must not restart its logs).
            return
        host, port = addr[0], addr[1]
        if host not in self._sourceHosts or port != self.gatewayPort:
            # RFC 6886 s3.1: only replies from the gateway's port 5351 count.
            self.drops.drop(f"{host}:{port}", "not the gateway", datagram.hex())
            return
        try:
            response = decodeResponse(datagram)
        except MalformedPacket as e:
            self.drops.drop(
                f"{host}:{port}", "malformed", f"{e.reason} ({datagram.hex()})"
            )
            return
        self._observeEpoch(response.epoch)
        answered = [p for p in self._inFlight() if self._answers(response, p)]
        if not answered:
            # A late duplicate is normal (a retransmission crossed the
            # reply), so these are counted at info level, not warned of.
            self._unanswered.drop(
                f"{host}:{port}", "answers no pending request", repr(response)
            )
        # Identical requests (a queued deletion and a batched one of the
        # same port) take the same reply: NAT-PMP requests are idempotent.
        for pending in answered:
            self._finish(pending, response)

    def _answers(self, response: Response, pending: _Pending) -> bool:
        request = pending.request
        lateDeletion = False
        if isinstance(request, MapRequest):
            sent = self._deletionsSent.get((request.protocol, request.internalPort))
            if sent is not None:
                lateDeletion = self._clock.seconds() - sent < _LATE_REPLY_SECONDS
                if not lateDeletion:
                    del self._deletionsSent[(request.protocol, request.internalPort)]
        return _matches(request, response, lateDeletion)

    def _observeEpoch(self, epoch: int) -> bool:
        lost = self.epochTracker.update(epoch, self._monotonic())
        if lost:
            self._tellStateLoss(epoch)
            # RFC 6886 s3.6: every loss is told to the observers, whatever
            # the log says; the service coalesces its re-mappings.
            _notify(self._observers, "state-loss")
        return lost

    def _tellStateLoss(self, epoch: int) -> None:
        """
        Log a loss of state: the first of a quiet period at once, further
        ones summarised every L{STATE_LOSS_INTERVAL} seconds, so that a
        flood of forged packets with lower epochs (RFC 6886 s3.6) costs a
        line a minute, not a line a packet.
        """
        if self._lossSummary is None:
            log.warn(
                "gateway {gateway} lost its mapping state (epoch {epoch});"
                " further losses are summarised every {interval:.0f} s",
                gateway=str(self.gateway),
                epoch=epoch,
                interval=STATE_LOSS_INTERVAL,
            )
            self._lossSummary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._lossIntervalOver
            )
            return
        # Not even a debug line each: a log that records debug (twistd's)
        # would grow by a line a packet.
        self._lossesUntold += 1
        self._lastLossEpoch = epoch

    def _lossIntervalOver(self) -> None:
        self._lossSummary = None
        if self._summariseLosses():
            self._lossSummary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._lossIntervalOver
            )

    def _summariseLosses(self) -> bool:
        """
        Say how many losses of state came since the last line, if any.

        @return: whether there were any.
        """
        count, self._lossesUntold = self._lossesUntold, 0
        if not count:
            return False
        log.warn(
            "gateway {gateway} lost its mapping state {count} more {times} in"
            " the last {interval:.0f} s (last epoch {epoch}): it restarts"
            " often, or someone forges its packets",
            gateway=str(self.gateway),
            count=count,
            times="time" if count == 1 else "times",
            interval=STATE_LOSS_INTERVAL,
            epoch=self._lastLossEpoch,
        )
        return True

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
            transport=request.protocol,
            internalPort=response.internalPort,
            externalPort=response.externalPort,
            lifetime=response.lifetime,
            epoch=response.epoch,
            externalAddress=self.lastExternalAddress,
        )

    def _gotDeletion(self, response: Response) -> None:
        return None


def _notify(observers: list[Callable[..., object]], kind: str, *args: object) -> None:
    """
    Call each observer with C{args}; one that raises is logged, and the
    others still called.
    """
    for observer in list(observers):
        try:
            observer(*args)
        except Exception:
            log.failure(
                "{kind} observer {observer} failed", kind=kind, observer=repr(observer)
            )


def describeRequest(request: Request) -> str:
    """
    Say what C{request} asks, for a log line or an error message.

    @return: e.g. C{"the TCP mapping request for port 8080"}.
    """
    if isinstance(request, ExternalAddressRequest):
        return "the external address request"
    assert isinstance(request, MapRequest)
    label = request.protocol.name
    if request.lifetime:
        return f"the {label} mapping request for port {request.internalPort}"
    if request.internalPort:
        return f"the {label} deletion of port {request.internalPort}"
    return f"the deletion of every {label} mapping"


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
