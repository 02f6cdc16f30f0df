# -*- test-case-name: tests.service.test_keeper,tests.service.test_keeperpcp -*-
"""
L{MappingKeeper}: the life of one declared mapping, as an Automat state
machine (as Twisted's C{ClientService} is), each state owning its timer or
L{Deferred}: idle, requesting, mapped, renewing, backingOff, deleting and
stopped.  The machine and every transition are in
L{twisted_natpmp.service._keepermachine}.

What it does, and where RFC 6886 asks for it: renews at the protocol's
renewal point (C{Mapping.renewAfter}, or half the lifetime) reckoned with
the lifetime granted, or the one asked for if the gateway granted more
(s3.3: it SHOULD NOT), never sooner than
L{MIN_RENEWAL_INTERVAL <twisted_natpmp.service.policy.MIN_RENEWAL_INTERVAL>} after the
grant; lets the grant expire at that lifetime; suggests the external port it
holds on every renewal and re-mapping (s3.3, s3.7); and retries a failed
request after the capped, jittered backoff
(L{defaultBackoff <twisted_natpmp.service.policy.defaultBackoff>}), for as long
as it runs: the declaration is never forgotten.

Where the protocol says more, the keeper follows it without knowing the
protocol (the rules are looked up by C{mapper.protocolName} and
C{Mapping.protocolName} in L{twisted_natpmp.service.policy}): a gateway's
error that carries a lifetime (PCP, RFC 6887 s7.4) is retried after it, a
long-lived one not sooner than half an hour and told once; a PCP renewal
that fails is tried again at the RFC 6887 s11.2.1 points (3/4, 7/8 ... of
the lifetime), at least 4 s apart; and a PCP request keeps its client's own
s8.1.1 retransmission schedule.

The keeper knows nothing of the service: it takes the mapper, the clock and
the policies as arguments and reports each change to a callback, so that
the mapper service and the C{natpmp:} endpoint both use it.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from .._types import Mapping
from ..interfaces import IPortMapper
from ._keepercore import KeeperCore
from ._keepermachine import KeeperMachine
from ._keeping import (
    KeeperChange,
    KeeperContext,
    KeeperPhase,
    Why,
    renewalFloor,
    unanswered,
)
from .declarations import MappingDeclaration
from .policy import COPY_SLACK, STOP_TIMEOUTS
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
        mapTimeouts: Sequence[float] | None = None,
        deleteTimeouts: Sequence[float] = STOP_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
        context: KeeperContext | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        @param declaration: the mapping to keep.
        @param clock: schedules the renewals, retries and expiry.
        @param report: called with the keeper and the L{KeeperChange} after
            each grant, failure and expiry.
        @param backoff: given the failures so far, the seconds to wait before
            retrying (by default
            L{defaultBackoff <twisted_natpmp.service.policy.defaultBackoff>}).
        @param mapTimeouts: the retransmission schedule of one request; by
            default the protocol's
            (L{mapTimeoutsFor <twisted_natpmp.service.policy.mapTimeoutsFor>}:
            L{MAP_TIMEOUTS <twisted_natpmp.service.policy.MAP_TIMEOUTS>} for
            NAT-PMP, the PCP client's own RFC 6887
            s8.1.1 schedule).
        @param deleteTimeouts: the retransmission schedule of the deletion.
        @param monotonic: a clock that never steps, to place each grant in
            the gateway's run (L{confirmedBy}).
        @param random: a source of floats in [0, 1), for the random points
            at which a failed PCP renewal is tried again (RFC 6887
            s11.2.1).
        @param context: what the keepers of one gateway share (for their
            log lines); a new one by default.
        """
        self.declaration = declaration
        self.retriedInBurst = 0
        self.context = context or KeeperContext()
        self._core = KeeperCore(
            declaration,
            clock,
            lambda change: report(self, change),
            backoff or _defaultBackoff(),
            None if mapTimeouts is None else tuple(mapTimeouts),
            tuple(deleteTimeouts),
            monotonic,
            self.context,
            random=random,
        )
        self._machine = KeeperMachine(self._core)

    def __repr__(self) -> str:
        return f"<MappingKeeper {self.declaration}>"

    # What it knows

    @property
    def phase(self) -> KeeperPhase:
        """
        The keeper's state.  (Not to be asked from within the keeper's own
        report callback, while it changes state: Automat refuses a
        re-entrant input that returns a value.  Read the other attributes
        there.)
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
        (Like L{phase}, not to be asked from within the keeper's own report
        callback.)

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
