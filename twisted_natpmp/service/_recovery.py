# -*- test-case-name: tests.service.test_recovery,tests.service.test_watch -*-
"""
L{Recovery}: the re-mapping of everything after the gateway lost its state
or announced itself (RFC 6886 s3.7), as an Automat machine whose states own
their timer or L{Deferred}::

    idle    --schedule-->      due       (the 0-5 s hold-off)
    due     --hold-off over--> asking    (the external address, again)
    asking  --answered-->      mapping   (every mapping, one at a time)
    mapping --done-->          idle      (and due again if asked meanwhile)
    any     --cancel-->        idle

A reason to re-map that comes while one is due or asking is covered by it
(its requests are all still to be sent); one that comes while mapping is
kept for another round once this one is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .policy import CONFIRM_SPACING

__all__ = ["Recovery"]

log = Logger()


class _Inputs(Protocol):
    def schedule(self, reason: str, confirm: bool) -> None:
        "Re-map everything after the hold-off."

    def cancel(self) -> None:
        "Re-map nothing."

    def _due(self) -> None:
        "The hold-off is over."

    def _told(self) -> None:
        "The external address request settled."

    def _done(self) -> None:
        "Every mapping was asked for."


@dataclass
class _Core:
    clock: IReactorTime
    holdOff: Callable[[], float]
    monotonic: Callable[[], float]
    #: Asks the external address; fires once handled.
    askAddress: Callable[[], Deferred[None]]
    #: Asks for every mapping, one at a time; fires once all are handled.
    remapEach: Callable[[], Deferred[None]]
    #: Called when a re-mapping is done, with how many reasons it covered.
    finished: Callable[[int], object]
    #: When the last re-mapping started (monotonic seconds).
    lastRemap: float | None = None
    #: Reasons to re-map that came while one was due or under way.
    coalesced: int = 0


@dataclass
class _HoldOff:
    call: IDelayedCall


@dataclass
class _Asking:
    deferred: Deferred[None]


@dataclass
class _Mapping:
    deferred: Deferred[None]
    #: Why to re-map again once done, and whether only to confirm.
    again: tuple[str, bool] | None = None


def _holdOff(c: _Inputs, s: _Core, reason: str, confirm: bool) -> _HoldOff:
    delay = s.holdOff()
    if confirm and s.lastRemap is not None:
        # Nothing is known lost: no sooner than CONFIRM_SPACING after the
        # last re-mapping started.
        delay = max(delay, s.lastRemap + CONFIRM_SPACING - s.monotonic())
    log.info(
        "{reason}: re-mapping everything in {delay:.2f} s", reason=reason, delay=delay
    )
    return _HoldOff(s.clock.callLater(delay, c._due))


def _logged(failure: Failure) -> None:
    if not failure.check(CancelledError):
        log.failure("re-mapping failed", failure)


def _ask(c: _Inputs, s: _Core) -> _Asking:
    s.lastRemap = s.monotonic()
    d = s.askAddress()
    d.addErrback(_logged).addBoth(lambda _: c._told())
    return _Asking(d)


def _remap(c: _Inputs, s: _Core) -> _Mapping:
    d = s.remapEach()
    d.addErrback(_logged).addBoth(lambda _: c._done())
    return _Mapping(d)


def _build() -> Callable[[_Core], _Inputs]:
    machine = TypeMachineBuilder(_Inputs, _Core)
    idle = machine.state("idle")
    due = machine.state("due", _holdOff)
    asking = machine.state("asking", _ask)
    mapping = machine.state("mapping", _remap)

    idle.upon(_Inputs.schedule).to(due).returns(None)
    idle.upon(_Inputs.cancel).loop().returns(None)
    # What a cancelled state's Deferred says on its way out.
    idle.upon(_Inputs._told).loop().returns(None)
    idle.upon(_Inputs._done).loop().returns(None)

    # Its mapping requests are all still to be sent: they cover it.
    @due.upon(_Inputs.schedule).loop()
    def coveredDue(
        c: _Inputs, s: _Core, data: _HoldOff, reason: str, confirm: bool
    ) -> None:
        s.coalesced += 1

    @asking.upon(_Inputs.schedule).loop()
    def coveredAsking(
        c: _Inputs, s: _Core, data: _Asking, reason: str, confirm: bool
    ) -> None:
        s.coalesced += 1

    due.upon(_Inputs._due).to(asking).returns(None)
    asking.upon(_Inputs._told).to(mapping).returns(None)

    @mapping.upon(_Inputs.schedule).loop()
    def later(c: _Inputs, s: _Core, data: _Mapping, reason: str, confirm: bool) -> None:
        s.coalesced += 1
        if data.again is None or not confirm:
            data.again = (reason, confirm)

    @mapping.upon(_Inputs._done).to(idle)
    def done(c: _Inputs, s: _Core, data: _Mapping) -> None:
        coalesced, s.coalesced = s.coalesced, 0
        s.finished(coalesced)
        if data.again is not None:
            c.schedule(*data.again)

    @due.upon(_Inputs.cancel).to(idle)
    def cancelHoldOff(c: _Inputs, s: _Core, data: _HoldOff) -> None:
        s.coalesced = 0
        data.call.cancel()

    @asking.upon(_Inputs.cancel).to(idle)
    def cancelAsking(c: _Inputs, s: _Core, data: _Asking) -> None:
        s.coalesced = 0
        data.deferred.cancel()

    @mapping.upon(_Inputs.cancel).to(idle)
    def cancelMapping(c: _Inputs, s: _Core, data: _Mapping) -> None:
        s.coalesced = 0
        data.deferred.cancel()

    return machine.build()


_Machine = _build()


class Recovery:
    """
    Re-maps everything after a random hold-off (RFC 6886 s3.7), once per
    reason or burst of reasons.
    """

    def __init__(
        self,
        clock: IReactorTime,
        holdOff: Callable[[], float],
        monotonic: Callable[[], float],
        askAddress: Callable[[], Deferred[None]],
        remapEach: Callable[[], Deferred[None]],
        finished: Callable[[int], object],
    ) -> None:
        """
        @param holdOff: the seconds to wait before re-mapping.
        @param monotonic: a clock that never steps, for L{CONFIRM_SPACING}.
        @param askAddress: asks for the external address first; fires once
            handled.
        @param remapEach: asks for every mapping, one request at a time;
            fires once every outcome is handled.
        @param finished: called once a re-mapping is done, with the number
            of other reasons to re-map it covered.
        """
        self._core = _Core(clock, holdOff, monotonic, askAddress, remapEach, finished)
        self._machine = _Machine(self._core)

    @property
    def lastRemap(self) -> float | None:
        """
        When the last re-mapping (or an early retry counted as one) started,
        in monotonic seconds.
        """
        return self._core.lastRemap

    @lastRemap.setter
    def lastRemap(self, when: float | None) -> None:
        self._core.lastRemap = when

    def schedule(self, reason: str, confirm: bool = False) -> None:
        """
        Re-map everything after the hold-off, unless a re-mapping that
        covers this reason is due or under way already.

        @param confirm: nothing is known to be lost: start no sooner than
            L{CONFIRM_SPACING} seconds after the last re-mapping started.
        """
        self._machine.schedule(reason, confirm)

    def cancel(self) -> None:
        """
        Cancel the re-mapping due or under way.
        """
        self._machine.cancel()
