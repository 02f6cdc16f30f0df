# -*- test-case-name: tests.server.test_service -*-
"""
The gateway's two times: the reactor schedules, a monotonic clock judges
elapsed time (the epoch, RFC 6886 s3.6, and expiry, s3.3).
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address

from twisted.internet.base import ReactorBase
from twisted.internet.interfaces import IReactorTime

from ._entries import MonotonicClock

__all__ = ["MonotonicClock", "externalAddressOrNone", "monotonicFor"]


class _SystemMonotonicClock:
    """
    The system's monotonic clock (C{time.monotonic}).
    """

    def seconds(self) -> float:
        return time.monotonic()


def monotonicFor(clock: IReactorTime) -> MonotonicClock:
    """
    The monotonic clock to judge elapsed time by beside C{clock}: the
    system's for a real reactor (whose C{seconds()} is the wall clock,
    which can be set back or forward), the clock itself for any other (a
    L{twisted.internet.task.Clock} in tests, whose time only the test
    moves).
    """
    if isinstance(clock, ReactorBase):
        return _SystemMonotonicClock()
    return clock


def externalAddressOrNone(address: IPv4Address | str | None) -> IPv4Address | None:
    """
    An external address, or L{None} for none yet: 0.0.0.0 is no address
    (RFC 6886 s3.2 sends it only with a non-zero result).

    @raise ValueError: C{address} is not an IPv4 address.
    """
    if address is None:
        return None
    parsed = IPv4Address(address)
    return None if parsed.is_unspecified else parsed
