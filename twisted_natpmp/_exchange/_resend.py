# -*- test-case-name: tests.test_exchange -*-
"""
How an exchange sends a request and sends it again: the waits of its
retransmission schedule, its overall time limit, and the retry observers
and log line of each retransmission.  A mixin of
L{twisted_natpmp._exchange.Exchange}, which owns the queue and the flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress
from ..errors import NoResponseError
from ._pending import Pending, notifyObservers
from ._socket import GatewaySocket

__all__ = ["ResendMixin"]

# The engine's events, under the namespace they always had.
log = Logger(namespace="twisted_natpmp._exchange._engine")

_Q = TypeVar("_Q")
_R = TypeVar("_R")


class ResendMixin(Generic[_Q, _R]):
    """
    The sending and resending of an exchange's requests, with their
    timers.

    @ivar gateway: the gateway's address.
    @ivar socket: the L{GatewaySocket} it sends through.
    """

    gateway: IPAddress
    socket: GatewaySocket
    _clock: IReactorTime
    _sent: Callable[[_Q], object]
    _describe: Callable[[_Q], str]
    _inFlight: dict[Pending[_Q, _R], None]
    _retryObservers: list[Callable[[str, int, float], object]]
    # Settles a request (the exchange's own): stops its timers, takes it
    # out of the flight and fires its Deferred.
    _finish: Callable[[Pending[_Q, _R], _R | Failure], None]

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        """
        Call C{observer(what, attempt, elapsed)} at each retransmission:
        what the request asks, the attempt now sent (2 or more) and the
        seconds since the first.
        """
        self._retryObservers.append(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        """
        Stop calling an observer given to L{addRetryObserver}.
        """
        self._retryObservers.remove(observer)

    def _limit(self, pending: Pending[_Q, _R], limit: float) -> None:
        """
        Fail C{pending} with L{NoResponseError} C{limit} seconds from now,
        whatever its schedule, unless it is settled before.
        """
        pending.limitTimer = self._clock.callLater(limit, self._limited, pending)

    def _stopTimers(self, pending: Pending[_Q, _R]) -> None:
        """
        Cancel the timers of C{pending}: its next resend and its limit.
        """
        for timer in (pending.timer, pending.limitTimer):
            if timer is not None and timer.active():
                timer.cancel()
        pending.timer = pending.limitTimer = None

    def _transmit(self, pending: Pending[_Q, _R]) -> None:
        try:
            self.socket.send(pending.packet)
        except Exception:
            self._finish(pending, Failure())
            return
        if pending not in self._inFlight:
            # Finished during the send: Twisted's UDP port reports an ICMP
            # refusal (ECONNREFUSED on write) by calling connectionRefused
            # at once, which fails every request in flight, this one too.
            return
        now = self._clock.seconds()
        self._sent(pending.request)
        if pending.firstSent is None:
            pending.firstSent = now
        wait = pending.timeouts[pending.attempts]
        pending.attempts += 1
        if pending.attempts > 1:
            # Only retransmissions: a log event per request costs as much as
            # the rest of the request's work.
            elapsed = now - pending.firstSent
            what = self._describe(pending.request)
            log.debug(
                "sent {request} to {gateway} again (attempt {attempt}, next"
                " wait {wait} s)",
                request=what,
                gateway=str(self.gateway),
                attempt=pending.attempts,
                wait=wait,
            )
            notifyObservers(
                self._retryObservers, "retry", what, pending.attempts, elapsed
            )
        pending.timer = self._clock.callLater(wait, self._timedOut, pending)

    def _timedOut(self, pending: Pending[_Q, _R]) -> None:
        pending.timer = None
        if pending.attempts < len(pending.timeouts):
            self._transmit(pending)
            return
        log.info(
            "gateway {gateway} did not answer {request} after {attempts} attempts",
            gateway=str(self.gateway),
            request=self._describe(pending.request),
            attempts=pending.attempts,
        )
        elapsed = self._clock.seconds() - (pending.firstSent or 0.0)
        error = NoResponseError(self.gateway, pending.attempts, elapsed)
        self._finish(pending, Failure(error))

    def _limited(self, pending: Pending[_Q, _R]) -> None:
        pending.limitTimer = None
        elapsed = self._clock.seconds() - pending.submitted
        log.info(
            "gateway {gateway} did not answer {request} within {limit} s",
            gateway=str(self.gateway),
            request=self._describe(pending.request),
            limit=round(elapsed, 2),
        )
        error = NoResponseError(self.gateway, pending.attempts, elapsed)
        self._finish(pending, Failure(error))
