# -*- test-case-name: tests.test_exchange -*-
"""
What an exchange hears back from its socket: datagrams decoded and matched
to the requests in flight, by predicate or by key; the replies that answer
nothing; and ICMP refusal, which fails what is pending.  A mixin of
L{twisted_natpmp._exchange.Exchange}, which owns the queue and the flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from twisted.logger import Logger
from twisted.python.failure import Failure

from .._droplog import DropLog
from .._types import IPAddress
from ..errors import NotSupportedError
from ._pending import Pending

__all__ = ["ReplyMixin"]

# The engine's events, under the namespace they always had.
log = Logger(namespace="twisted_natpmp._exchange._engine")

_Q = TypeVar("_Q")
_R = TypeVar("_R")


class ReplyMixin(Generic[_Q, _R]):
    """
    The replies, refusals and lost ports of an exchange.

    @ivar gateway: the gateway's address.
    @ivar protocolName: the protocol's name for a person.
    @ivar drops: counts and logs, in aggregate, the datagrams dropped.
    @ivar unanswered: counts and logs, in aggregate, the replies that
        answer nothing pending.
    """

    gateway: IPAddress
    protocolName: str
    drops: DropLog
    unanswered: DropLog
    _stopped: bool
    _decode: Callable[[bytes], _R]
    _matches: Callable[[_Q, _R], bool] | None
    _keyOf: Callable[[_R], Hashable] | None
    _received: Callable[[_R], object]
    _unansweredHook: Callable[[_R, str], bool]
    _queue: deque[Pending[_Q, _R]]
    _inFlight: dict[Pending[_Q, _R], None]
    # Settles a request (the exchange's own): stops its timers, takes it
    # out of the queue or the flight and fires its Deferred.
    _finish: Callable[[Pending[_Q, _R], _R | Failure], None]

    def _datagramReceived(self, datagram: bytes, source: str) -> None:
        if self._stopped:
            return
        try:
            response = self._decode(datagram)
        except ValueError as e:
            reason = getattr(e, "reason", str(e))
            self.drops.drop(source, "malformed", f"{reason} ({datagram.hex()})")
            return
        self._received(response)
        if self._keyOf is not None:
            key = self._keyOf(response)
            answered = [p for p in self._inFlight if key is not None and p.key == key]
        else:
            matches = self._matches
            assert matches is not None
            answered = [p for p in self._inFlight if matches(p.request, response)]
        if not answered:
            if not self._unansweredHook(response, source):
                # A late duplicate is normal (a retransmission crossed the
                # reply), so these are counted at info level, not warned of.
                self.unanswered.drop(
                    source, "answers no pending request", repr(response)
                )
            return
        # Identical requests (NAT-PMP: a queued deletion and a batched one
        # of the same port) take the same reply.
        for pending in answered:
            if pending in self._inFlight:  # not cancelled by an earlier one's
                self._finish(pending, response)

    def _refused(self) -> None:
        waiting = [*self._inFlight]
        if waiting:
            log.warn(
                "gateway {gateway} refused {protocol}",
                gateway=str(self.gateway),
                protocol=self.protocolName,
            )
        for pending in waiting:
            if pending in self._inFlight:
                self._finish(pending, Failure(self._notSupported()))

    def _notSupported(self) -> NotSupportedError:
        return NotSupportedError(self.gateway, self.protocolName)

    def _portLost(self) -> None:
        """
        The socket's port closed under it (ICMP port unreachable, on the
        epoll reactor; it bound a new one): the gateway does not speak the
        protocol now (RFC 6886 s3.1), so every pending request fails.
        """
        pending = [*self._inFlight, *self._queue]
        self._queue.clear()
        for p in pending:
            if not p.deferred.called:
                self._finish(p, Failure(self._notSupported()))
