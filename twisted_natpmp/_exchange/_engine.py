# -*- test-case-name: tests.test_exchange -*-
"""
The request engine proper: the requests queued and in flight, the window
between them, and how a request is settled; see L{twisted_natpmp._exchange}.
Its resend timers are in L{twisted_natpmp._exchange._resend}, the matching
of replies in L{twisted_natpmp._exchange._replies}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .._droplog import DropLog
from .._types import IPAddress
from ..errors import PortMappingError
from ._pending import DEFAULT_TIMEOUTS, Pending, checkTimeouts
from ._replies import ReplyMixin
from ._resend import ResendMixin
from ._socket import ExchangeProtocol, GatewaySocket

__all__ = ["Exchange"]

log = Logger()

_Q = TypeVar("_Q")
_R = TypeVar("_R")


class Exchange(ResendMixin[_Q, _R], ReplyMixin[_Q, _R]):
    """
    Requests to one gateway over one UDP socket, with their timers: the
    queue, the window and the flight here; the sending and resending in
    L{ResendMixin}, the replies and refusals in L{ReplyMixin}.

    @ivar gateway: the gateway's address.
    @ivar gatewayPort: the gateway's UDP port.
    @ivar protocolName: the protocol's name for a person (C{"NAT-PMP"}).
    @ivar window: how many queued requests may be in flight at once (1:
        serial mode).
    @ivar timeouts: the default retransmission schedule.
    @ivar connectSocket: whether the socket is connected to the gateway
        (only when no extra source is accepted).
    @ivar protocol: the L{ExchangeProtocol} to listen with, e.g.
        C{reactor.listenUDP(0, exchange.protocol)}; or use L{listen}.
    @ivar drops: counts and logs, in aggregate, the datagrams dropped:
        malformed, or from another source than the gateway.
    @ivar socket: the L{GatewaySocket} it sends through.
    @ivar unanswered: counts and logs, in aggregate (at info: a late
        duplicate is normal), the replies that answer nothing pending.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPAddress,
        gatewayPort: int,
        *,
        decode: Callable[[bytes], _R],
        matches: Callable[[_Q, _R], bool] | None = None,
        keyOf: Callable[[_R], Hashable] | None = None,
        received: Callable[[_R], object] = lambda response: None,
        sent: Callable[[_Q], object] = lambda request: None,
        unanswered: Callable[[_R, str], bool] = lambda response, source: False,
        window: int = 1,
        timeouts: Sequence[float] = DEFAULT_TIMEOUTS,
        describe: Callable[[_Q], str] = str,
        extraSources: Iterable[IPAddress] = (),
        protocolName: str = "NAT-PMP",
    ) -> None:
        """
        @param clock: schedules the retransmissions and limits.
        @param gateway: the gateway to ask.
        @param gatewayPort: the gateway's UDP port; replies from any other
            port are dropped (RFC 6886 s3.1).
        @param decode: turns a datagram from the gateway into a reply;
            raises C{ValueError} (with a C{reason} attribute, if it has one)
            for one it cannot decode, which is dropped and counted.
        @param matches: predicate mode: C{matches(request, reply)} says
            whether C{reply} answers C{request}; a reply answers every
            request in flight that it matches.
        @param keyOf: key mode: the key of a reply, answering the request
            in flight submitted with that key (if any).  Exactly one of
            C{matches} and C{keyOf} is given.
        @param received: called with every decoded reply from the gateway
            before it is matched (to judge its epoch, say).
        @param sent: called with a request each time it is sent.
        @param unanswered: called with a reply that answers nothing in
            flight and its source (C{"host:port"}); returns whether it was
            handled (an unsolicited message the protocol knows), else it is
            counted in L{unanswered}.
        @param window: how many queued requests may be in flight at once.
        @param timeouts: the default retransmission schedule: one wait, in
            seconds, after each send.
        @param extraSources: other addresses the gateway may answer from (a
            CARP/VRRP pair answering from its real address); then the
            socket is not connected.
        @param protocolName: the protocol's name, for messages.
        @param describe: says what a request asks, for a person (log lines,
            retry observers); called only when needed.
        """
        if (matches is None) == (keyOf is None):
            raise TypeError("give exactly one of matches and keyOf")
        if window < 1:
            raise ValueError(f"the window must be at least 1: {window!r}")
        self._clock = clock
        self.gateway = gateway
        self.gatewayPort = gatewayPort
        self.protocolName = protocolName
        self.window = window
        self.timeouts = checkTimeouts(timeouts)
        self._decode = decode
        self._matches = matches
        self._keyOf = keyOf
        self._received = received
        self._sent = sent
        self._unansweredHook = unanswered
        self._describe = describe
        self.socket = GatewaySocket(
            clock,
            gateway,
            gatewayPort,
            received=self._datagramReceived,
            refused=self._refused,
            lost=self._portLost,
            extraSources=extraSources,
            protocolName=protocolName,
        )
        self.protocol: ExchangeProtocol = self.socket.protocol
        self.connectSocket = self.socket.connectSocket
        self.drops = self.socket.drops
        what = f"{protocolName} client of {gateway}"
        self.unanswered = DropLog(log, clock, what, level=LogLevel.info)
        self._queue: deque[Pending[_Q, _R]] = deque()
        # Requests sent and waiting for their reply; a dict as an ordered set.
        self._inFlight: dict[Pending[_Q, _R], None] = {}
        self._retryObservers: list[Callable[[str, int, float], object]] = []
        self._stopped = False

    # Requests

    def submit(
        self,
        request: _Q,
        packet: bytes,
        *,
        key: Hashable | None = None,
        timeouts: Sequence[float] | None = None,
        limit: float | None = None,
        queued: bool = True,
    ) -> Deferred[_R]:
        """
        Send a request, resending it until it is answered.

        @param request: the client's value for it, given to C{matches}.
        @param packet: the bytes to send.
        @param key: what matches its reply, in key mode.
        @param timeouts: the wait after each send; by default L{timeouts}.
        @param limit: an overall time limit, in seconds from now, queueing
            included: when it runs out, the request fails with
            L{NoResponseError} whatever its schedule.
        @param queued: whether it waits its turn in the queue (else it is
            sent at once, outside the queue and the window).
        @return: fires with the reply that answers it; fails with
            L{NoResponseError}, L{NotSupportedError} (ICMP port
            unreachable), C{ValueError} (a bad schedule, nothing sent) or
            L{PortMappingError} (the exchange is stopped).  Cancelling it
            stops its retransmissions.
        """
        if self._stopped:
            return fail(PortMappingError(f"the {self.protocolName} client is stopped"))
        try:
            schedule = self.timeouts if timeouts is None else checkTimeouts(timeouts)
        except ValueError as e:
            return fail(e)
        pending = self._newPending(request, packet, schedule, key, queued)
        if limit is not None:
            self._limit(pending, limit)
        if queued:
            self._queue.append(pending)
            self._sendNext()
        else:
            self._inFlight[pending] = None
            self._transmit(pending)
        return pending.deferred

    def submitBatch(
        self,
        requests: Iterable[tuple[_Q, bytes, Hashable | None]],
        timeouts: Sequence[float] | None = None,
    ) -> list[Deferred[_R]]:
        """
        Send several requests at once, outside the queue and the window (a
        batch of deletions at stop): all are in flight before the first is
        sent, so that a refusal reported during a send fails them all and
        sends no more.

        @param requests: each as C{(request, packet, key)}.
        @param timeouts: the wait after each send; by default L{timeouts}.
        @return: one L{Deferred} per request, in order, as L{submit}'s.
            Once the exchange is stopped, each fails at once with
            L{PortMappingError}.
        @raise ValueError: the schedule is bad; nothing is sent.
        """
        if self._stopped:
            stopped = PortMappingError(f"the {self.protocolName} client is stopped")
            return [fail(stopped) for _ in requests]
        schedule = self.timeouts if timeouts is None else checkTimeouts(timeouts)
        batch = [
            self._newPending(request, packet, schedule, key, False)
            for request, packet, key in requests
        ]
        self._inFlight.update(dict.fromkeys(batch))
        for pending in batch:
            if pending in self._inFlight:  # not failed by an earlier send
                self._transmit(pending)
        return [pending.deferred for pending in batch]

    def _newPending(
        self,
        request: _Q,
        packet: bytes,
        schedule: tuple[float, ...],
        key: Hashable | None,
        queued: bool,
    ) -> Pending[_Q, _R]:
        pending: Pending[_Q, _R] = Pending(request, packet, schedule, key, queued)
        pending.deferred = Deferred(lambda d: self._cancel(pending))
        pending.submitted = self._clock.seconds()
        return pending

    def pending(self) -> list[Pending[_Q, _R]]:
        """
        The requests in flight (in the order sent first), then those
        queued.
        """
        return [*self._inFlight, *self._queue]

    def cancelPending(self) -> None:
        """
        Cancel every request that is queued or in flight, sending nothing
        more: the queued ones go first (the last queued first), so that
        cancelling one in flight does not send the next.  The exchange stays
        usable.
        """
        queued = [*reversed(self._queue)]
        self._queue.clear()
        inFlight = [*self._inFlight]
        for p in [
            *queued,
            *(p for p in inFlight if not p.queued),
            *(p for p in inFlight if p.queued),
        ]:
            p.deferred.cancel()

    # The socket

    @property
    def port(self) -> IListeningPort | None:
        """
        The port L{listen} bound, if any.
        """
        return self.socket.port

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port.  Should it be closed under the exchange
        (ICMP port unreachable, on the epoll reactor), a new one is bound
        the same way.
        """
        return self.socket.listen(reactor, interface)

    def sourceAddress(self) -> IPAddress | None:
        """
        The local address of the socket (connected to the gateway, the
        kernel's choice), or L{None} if it has none or is not bound.
        """
        return self.socket.sourceAddress()

    def stop(self) -> Deferred[None]:
        """
        Cancel every pending request and stop listening; later requests
        fail at once.  Fires when the port is closed.
        """
        self._stopped = True
        self.cancelPending()
        self.unanswered.stop()
        return self.socket.close()

    @property
    def stopped(self) -> bool:
        """
        Whether L{stop} was called.
        """
        return self._stopped

    # Internals

    def _sendNext(self) -> None:
        while self._queue and self._flying() < self.window:
            pending = self._queue.popleft()
            self._inFlight[pending] = None
            self._transmit(pending)

    def _flying(self) -> int:
        return sum(1 for p in self._inFlight if p.queued)

    def _release(self, pending: Pending[_Q, _R]) -> bool:
        """
        Forget C{pending}: stop its timers, take it out of the queue or the
        flight.

        @return: whether it was in flight.
        """
        self._stopTimers(pending)
        if pending in self._inFlight:
            del self._inFlight[pending]
            return True
        if pending in self._queue:
            self._queue.remove(pending)
        return False

    def _finish(self, pending: Pending[_Q, _R], result: _R | Failure) -> None:
        self._release(pending)
        self._sendNext()
        if isinstance(result, Failure):
            pending.deferred.errback(result)
        else:
            pending.deferred.callback(result)

    def _cancel(self, pending: Pending[_Q, _R]) -> None:
        if self._release(pending) and pending.queued:
            self._sendNext()
