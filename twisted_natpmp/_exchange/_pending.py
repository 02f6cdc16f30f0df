# -*- test-case-name: tests.test_exchange -*-
"""
The values of the request engine: one pending request, a retransmission
schedule, and how observers are called.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

__all__ = ["DEFAULT_TIMEOUTS", "Pending", "checkTimeouts", "notifyObservers"]

log = Logger()

_Q = TypeVar("_Q")
_R = TypeVar("_R")

#: RFC 6886 s3.1: wait 250 ms after the first send, doubling after each
#: retransmission; after the 9th attempt and its 64 s wait, give up.
DEFAULT_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


def checkTimeouts(timeouts: Sequence[float]) -> tuple[float, ...]:
    """
    Check a retransmission schedule: one or more positive waits.

    @return: the schedule as a C{tuple} of C{float}s.
    @raise ValueError: it is empty or has a wait that is not positive.
    """
    schedule = tuple(float(t) for t in timeouts)
    if not schedule or any(t <= 0 for t in schedule):
        raise ValueError(f"retransmission timeouts must be positive: {timeouts!r}")
    return schedule


def notifyObservers(
    observers: Iterable[Callable[..., object]], kind: str, *args: object
) -> None:
    """
    Call each observer with C{args}; one that raises is logged, and the
    others still called.

    @param kind: what the observers observe, for the log line.
    """
    for observer in list(observers):
        try:
            observer(*args)
        except Exception:
            log.failure(
                "{kind} observer {observer} failed", kind=kind, observer=repr(observer)
            )


@dataclass(eq=False)
class Pending(Generic[_Q, _R]):
    """
    One request submitted and not yet settled.

    @ivar request: the client's own value for it, given to C{matches}.
    @ivar packet: the bytes sent.
    @ivar timeouts: the wait after each send.
    @ivar key: what matches its reply, in key mode.
    @ivar queued: whether it waits its turn (else it was sent at once).
    @ivar deferred: fires with the reply that answers it.
    @ivar attempts: how many times it was sent.
    @ivar submitted: the clock's time when it was submitted.
    @ivar firstSent: the clock's time when it was first sent.
    """

    request: _Q
    packet: bytes
    timeouts: tuple[float, ...]
    key: Hashable | None
    queued: bool
    deferred: Deferred[_R] = field(init=False)
    attempts: int = 0
    submitted: float = 0.0
    firstSent: float | None = None
    timer: IDelayedCall | None = None
    limitTimer: IDelayedCall | None = None
