# -*- test-case-name: tests.service.test_keeper -*-
"""
L{MappingKeeper}: the life of one declared mapping, as an Automat state
machine (as Twisted's C{ClientService} is), each state owning its timer or
L{Deferred}.

The states, and what leads out of each::

    idle        --start-->                 requesting
    requesting  --granted-->               mapped
                --failed-->                backingOff
                --cancelled, pause-->      idle
                --remove-->                deleting
    mapped      --renewal timer, request-> renewing
                --pause-->                 idle
                --remove-->                deleting
    renewing    (as requesting)
    backingOff  --retry timer, request,
                  retryNow-->              requesting
                --pause-->                 idle
                --remove-->                deleting
    deleting    --deleted (or nothing
                  to delete)-->            stopped
    stopped     (ignores everything)

What it does, and where RFC 6886 asks for it: renews at the protocol's
renewal point (C{Mapping.renewAfter}, or half the lifetime) reckoned with
the lifetime granted, or the one asked for if the gateway granted more
(s3.3: it SHOULD NOT), never sooner than L{MIN_RENEWAL_INTERVAL} after the
grant; lets the grant expire at that lifetime; suggests the external port it
holds on every renewal and re-mapping (s3.3, s3.7); and retries a failed
request after the capped, jittered backoff (L{defaultBackoff}), for as long
as it runs: the declaration is never forgotten.

The keeper knows nothing of the service: it takes the mapper, the clock and
the policies as arguments and reports each change to a callback, so that
the mapper service and the C{natpmp:} endpoint both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress, Mapping
from ..errors import NoResponseError, NotSupportedError
from ..interfaces import IPortMapper
from .declarations import MappingDeclaration
from .policy import COPY_SLACK, MAP_TIMEOUTS, MIN_RENEWAL_INTERVAL, STOP_TIMEOUTS
from .policy import defaultBackoff as _defaultBackoff

__all__ = [
    "KeeperChange",
    "KeeperContext",
    "KeeperPhase",
    "MappingKeeper",
    "Why",
    "renewalFloor",
    "unanswered",
]

log = Logger()


class KeeperPhase(Enum):
    """
    The keeper's states, as L{MappingKeeper.phase} names them.
    """

    IDLE = "idle"
    REQUESTING = "requesting"
    MAPPED = "mapped"
    RENEWING = "renewing"
    BACKING_OFF = "backingOff"
    DELETING = "deleting"
    STOPPED = "stopped"


class Why(Enum):
    """
    Why a mapping request is made, for the log line of its outcome.
    """

    MAP = "map"
    RENEW = "renew"
    RETRY = "retry"
    REMAP = "remap"


class KeeperChange(Enum):
    """
    What changed, as the keeper reports it.
    """

    #: A request was granted (a first mapping, a renewal or a move).
    GRANTED = "granted"
    #: A request failed; the keeper retries after its backoff.
    FAILED = "failed"
    #: The grant ran out before it was renewed.
    EXPIRED = "expired"


@dataclass
class KeeperContext:
    """
    What the keepers of one gateway share, for their log lines.

    @ivar gateway: the gateway, for a person.
    @ivar externalAddress: the gateway's external address, if known
        otherwise than from a mapping.
    @ivar gatewaySilent: whether a person was told already that the gateway
        does not answer (failures for want of an answer are then logged at
        info).
    @ivar tinyLifetimeWarned: whether a person was told that the gateway
        grants lifetimes shorter than the renewal floor (the grants' lines
        are then at debug).
    """

    gateway: str = "?"
    externalAddress: IPAddress | None = None
    gatewaySilent: Callable[[], bool] = lambda: False
    tinyLifetimeWarned: bool = False


def renewalFloor(declaration: MappingDeclaration) -> float:
    """
    The shortest wait before renewing C{declaration}'s mapping, however
    short the gateway's grant: L{MIN_RENEWAL_INTERVAL}, or half the
    lifetime asked for if that is shorter.
    """
    return min(MIN_RENEWAL_INTERVAL, declaration.lifetime / 2)


def unanswered(failure: Failure) -> bool:
    """
    Did a request fail for want of an answer from the gateway (rather than
    with the gateway's answer)?
    """
    return bool(failure.check(NoResponseError, NotSupportedError, OSError))


class _Inputs(Protocol):
    def begin(self, why: Why) -> None:
        "Start keeping the mapping (idle only)."

    def request(self, why: Why) -> None:
        "Ask the gateway now, unless a request is in flight."

    def retry(self, why: Why) -> None:
        "End a backoff early; nothing in any other state."

    def pause(self) -> None:
        "Cancel everything pending; keep what is known."

    def remove(self) -> None:
        "Delete the mapping if one may be held, then stop for good."

    def phase(self) -> KeeperPhase:
        "The current state."

    def _granted(self, mapping: Mapping) -> None:
        "The request in flight was granted."

    def _failed(self, failure: Failure) -> None:
        "The request in flight failed."

    def _cancelled(self) -> None:
        "The request in flight was cancelled."

    def _due(self, why: Why) -> None:
        "The state's timer fired."

    def _expired(self) -> None:
        "The grant ran out."

    def _deleteIfHeld(self, held: bool) -> None:
        "Deleting: ask the gateway to delete if a mapping may be held."

    def _deleted(self) -> None:
        "The deletion was answered, given up, or not needed."


@dataclass
class _Grant:
    """
    The mapping held, and when it runs out.

    @ivar lifetime: the effective lifetime: granted, or asked for if less.
    @ivar expires: when it runs out, on the keeper's clock.
    @ivar run: when the gateway's run that granted it began (monotonic
        seconds), and C{epoch} the epoch of the grant.
    """

    mapping: Mapping
    lifetime: int
    expires: float
    run: float
    expiry: IDelayedCall | None = None

    def cancel(self) -> None:
        expiry, self.expiry = self.expiry, None
        if expiry is not None and expiry.active():
            expiry.cancel()


@dataclass
class _Core:
    declaration: MappingDeclaration
    clock: IReactorTime
    report: Callable[[KeeperChange], object]
    backoff: Callable[[int], float]
    mapTimeouts: Sequence[float]
    deleteTimeouts: Sequence[float]
    monotonic: Callable[[], float]
    context: KeeperContext
    mapper: IPortMapper | None = None
    grant: _Grant | None = None
    heldPort: int | None = None
    error: BaseException | None = None
    failures: int = 0
    #: Fired once the outcome of the request in flight (or of none) is
    #: handled.
    settling: list[Deferred[None]] = field(default_factory=list)
    #: Fired with the outcome of the deletion.
    removing: list[Deferred[None]] = field(default_factory=list)

    def settle(self) -> None:
        waiting, self.settling = self.settling, []
        for d in waiting:
            d.callback(None)

    def finishRemoving(self, result: Failure | None) -> None:
        waiting, self.removing = self.removing, []
        for d in waiting:
            d.callback(result)


@dataclass
class _Request:
    """
    A request in flight (requesting, renewing).
    """

    deferred: Deferred[None]
    why: Why
    suggested: int | None


@dataclass
class _Timer:
    """
    A renewal (mapped) or retry (backingOff).
    """

    call: IDelayedCall

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


@dataclass
class _Deletion:
    deferred: Deferred[None] | None = None


def _ask(c: _Inputs, s: _Core, why: Why) -> _Request:
    assert s.mapper is not None, "a keeper asks only once started"
    declaration = s.declaration
    suggested = s.heldPort if s.heldPort is not None else declaration.externalPort
    asked = s.mapper.addMapping(
        declaration.protocol,
        declaration.internalPort,
        suggested,
        declaration.lifetime,
        timeouts=s.mapTimeouts,
    )

    def failed(failure: Failure) -> None:
        if failure.check(CancelledError):
            c._cancelled()
        else:
            c._failed(failure)

    handled = asked.addCallbacks(c._granted, failed)
    return _Request(handled, why, suggested)


def _renewLater(c: _Inputs, s: _Core, mapping: Mapping) -> _Timer:
    # RFC 6886 s3.3: renew halfway to expiry (or at the protocol's point),
    # by the lifetime GRANTED (or asked, if less), but a short grant not
    # more often than MIN_RENEWAL_INTERVAL.
    lifetime = min(mapping.lifetime, s.declaration.lifetime)
    point = mapping.renewAfter
    if point is None or mapping.lifetime > s.declaration.lifetime:
        point = lifetime / 2
    delay = max(point, renewalFloor(s.declaration))
    return _Timer(s.clock.callLater(delay, c._due, Why.RENEW))


def _waitToRetry(c: _Inputs, s: _Core, failure: Failure) -> _Timer:
    s.error = failure.value
    delay = s.backoff(s.failures)
    s.failures += 1
    fields = dict(
        what=str(s.declaration),
        gateway=s.context.gateway,
        error=failure.getErrorMessage(),
        delay=delay,
    )
    text = "could not map {what} via {gateway}: {error}; next attempt in {delay:.1f} s"
    # A silent gateway is the watch's to tell, at a sensible interval.
    quiet = unanswered(failure) and s.context.gatewaySilent()
    (log.info if quiet else log.warn)(text, **fields)
    timer = _Timer(s.clock.callLater(delay, c._due, Why.RETRY))
    s.report(KeeperChange.FAILED)
    return timer


def _granted(c: _Inputs, s: _Core, request: _Request, mapping: Mapping) -> None:
    declaration = s.declaration
    previous = s.grant
    # RFC 6886 s3.3: a gateway may grant less than asked and SHOULD NOT
    # grant more; a longer grant (a faulty gateway, or a forged reply) is
    # not trusted beyond the lifetime asked for.
    lifetime = min(mapping.lifetime, declaration.lifetime)
    if previous is not None:
        previous.cancel()
    grant = s.grant = _Grant(
        mapping, lifetime, s.clock.seconds() + lifetime, s.monotonic() - mapping.epoch
    )
    grant.expiry = s.clock.callLater(lifetime, c._expired)
    s.heldPort = mapping.externalPort
    s.error = None
    s.failures = 0
    _logGrant(s, request, mapping, previous, lifetime)
    s.report(KeeperChange.GRANTED)
    s.settle()


def _logGrant(
    s: _Core,
    request: _Request,
    mapping: Mapping,
    previous: _Grant | None,
    lifetime: int,
) -> None:
    declaration = s.declaration
    context = s.context
    floor = renewalFloor(declaration)
    address = mapping.externalAddress or context.externalAddress
    fields: dict[str, Any] = dict(
        what=str(declaration),
        address="?" if address is None else str(address),
        port=mapping.externalPort,
        lifetime=mapping.lifetime,
        gateway=context.gateway,
    )
    asked = declaration.internalPort if request.suggested is None else request.suggested
    notes = []
    if asked and mapping.externalPort != asked:
        notes.append(f"asked for port {asked}")
    if mapping.lifetime != declaration.lifetime:
        notes.append(f"asked for {declaration.lifetime} s")
    fields["notes"] = f" ({'; '.join(notes)})" if notes else ""
    if request.why is Why.REMAP:
        verb = "re-mapped"
    else:
        verb = "mapped" if previous is None else "renewed"
    old = None if previous is None else previous.mapping.externalPort
    if old is not None and old != mapping.externalPort:
        log.warn(
            "{what} moved to {address}:{port} (was port {old}) for {lifetime} s{notes}",
            old=old,
            **fields,
        )
    else:
        # Once a person was told that the gateway grants tiny lifetimes,
        # each grant's line (a "mapped" one: the last expired before the
        # renewal) is no news.
        tinyAgain = lifetime / 2 < floor and context.tinyLifetimeWarned
        (log.debug if tinyAgain else log.info)(
            verb + " {what} -> {address}:{port} for {lifetime} s{notes}", **fields
        )
    if mapping.lifetime > declaration.lifetime:
        log.warn(
            "gateway {gateway} granted {what} {lifetime} s, more than the"
            " {asked} s asked for (RFC 6886 s3.3: it should not); renewing"
            " as if granted {asked} s",
            asked=declaration.lifetime,
            **fields,
        )
    if lifetime / 2 < floor and not context.tinyLifetimeWarned:
        context.tinyLifetimeWarned = True
        log.warn(
            "gateway {gateway} grants tiny lifetimes ({lifetime} s for"
            " {what}); renewing no more often than every {floor:.0f} s, so"
            " mappings may lapse between renewals",
            floor=floor,
            **fields,
        )


def _expired(c: _Inputs, s: _Core, data: object = None) -> None:
    grant, s.grant = s.grant, None
    if grant is None:
        return
    grant.expiry = None
    tiny = grant.mapping.lifetime / 2 < renewalFloor(s.declaration)
    # A gateway granting tiny lifetimes was warned about once.
    (log.debug if tiny else log.warn)(
        "the mapping of {what} expired", what=str(s.declaration)
    )
    s.report(KeeperChange.EXPIRED)


def _deleteLater(c: _Inputs, s: _Core) -> _Deletion:
    if s.grant is not None:
        s.grant.cancel()
    return _Deletion()


def _build() -> Callable[[_Core], _Inputs]:
    machine = TypeMachineBuilder(_Inputs, _Core)
    idle = machine.state("idle")
    requesting = machine.state("requesting", _ask)
    mapped = machine.state("mapped", _renewLater)
    renewing = machine.state("renewing", _ask)
    backingOff = machine.state("backingOff", _waitToRetry)
    deleting = machine.state("deleting", _deleteLater)
    stopped = machine.state("stopped")

    for state, phase in (
        (idle, KeeperPhase.IDLE),
        (requesting, KeeperPhase.REQUESTING),
        (mapped, KeeperPhase.MAPPED),
        (renewing, KeeperPhase.RENEWING),
        (backingOff, KeeperPhase.BACKING_OFF),
        (deleting, KeeperPhase.DELETING),
        (stopped, KeeperPhase.STOPPED),
    ):
        state.upon(_Inputs.phase).loop().returns(phase)

    # (The state's data, where it has any, comes third: typed as object, so
    # that Automat's check of it passes for every state.)
    def settled(
        c: _Inputs, s: _Core, data: object = None, *args: Any, **kwargs: Any
    ) -> None:
        s.settle()

    def nothing(
        c: _Inputs, s: _Core, data: object = None, *args: Any, **kwargs: Any
    ) -> None:
        pass

    def cancelTimer(c: _Inputs, s: _Core, timer: _Timer, why: Why) -> None:
        timer.cancel()

    def notAsking(c: _Inputs, s: _Core, why: Why) -> None:
        # Nothing will be asked: whoever waits for the outcome hears now.
        s.settle()

    # idle: nothing scheduled, nothing in flight.
    idle.upon(_Inputs.begin).to(requesting).returns(None)
    idle.upon(_Inputs.request).loop()(notAsking)
    idle.upon(_Inputs.retry).loop().returns(None)
    idle.upon(_Inputs.pause).loop().returns(None)
    idle.upon(_Inputs._cancelled).loop()(settled)
    idle.upon(_Inputs.remove).to(deleting)(
        lambda c, s: c._deleteIfHeld(s.grant is not None)
    )

    # requesting and renewing: a request in flight, owned as _Request.
    for asking in (requesting, renewing):
        asking.upon(_Inputs.begin).loop().returns(None)
        asking.upon(_Inputs.request).loop().returns(None)
        asking.upon(_Inputs.retry).loop().returns(None)
        asking.upon(_Inputs._granted).to(mapped)(_granted)
        asking.upon(_Inputs._failed).to(backingOff)(settled)
        asking.upon(_Inputs._cancelled).to(idle)(settled)
        asking.upon(_Inputs._expired).loop()(_expired)

        @asking.upon(_Inputs.pause).to(idle)
        def pauseAsking(c: _Inputs, s: _Core, request: _Request) -> None:
            if s.grant is not None:
                s.grant.cancel()
            request.deferred.cancel()

        @asking.upon(_Inputs.remove).to(deleting)
        def removeAsking(c: _Inputs, s: _Core, request: _Request) -> None:
            request.deferred.cancel()
            # The request may have reached the gateway.
            c._deleteIfHeld(True)

    # mapped: the grant held, the renewal timer owned as _Timer.
    # backingOff: the last request failed, the retry timer owned as _Timer.
    for waiting, next, on in (
        (mapped, renewing, (_Inputs.request, _Inputs._due)),
        (backingOff, requesting, (_Inputs.request, _Inputs._due, _Inputs.retry)),
    ):
        waiting.upon(_Inputs.begin).loop().returns(None)
        waiting.upon(_Inputs._expired).loop()(_expired)
        for input in on:
            waiting.upon(input).to(next)(cancelTimer)

        @waiting.upon(_Inputs.pause).to(idle)
        def pauseWaiting(c: _Inputs, s: _Core, timer: _Timer) -> None:
            timer.cancel()
            if s.grant is not None:
                s.grant.cancel()

        @waiting.upon(_Inputs.remove).to(deleting)
        def removeWaiting(c: _Inputs, s: _Core, timer: _Timer) -> None:
            timer.cancel()
            c._deleteIfHeld(s.grant is not None)

    mapped.upon(_Inputs.retry).loop().returns(None)

    # deleting: the deletion in flight, if one was needed, owned as _Deletion.
    @deleting.upon(_Inputs._deleteIfHeld).loop()
    def deleteIfHeld(c: _Inputs, s: _Core, deletion: _Deletion, held: bool) -> None:
        s.grant = None
        if not held or s.mapper is None:
            c._deleted()
            s.finishRemoving(None)
            return
        # RFC 6886 s3.1: a deletion may be given up sooner than other
        # requests.
        d = s.mapper.deleteMapping(
            s.declaration.protocol,
            s.declaration.internalPort,
            timeouts=s.deleteTimeouts,
        )
        what = str(s.declaration)
        d.addCallback(lambda _: log.info("removed {what}", what=what))
        deletion.deferred = d

        def done(result: Failure | None) -> None:
            c._deleted()
            s.finishRemoving(result)

        d.addBoth(done)

    deleting.upon(_Inputs._deleted).to(stopped)(settled)
    deleting.upon(_Inputs.begin).loop()(nothing)
    deleting.upon(_Inputs.retry).loop()(nothing)
    deleting.upon(_Inputs.pause).loop()(nothing)
    deleting.upon(_Inputs.remove).loop()(nothing)
    deleting.upon(_Inputs._cancelled).loop()(nothing)
    deleting.upon(_Inputs.request).loop()(settled)

    # stopped: ignores everything; removed already, it has nothing to delete.
    stopped.upon(_Inputs.begin).loop().returns(None)
    stopped.upon(_Inputs.retry).loop().returns(None)
    stopped.upon(_Inputs.pause).loop()(nothing)
    stopped.upon(_Inputs._cancelled).loop()(nothing)
    stopped.upon(_Inputs.request).loop()(notAsking)
    stopped.upon(_Inputs.remove).loop()(lambda c, s: s.finishRemoving(None))
    return machine.build()


_Machine = _build()


class MappingKeeper:
    """
    Keeps one declared mapping on one gateway at a time, through an
    L{IPortMapper}: maps it when started, renews it, retries it after a
    backoff when a request fails, and deletes it when removed.

    @ivar declaration: what it keeps.
    @ivar retriedInBurst: for the announcement handling of its owner: the
        burst of announcements in which it was last retried early (0:
        none).
    """

    def __init__(
        self,
        declaration: MappingDeclaration,
        clock: IReactorTime,
        report: Callable[[MappingKeeper, KeeperChange], object] = lambda k, c: None,
        *,
        backoff: Callable[[int], float] | None = None,
        mapTimeouts: Sequence[float] = MAP_TIMEOUTS,
        deleteTimeouts: Sequence[float] = STOP_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
        context: KeeperContext | None = None,
    ) -> None:
        """
        @param declaration: the mapping to keep.
        @param clock: schedules the renewals, retries and expiry.
        @param report: called with the keeper and the L{KeeperChange} after
            each grant, failure and expiry.
        @param backoff: given the failures so far, the seconds to wait before
            retrying (L{defaultBackoff} by default).
        @param mapTimeouts: the retransmission schedule of one request.
        @param deleteTimeouts: the retransmission schedule of the deletion.
        @param monotonic: a clock that never steps, to place each grant in
            the gateway's run (L{confirmedBy}).
        @param context: what the keepers of one gateway share (for their
            log lines); a new one by default.
        """
        self.declaration = declaration
        self.retriedInBurst = 0
        self.context = context or KeeperContext()
        self._core = _Core(
            declaration,
            clock,
            lambda change: report(self, change),
            backoff or _defaultBackoff(),
            tuple(mapTimeouts),
            tuple(deleteTimeouts),
            monotonic,
            self.context,
        )
        self._machine = _Machine(self._core)

    def __repr__(self) -> str:
        return f"<MappingKeeper {self.declaration}>"

    # What it knows

    @property
    def phase(self) -> KeeperPhase:
        """
        The keeper's state.  (Not to be asked from within the keeper's own
        report callback: read the other attributes there.)
        """
        return self._machine.phase()

    @property
    def mapper(self) -> IPortMapper | None:
        """
        The mapper it was last started with, if any.
        """
        return self._core.mapper

    @property
    def mapping(self) -> Mapping | None:
        """
        The mapping held, or L{None}.
        """
        grant = self._core.grant
        return None if grant is None else grant.mapping

    @property
    def lifetime(self) -> int | None:
        """
        The held mapping's effective lifetime: the one granted, or the one
        asked for if the gateway granted more (RFC 6886 s3.3).
        """
        grant = self._core.grant
        return None if grant is None else grant.lifetime

    @property
    def expires(self) -> float | None:
        """
        When the held mapping runs out, on the keeper's clock.
        """
        grant = self._core.grant
        return None if grant is None else grant.expires

    @property
    def error(self) -> BaseException | None:
        """
        Why the last request failed, if it did (cleared by a grant).
        """
        return self._core.error

    @error.setter
    def error(self, error: BaseException | None) -> None:
        self._core.error = error

    @property
    def heldPort(self) -> int | None:
        """
        The external port last granted, suggested again (RFC 6886 s3.3,
        s3.7).
        """
        return self._core.heldPort

    @property
    def failures(self) -> int:
        """
        The requests failed in a row.
        """
        return self._core.failures

    def confirmedBy(self, run: float) -> bool:
        """
        Does an announcement from the gateway's run that began at C{run}
        (monotonic seconds) prove that the mapping is still held?  Only if
        the mapping was granted by the same run, late enough in it that a
        restart after the grant would show (L{COPY_SLACK}).
        """
        grant = self._core.grant
        return (
            grant is not None
            and grant.mapping.epoch > COPY_SLACK
            and abs(run - grant.run) <= COPY_SLACK
        )

    def mayBeHeld(self) -> tuple[bool, bool]:
        """
        May the gateway hold the mapping now, and was it never seen granted?

        @return: C{(held, unconfirmed)}: C{held} if a mapping is held or a
            request is in flight (which may have been granted);
            C{unconfirmed} if only the latter.
        """
        asking = self.phase in (KeeperPhase.REQUESTING, KeeperPhase.RENEWING)
        granted = self._core.grant is not None
        return asking or granted, asking and not granted

    # What it is told

    def start(self, mapper: IPortMapper, context: KeeperContext | None = None) -> None:
        """
        Start keeping the mapping through C{mapper}: ask for it now.  For an
        idle keeper (a new one, or one paused); one removed stays stopped.

        @param context: what the keepers of C{mapper}'s gateway share, if
            not the one given before.
        """
        self._core.mapper = mapper
        if context is not None:
            self.context = self._core.context = context
        self._machine.begin(Why.MAP)

    def request(self, why: Why = Why.REMAP) -> Deferred[None]:
        """
        Ask the gateway now, suggesting the port held (RFC 6886 s3.7),
        unless a request is in flight; a renewal or retry due later is
        brought forward.

        @return: fires (with L{None}) once the outcome is handled, or at
            once if the keeper is not running.
        """
        d: Deferred[None] = Deferred()
        self._core.settling.append(d)
        self._machine.request(why)
        return d

    def retryNow(self) -> None:
        """
        If waiting to retry after a failure, retry now.
        """
        self._machine.retry(Why.RETRY)

    def pause(self) -> None:
        """
        Cancel the request in flight and every timer, keeping what is known
        (the grant, the port held); idle until started again.
        """
        self._machine.pause()

    def forget(self, ports: bool = False) -> None:
        """
        Forget the grant (and, with C{ports}, the port held and the count of
        failures, as for a new gateway).  For an idle keeper.
        """
        core = self._core
        if core.grant is not None:
            core.grant.cancel()
        core.grant = None
        if ports:
            core.heldPort = None
            core.failures = 0

    def remove(self) -> Deferred[None]:
        """
        Stop for good, deleting the mapping from the gateway if one may be
        held (RFC 6886 s3.4).

        @return: fires when the gateway confirmed the deletion, or at once
            if there was nothing to delete; fails with the deletion's error.
        """
        d: Deferred[None] = Deferred()
        self._core.removing.append(d)
        self._machine.remove()
        return d
