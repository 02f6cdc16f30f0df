# -*- test-case-name: tests.service.test_watch,tests.service.test_watchannounce -*-
"""
L{GatewayWatch}: watching the gateway in use for the keepers of its
mappings.  One per gateway (and mapper); it asks no protocol-specific
question: the health check is L{IPortMapper.probe}, announcements are judged
by L{IPortMapper.announced}.

What it does, and where RFC 6886 asks for it:

  - asks for the external address when it starts (a probe), so that the
    mappings can be told with it, and reports a private one (RFC 1918 or
    100.64/10): the host is behind a second NAT;
  - probes every C{healthInterval} seconds, so that a gateway reboot is
    noticed even when no announcement arrives (s3.6);
  - says within L{SILENCE_WARNING} seconds that the gateway does not answer,
    reminds every L{SILENCE_REMINDER} seconds, and retries every failing
    mapping as soon as it answers again (L{SilenceWatch});
  - re-maps everything, after the random 0-5 s hold-off and one request at
    a time (s3.7, L{Recovery}), when the gateway is seen to have lost its
    state (s3.6), when its external address changes, or when it announces
    itself (s3.2.1, or a PCP ANNOUNCE, RFC 6887 s14.1), unless the
    announcement's epoch proves that the gateway has not restarted since
    each mapping was granted (L{MappingKeeper.confirmedBy}); a confirmation
    starts at most once every L{CONFIRM_SPACING} seconds;
  - on an announcement, retries at once, without the hold-off, each mapping
    waiting to be retried that this gateway never granted (a first request,
    not a renewal: s3.1 has an announcement discard the verdict that the
    gateway does not speak the protocol), once per burst of announcements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import Announcement, AnnouncementKind, IPAddress, Mapping
from ..interfaces import IPortMapper, Probe
from ._recovery import Recovery
from ._silence import SilenceWatch, WatchedMapper
from .declarations import behindSecondNAT
from .keeper import KeeperContext, KeeperPhase, MappingKeeper, Why, unanswered
from .policy import (
    ADDRESS_TIMEOUTS,
    CONFIRM_SPACING,
    COPY_SLACK,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUTS,
)

__all__ = ["GatewayWatch"]

log = Logger()


def _events(count: int) -> str:
    """
    What C{count} coalesced events are called: one announcement or loss, or
    several.
    """
    return "announcement or loss" if count == 1 else "announcements or losses"


class GatewayWatch:
    """
    Watches one gateway, through its mapper, for the keepers of its
    mappings.

    @ivar mapper: the mapper the keepers are to use: the gateway's, wrapped
        so that the silence watch hears of every request.
    @ivar context: what the keepers of this gateway share.
    @ivar externalAddress: the gateway's external address, if known.
    """

    def __init__(
        self,
        clock: IReactorTime,
        mapper: IPortMapper,
        keepers: Callable[[], Iterable[MappingKeeper]],
        *,
        holdOff: Callable[[], float],
        monotonic: Callable[[], float],
        healthInterval: float = HEALTH_INTERVAL,
        changed: Callable[[MappingKeeper], object] = lambda keeper: None,
        describe: Callable[[], str] = lambda: "",
    ) -> None:
        """
        @param keepers: returns the keepers of the declarations, in order.
        @param holdOff: the seconds to wait before re-mapping (s3.7).
        @param monotonic: a clock that never steps, to judge epochs.
        @param healthInterval: seconds between probes.
        @param changed: called with a keeper whose state, as observers see
            it, changed (here: the external address).
        @param describe: the states of every declaration, for a person.
        """
        self._clock = clock
        self._keepers = keepers
        self._monotonic = monotonic
        self._healthInterval = healthInterval
        self._changed = changed
        self._describe = describe
        self.gateway = mapper.gateway
        self._silence = SilenceWatch(clock, mapper.gateway, self._answersAgain)
        self._watched = WatchedMapper(mapper, self._silence)
        self.mapper: IPortMapper = self._watched
        self.context = KeeperContext(
            gateway=str(mapper.gateway), gatewaySilent=lambda: self._silence.silent
        )
        self.externalAddress: IPAddress | None = None
        self._recovery = Recovery(
            clock,
            holdOff,
            monotonic,
            lambda: self._askAddress(ADDRESS_TIMEOUTS, recovering=True),
            lambda: Deferred.fromCoroutine(self._remapEach()),
            self._remapped,
        )
        #: The current announcement burst (counted from 1), and when the
        #: gateway's run that its announcements come from began.
        self._burst = 0
        self._burstRun: float | None = None
        #: The kind of the announcement being judged by the mapper, if any.
        self._judging: AnnouncementKind | None = None
        self._address: Deferred[None] | None = None
        self._health: Deferred[None] | None = None
        self._loop: LoopingCall | None = None
        mapper.addStateLossObserver(self.stateLost)

    def start(self) -> None:
        """
        Ask for the external address, and probe every C{healthInterval}.
        """
        self._address = self._askAddress(ADDRESS_TIMEOUTS)
        self._address.addBoth(self._forget, "_address")
        loop = self._loop = LoopingCall(self.healthCheck)
        loop.clock = self._clock
        loop.start(self._healthInterval, now=False).addErrback(
            lambda failure: log.failure("periodic check failed", failure)
        )

    def stop(self) -> None:
        """
        Ask nothing more, say nothing more: cancel every request made
        through L{mapper} (the keepers' too: the last made first), the
        probes, the re-mapping and the silence watch.
        """
        self._watched.close()
        self.mapper.removeStateLossObserver(self.stateLost)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._recovery.cancel()
        for d in (self._health, self._address):
            if d is not None:
                d.cancel()
        self._silence.stop()

    def _forget(self, result: object, name: str) -> None:
        setattr(self, name, None)

    # The external address and the health check

    def granted(self, mapping: Mapping | None = None) -> None:
        """
        A mapping was granted.  One that tells the external address (PCP's
        do) tells the gateway's.  Otherwise, if the address is not known yet
        (the first request went unanswered: it is short, not to hold up the
        mappings), the gateway answers now: ask again.
        """
        if mapping is not None and mapping.externalAddress is not None:
            self.gotAddress(mapping.externalAddress)
        elif self.externalAddress is None and self._address is None:
            self._address = self._askAddress(ADDRESS_TIMEOUTS)
            self._address.addBoth(self._forget, "_address")

    def healthCheck(self) -> None:
        """
        RFC 6886 s3.6: any answer carries the epoch, so a cheap probe every
        so often reveals a gateway that lost its state without announcing
        it.
        """
        if self._health is None:
            self._health = self._askAddress(HEALTH_TIMEOUTS)
            self._health.addBoth(self._forget, "_health")

    def _askAddress(
        self, timeouts: Sequence[float], recovering: bool = False
    ) -> Deferred[None]:
        return self.mapper.probe(timeouts).addCallbacks(
            self._probed, self._probeFailed, callbackArgs=(recovering,)
        )

    def _probed(self, probe: Probe, recovering: bool) -> None:
        if probe.externalAddress is not None:
            self.gotAddress(probe.externalAddress, recovering)

    def _probeFailed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        # No answer at all is the silence watch's to tell.
        (log.info if unanswered(failure) else log.warn)(
            "gateway {gateway} did not tell its external address: {error}",
            gateway=str(self.gateway),
            error=failure.getErrorMessage(),
        )

    def gotAddress(self, address: IPAddress, recovering: bool = False) -> None:
        """
        The gateway told its external address: a new one re-maps everything
        (unless re-mapping already).
        """
        previous, self.externalAddress = self.externalAddress, address
        self.context.externalAddress = address
        if address == previous:
            return
        log.info(
            "gateway {gateway} has external address {address}",
            gateway=str(self.gateway),
            address=str(address),
        )
        if behindSecondNAT(address):
            log.warn(
                "the external address {address} is private: this host is behind"
                " a second NAT, and its mappings do not make it reachable from"
                " the Internet",
                address=str(address),
            )
        if previous is not None and not recovering:
            self._recovery.schedule(f"the external address changed from {previous}")
        for keeper in list(self._keepers()):
            if keeper.mapping is not None:
                self._changed(keeper)

    # Losses of state, announcements and recovery (RFC 6886 s3.6, s3.7)

    def stateLost(self) -> None:
        """
        The mapper saw that the gateway lost its state (RFC 6886 s3.6).
        """
        if self._judging is AnnouncementKind.PCP:
            # Said by a PCP announcement: scheduled by announced().
            return
        self._burst += 1
        self._recovery.schedule("the gateway lost its state (RFC 6886 s3.6)")

    def announced(self, announcement: Announcement) -> None:
        """
        An announcement from the gateway (RFC 6886 s3.2.1, RFC 6887 s14.1):
        confirm the mappings unless it proves them held.

        A loss of state by the epoch rule (s3.6, which s3.2.1 applies to
        announcements too) or a new external address re-maps everything.
        But two restarts close together look alike to that rule, so any
        other announcement also leads to the mappings being requested again
        (rate-limited), unless its epoch shows the same run of the gateway
        as the one that granted each held mapping, late enough in that run
        that a restart since would show (L{COPY_SLACK}): the copies of
        s3.2.1 so cost nothing.  A mapping waiting for its backoff is
        retried early once per burst of announcements from one run (s3.1:
        an announcement is the signal to try again), not per copy.
        """
        run = self._monotonic() - announcement.epoch
        if self._burstRun is None or abs(run - self._burstRun) > COPY_SLACK:
            self._burst += 1
        self._burstRun = run
        reason = f"{announcement.kind.value} announcement from {self.gateway}"
        # A loss of state by a NAT-PMP announcement reaches stateLost
        # through the mapper.  One by a PCP announcement is re-mapped for
        # here, no sooner than CONFIRM_SPACING after the last re-mapping
        # started: the RFC 6887 s8.5 rule also takes an epoch too far ahead
        # for a loss, so forged announcements with ever new epochs would
        # otherwise re-map at every hold-off.
        self._judging = announcement.kind
        try:
            lost = self.mapper.announced(announcement)
        finally:
            self._judging = None
        self._askFirstRequests()
        if lost:
            if announcement.kind is AnnouncementKind.PCP:
                self._recovery.schedule(
                    f"{reason}: the gateway lost its state", confirm=True
                )
            return
        if announcement.kind is AnnouncementKind.NATPMP:
            known, told = self.externalAddress, announcement.externalAddress
            if known is None and told is not None:
                # The address was not known yet (the first request failed):
                # the announcement tells it.
                self.gotAddress(told)
            elif known is not None and told is not None and told != known:
                # (An announcement of 0.0.0.0, no address, RFC 6886 s3.2,
                # is no address news: it is parsed as none.)
                self._recovery.schedule(f"{reason}: a new external address")
                return
        due = [
            keeper
            for keeper in self._keepers()
            if (
                keeper.phase is KeeperPhase.BACKING_OFF
                and keeper.retriedInBurst != self._burst
            )
            or (keeper.phase is KeeperPhase.MAPPED and not keeper.confirmedBy(run))
        ]
        if due:
            self._recovery.schedule(reason, confirm=True)
        # Otherwise a copy: nothing to do, and nothing to log per packet.

    def _askFirstRequests(self) -> None:
        """
        On an announcement, ask at once, one request at a time behind any
        queued (RFC 6886 s3.1), for every mapping waiting to be retried that
        this gateway never granted: a first request, not a renewal, so
        without the s3.7 hold-off.  Once per burst, not per copy, and at
        most once every L{CONFIRM_SPACING} seconds, counted with the
        re-mappings, so that forged announcements with ever new epochs
        cannot make the service ask faster.
        """
        now = self._monotonic()
        last = self._recovery.lastRemap
        if last is not None and now - last < CONFIRM_SPACING:
            return
        for keeper in list(self._keepers()):
            if (
                keeper.phase is KeeperPhase.BACKING_OFF
                and keeper.heldPort is None
                and keeper.retriedInBurst != self._burst
            ):
                self._recovery.lastRemap = now
                keeper.retriedInBurst = self._burst
                keeper.request(Why.RETRY)

    async def _remapEach(self) -> None:
        """
        RFC 6886 s3.7: renew every mapping one request at a time, each
        suggesting the external port it held before.  A mapping waiting for
        its backoff is retried only if no re-mapping of this announcement
        burst retried it yet.
        """
        for keeper in list(self._keepers()):
            if keeper not in self._keepers():
                continue
            if keeper.phase is KeeperPhase.BACKING_OFF:
                if keeper.retriedInBurst == self._burst:
                    continue
                keeper.retriedInBurst = self._burst
            await keeper.request(Why.REMAP)

    def _remapped(self, coalesced: int) -> None:
        log.info(
            "re-mapping done{more}: {states}",
            more=f" ({coalesced} more {_events(coalesced)} meanwhile)"
            if coalesced
            else "",
            states=self._describe(),
        )

    def _answersAgain(self) -> None:
        """
        The gateway answers again after a silence: retry at once every
        mapping waiting for its backoff, rather than at its end.
        """
        for keeper in list(self._keepers()):
            keeper.retryNow()
