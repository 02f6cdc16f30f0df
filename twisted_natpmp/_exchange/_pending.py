# -*- test-case-name: tests.test_exchange -*-
"""
The values of the request engine: one pending request, a retransmission
schedule, and how observers are called.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Pending",
    "checkTimeouts",
    "notifyObservers",
    "settleAll",
]

log = Logger()

_Q = TypeVar("_Q")
_R = TypeVar("_R")
_K = TypeVar("_K", bound=Hashable)

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


def settleAll(
    deferreds: dict[_K, Deferred[Any]],
) -> Deferred[dict[_K, Failure | None]]:
    """
    Wait for every one of C{deferreds} (a batch of requests) to settle.

    @return: fires once all have, with a C{dict} from each key to L{None}
        (succeeded) or the L{Failure} saying why not, in the keys' order;
        cancelling it cancels every one still waiting (which then fail with
        L{twisted.internet.defer.CancelledError}).
    """
    outcomes: dict[_K, Failure | None] = {}

    def cancel(_: object) -> None:
        # Fires every request's Deferred at once, and so this one.
        for d in deferreds.values():
            d.cancel()

    done: Deferred[dict[_K, Failure | None]] = Deferred(cancel)

    def settle(key: _K) -> Callable[[object], None]:
        def settled(result: object) -> None:
            outcomes[key] = result if isinstance(result, Failure) else None
            if len(outcomes) == len(deferreds):
                done.callback({key: outcomes[key] for key in deferreds})

        return settled

    for key, d in deferreds.items():
        d.addBoth(settle(key))
    if not deferreds:
        done.callback({})
    return done
