# -*- test-case-name: tests.service.test_keeper,tests.service.test_keeperretry -*-
"""
The state machine of L{MappingKeeper <twisted_natpmp.service.keeper.MappingKeeper>}:
its inputs, each state's data (the timer or
L{Deferred <twisted.internet.defer.Deferred>} it owns; the core and the
data's classes are in L{twisted_natpmp.service._keepercore}) and every
transition, read off this one file.

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

The grant's expiry is the grant's own timer, in the core: a mapping held
runs out on time whatever the keeper is doing (asking to renew, or waiting
to retry after a failed renewal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import Mapping
from ..errors import GatewayError
from ._keepercore import Deletion as _Deletion
from ._keepercore import Grant as _Grant
from ._keepercore import KeeperCore
from ._keepercore import Request as _Request
from ._keepercore import Timer as _Timer
from ._keeping import (
    KeeperChange,
    KeeperPhase,
    Why,
    logGrant,
    renewalFloor,
    unanswered,
)

log = Logger(namespace="twisted_natpmp.service.keeper")


class KeeperInputs(Protocol):
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


def _ask(c: KeeperInputs, s: KeeperCore, why: Why) -> _Request:
    assert s.mapper is not None, "a keeper asks only once started"
    declaration = s.declaration
    suggested = s.heldPort if s.heldPort is not None else declaration.externalPort
    asked = s.mapper.addMapping(
        declaration.protocol,
        declaration.internalPort,
        suggested,
        declaration.lifetime,
        timeouts=s.timeouts(),
    )

    def failed(failure: Failure) -> None:
        if failure.check(CancelledError):
            c._cancelled()
        else:
            c._failed(failure)

    handled = asked.addCallbacks(c._granted, failed)
    return _Request(handled, why, suggested)


def _renewLater(c: KeeperInputs, s: KeeperCore, mapping: Mapping) -> _Timer:
    # RFC 6886 s3.3: renew halfway to expiry (or at the protocol's point),
    # by the lifetime GRANTED (or asked, if less), but a short grant not
    # more often than MIN_RENEWAL_INTERVAL.
    lifetime = min(mapping.lifetime, s.declaration.lifetime)
    point = mapping.renewAfter
    if point is None or mapping.lifetime > s.declaration.lifetime:
        point = lifetime / 2
    delay = max(point, renewalFloor(s.declaration))
    return _Timer(s.clock.callLater(delay, c._due, Why.RENEW))


def _waitToRetry(c: KeeperInputs, s: KeeperCore, failure: Failure) -> _Timer:
    s.error = failure.value
    # RFC 6887 s7.4, s11.2.1: an error's lifetime, a renewal's retry point,
    # or else the backoff.
    wait = s.retryWait(failure)
    s.failures += 1
    fields = dict(
        what=str(s.declaration),
        gateway=s.context.gateway,
        protocol=s.protocolName.display,
        error=failure.getErrorMessage(),
        delay=wait.delay,
        reason=wait.reason,
    )
    text = "could not map {what} via {gateway}: {error}; next attempt in {delay:.1f} s"
    if wait.reason != "backoff":
        text += " ({protocol} {reason})"
    error = failure.value
    if isinstance(error, GatewayError) and wait.reason == "error lifetime":
        if not error.shortLived:
            text += "; not asking again soon"
    # A silent gateway is the watch's to tell, at a sensible interval; the
    # failure told last (a gateway that keeps refusing) is told once, until
    # a grant or another failure.
    again = s.toldAgain(error)
    quiet = (unanswered(failure) and s.context.gatewaySilent()) or again
    (log.info if quiet else log.warn)(text, **fields)
    timer = _Timer(s.clock.callLater(wait.delay, c._due, Why.RETRY))
    s.report(KeeperChange.FAILED)
    return timer


def _granted(
    c: KeeperInputs, s: KeeperCore, request: _Request, mapping: Mapping
) -> None:
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
    s.toldFailure = None
    logGrant(
        declaration,
        s.context,
        request.why,
        request.suggested,
        mapping,
        None if previous is None else previous.mapping.externalPort,
        lifetime,
    )
    s.report(KeeperChange.GRANTED)
    s.settle()


def _expired(c: KeeperInputs, s: KeeperCore, data: object = None) -> None:
    grant, s.grant = s.grant, None
    assert grant is not None, "only a grant's own timer says it expired"
    grant.expiry = None
    tiny = grant.mapping.lifetime / 2 < renewalFloor(s.declaration)
    # A gateway granting tiny lifetimes was warned about once.
    (log.debug if tiny else log.warn)(
        "the mapping of {what} expired", what=str(s.declaration)
    )
    s.report(KeeperChange.EXPIRED)


def _deleteLater(c: KeeperInputs, s: KeeperCore) -> _Deletion:
    if s.grant is not None:
        s.grant.cancel()
    return _Deletion()


def _build() -> Callable[[KeeperCore], KeeperInputs]:
    machine = TypeMachineBuilder(KeeperInputs, KeeperCore)
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
        state.upon(KeeperInputs.phase).loop().returns(phase)

    # (The state's data, where it has any, comes third: typed as object, so
    # that Automat's check of it passes for every state.)
    def settled(
        c: KeeperInputs, s: KeeperCore, data: object = None, *args: Any, **kwargs: Any
    ) -> None:
        s.settle()

    def nothing(
        c: KeeperInputs, s: KeeperCore, data: object = None, *args: Any, **kwargs: Any
    ) -> None:
        pass

    def cancelTimer(c: KeeperInputs, s: KeeperCore, timer: _Timer, why: Why) -> None:
        timer.cancel()

    def notAsking(c: KeeperInputs, s: KeeperCore, why: Why) -> None:
        # Nothing will be asked: whoever waits for the outcome hears now.
        s.settle()

    # idle: nothing scheduled, nothing in flight.
    @idle.upon(KeeperInputs.begin).to(requesting)
    def resume(c: KeeperInputs, s: KeeperCore, why: Why) -> None:
        # A grant kept over a pause runs out when it was going to.
        grant = s.grant
        if grant is not None and grant.expiry is None:
            left = max(0.0, grant.expires - s.clock.seconds())
            grant.expiry = s.clock.callLater(left, c._expired)

    idle.upon(KeeperInputs.request).loop()(notAsking)
    idle.upon(KeeperInputs.retry).loop().returns(None)
    idle.upon(KeeperInputs.pause).loop().returns(None)
    idle.upon(KeeperInputs._cancelled).loop()(settled)
    idle.upon(KeeperInputs.remove).to(deleting)(
        lambda c, s: c._deleteIfHeld(s.grant is not None)
    )

    # requesting and renewing: a request in flight, owned as _Request.
    for asking in (requesting, renewing):
        asking.upon(KeeperInputs.begin).loop().returns(None)
        asking.upon(KeeperInputs.request).loop().returns(None)
        asking.upon(KeeperInputs.retry).loop().returns(None)
        asking.upon(KeeperInputs._granted).to(mapped)(_granted)
        asking.upon(KeeperInputs._failed).to(backingOff)(settled)
        asking.upon(KeeperInputs._cancelled).to(idle)(settled)
        asking.upon(KeeperInputs._expired).loop()(_expired)

        @asking.upon(KeeperInputs.pause).to(idle)
        def pauseAsking(c: KeeperInputs, s: KeeperCore, request: _Request) -> None:
            if s.grant is not None:
                s.grant.cancel()
            request.deferred.cancel()

        @asking.upon(KeeperInputs.remove).to(deleting)
        def removeAsking(c: KeeperInputs, s: KeeperCore, request: _Request) -> None:
            request.deferred.cancel()
            # The request may have reached the gateway.
            c._deleteIfHeld(True)

    # mapped: the grant held, the renewal timer owned as _Timer.
    # backingOff: the last request failed, the retry timer owned as _Timer.
    for waiting, next, on in (
        (mapped, renewing, (KeeperInputs.request, KeeperInputs._due)),
        (
            backingOff,
            requesting,
            (KeeperInputs.request, KeeperInputs._due, KeeperInputs.retry),
        ),
    ):
        waiting.upon(KeeperInputs.begin).loop().returns(None)
        waiting.upon(KeeperInputs._expired).loop()(_expired)
        for input in on:
            waiting.upon(input).to(next)(cancelTimer)

        @waiting.upon(KeeperInputs.pause).to(idle)
        def pauseWaiting(c: KeeperInputs, s: KeeperCore, timer: _Timer) -> None:
            timer.cancel()
            if s.grant is not None:
                s.grant.cancel()

        @waiting.upon(KeeperInputs.remove).to(deleting)
        def removeWaiting(c: KeeperInputs, s: KeeperCore, timer: _Timer) -> None:
            timer.cancel()
            c._deleteIfHeld(s.grant is not None)

    mapped.upon(KeeperInputs.retry).loop().returns(None)

    # deleting: the deletion in flight, if one was needed, owned as _Deletion.
    @deleting.upon(KeeperInputs._deleteIfHeld).loop()
    def deleteIfHeld(
        c: KeeperInputs, s: KeeperCore, deletion: _Deletion, held: bool
    ) -> None:
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

    deleting.upon(KeeperInputs._deleted).to(stopped)(settled)
    deleting.upon(KeeperInputs.begin).loop()(nothing)
    deleting.upon(KeeperInputs.retry).loop()(nothing)
    deleting.upon(KeeperInputs.pause).loop()(nothing)
    deleting.upon(KeeperInputs.remove).loop()(nothing)
    deleting.upon(KeeperInputs._cancelled).loop()(nothing)
    deleting.upon(KeeperInputs.request).loop()(settled)

    # stopped: ignores everything; removed already, it has nothing to delete.
    stopped.upon(KeeperInputs.begin).loop().returns(None)
    stopped.upon(KeeperInputs.retry).loop().returns(None)
    stopped.upon(KeeperInputs.pause).loop()(nothing)
    stopped.upon(KeeperInputs._cancelled).loop()(nothing)
    stopped.upon(KeeperInputs.request).loop()(notAsking)
    stopped.upon(KeeperInputs.remove).loop()(lambda c, s: s.finishRemoving(None))
    return machine.build()


KeeperMachine = _build()
