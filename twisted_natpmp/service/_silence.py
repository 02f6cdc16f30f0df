# -*- test-case-name: tests.service.test_watchannounce -*-
"""
Whether the gateway answers, told to a person (L{SilenceWatch}), and the
mapper wrapper that tells it of every request (L{WatchedMapper}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._types import (
    DELETION_TIMEOUTS,
    Announcement,
    IPAddress,
    Mapping,
    ProtocolName,
    Transport,
)
from ..interfaces import IPortMapper, MappingKey, Probe
from ._keeping import unanswered
from .policy import SILENCE_REMINDER, SILENCE_WARNING

__all__ = ["SilenceWatch", "WatchedMapper"]

log = Logger()

_T = TypeVar("_T")


class SilenceWatch:
    """
    Whether the gateway answers, told to a person: a warning when nothing
    came back for C{warnAfter} seconds of asking, a reminder every
    C{remindEvery} seconds while the silence lasts (not a line per retry),
    and one line when it answers again.  A gateway that keeps falling
    silent and answering again (a lossy link) is warned about at most once
    every C{remindEvery} seconds.  Whenever it answers after a silence,
    C{answersAgain} is called.

    @ivar silent: nothing has come back for C{warnAfter} seconds of asking.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPAddress,
        answersAgain: Callable[[], object],
        warnAfter: float = SILENCE_WARNING,
        remindEvery: float = SILENCE_REMINDER,
    ) -> None:
        self._clock = clock
        self._gateway = str(gateway)
        self._answersAgain = answersAgain
        self._warnAfter = warnAfter
        self._remindEvery = remindEvery
        self.silent = False
        #: Whether this silence was told to a person.
        self._told = False
        #: When a person was last told of a silence.
        self._lastTold: float | None = None
        #: When the first request since the last answer was made, or the
        #: last answer if requests were still outstanding then.
        self._since: float | None = None
        #: How many requests are queued or in flight.
        self._outstanding = 0
        self._timer: IDelayedCall | None = None
        self._stopped = False

    def asking(self) -> None:
        """
        A request goes to the gateway.
        """
        self._outstanding += 1
        if self._since is None and not self._stopped:
            self._since = self._clock.seconds()
            self._schedule(self._warnAfter, self._silence)

    def unanswered(self) -> None:
        """
        A request settled without an answer (it gave up or was cancelled).
        """
        self._outstanding = max(0, self._outstanding - 1)

    def answered(self) -> None:
        """
        The gateway answered a request (success or a result code).  If
        other requests are still queued or in flight, the silence is timed
        again from now (RFC 6886 s3.1: they are still being retried).
        """
        self._outstanding = max(0, self._outstanding - 1)
        if self._stopped:
            return
        since, self._since = self._since, None
        self._cancel()
        if self._outstanding:
            self._since = self._clock.seconds()
            self._schedule(self._warnAfter, self._silence)
        if not self.silent:
            return
        self.silent = False
        if self._told:
            self._told = False
            log.info(
                "gateway {gateway} answers again, after {seconds:.0f} s without"
                " an answer",
                gateway=self._gateway,
                seconds=0.0 if since is None else self._clock.seconds() - since,
            )
        self._answersAgain()

    def stop(self) -> None:
        """
        Say nothing more, and call C{answersAgain} no more.
        """
        self._stopped = True
        self._cancel()

    def _schedule(self, delay: float, f: Callable[[], None]) -> None:
        self._cancel()
        self._timer = self._clock.callLater(delay, f)

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _silence(self) -> None:
        self._timer = None
        self.silent = True
        now = self._clock.seconds()
        if self._lastTold is None or now - self._lastTold >= self._remindEvery:
            self._told = True
            self._lastTold = now
            log.warn(
                "no answer from gateway {gateway} yet; still trying",
                gateway=self._gateway,
            )
        self._schedule(self._remindEvery, self._remind)

    def _remind(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        self._told = True
        self._lastTold = now
        log.warn(
            "still no answer from gateway {gateway} after {seconds:.0f} s;"
            " still trying",
            gateway=self._gateway,
            seconds=0.0 if self._since is None else now - self._since,
        )
        self._schedule(self._remindEvery, self._remind)


@implementer(IPortMapper)
class WatchedMapper:
    """
    An L{IPortMapper} that tells a L{SilenceWatch} of every request made
    through it (mappings, deletions, probes; not the batch deletions of a
    stop) and whether the gateway answered it.

    @ivar mapper: the mapper wrapped.
    """

    def __init__(self, mapper: IPortMapper, silence: SilenceWatch) -> None:
        self.mapper = mapper
        self._silence = silence
        #: Every request made through it and not yet settled, in the order
        #: made (a dict as an ordered set).
        self._inFlight: dict[Deferred[Any], None] = {}
        self._closed = False

    def close(self) -> None:
        """
        Ask nothing more: cancel every request made through this wrapper,
        the last made first (so that cancelling the one in flight sends
        none of those queued behind it, RFC 6886 s3.1), and fail every
        later one at once with L{CancelledError}.
        """
        self._closed = True
        for d in reversed(list(self._inFlight)):
            d.cancel()
        self._inFlight.clear()

    @property
    def gateway(self) -> IPAddress:  # type: ignore[override]
        return self.mapper.gateway

    @property
    def protocolName(self) -> ProtocolName:  # type: ignore[override]
        return self.mapper.protocolName

    def _watch(self, request: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        if self._closed:
            return fail(CancelledError())
        silence = self._silence
        silence.asking()
        d = request()
        self._inFlight[d] = None

        def settled(result: _T | Failure) -> _T | Failure:
            self._inFlight.pop(d, None)
            if isinstance(result, Failure) and (
                result.check(CancelledError) or unanswered(result)
            ):
                silence.unanswered()
            else:
                silence.answered()
            return result

        return d.addBoth(settled)

    def probe(self, timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        return self._watch(lambda: self.mapper.probe(timeouts))

    def addMapping(
        self,
        transport: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = 7200,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        return self._watch(
            lambda: self.mapper.addMapping(
                transport, internalPort, externalPort, lifetime, timeouts
            )
        )

    def deleteMapping(
        self,
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        return self._watch(
            lambda: self.mapper.deleteMapping(transport, internalPort, timeouts)
        )

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        return self.mapper.deleteMappings(keys, timeouts)

    def cancelPending(self) -> None:
        self.mapper.cancelPending()

    def announced(self, announcement: Announcement) -> bool:
        return self.mapper.announced(announcement)

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        self.mapper.addStateLossObserver(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        self.mapper.removeStateLossObserver(observer)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        self.mapper.addRetryObserver(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        self.mapper.removeRetryObserver(observer)

    def sourceAddress(self) -> IPAddress | None:
        return self.mapper.sourceAddress()

    def stop(self) -> Deferred[None]:
        return self.mapper.stop()
