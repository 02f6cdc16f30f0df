# -*- test-case-name: tests.server.test_responder -*-
"""
L{ExpiryTimer}: one reactor timer that has a gateway's table expire its
mappings when their lifetimes end (RFC 6886 s3.3: mappings not renewed
MUST be deleted).
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._entries import MonotonicClock
from ._shared import SharedTable

__all__ = ["ExpiryTimer"]


class ExpiryTimer:
    """
    Fires no later than the table's next deadline, and again after each
    expiry.
    """

    def __init__(
        self, clock: IReactorTime, monotonic: MonotonicClock, table: SharedTable
    ) -> None:
        """
        @param clock: schedules the timer.
        @param monotonic: the time of the table's deadlines.
        """
        self._clock = clock
        self._monotonic = monotonic
        self._table = table
        self._call: IDelayedCall | None = None
        self._due = 0.0

    def schedule(self) -> None:
        """
        Make sure the timer fires no later than the table's next deadline.
        """
        deadline = self._table.nextExpiry()
        call = self._call
        if call is not None and call.active():
            if deadline is not None and self._due <= deadline:
                return
            call.cancel()
        self._call = None
        if deadline is not None:
            # Deadlines are monotonic; the timer runs on the reactor, which a
            # wall-clock step may fire early (then nothing is due yet, and
            # the timer is set again) or late.
            self._due = deadline
            delay = max(deadline - self._monotonic.seconds(), 0.0)
            self._call = self._clock.callLater(delay, self._expire)

    def stop(self) -> None:
        """
        Fire no more (until L{schedule}d again).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _expire(self) -> None:
        self._call = None
        self._table.expire()
        self.schedule()
