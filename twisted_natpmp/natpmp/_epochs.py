# -*- test-case-name: tests.natpmp.test_mapper -*-
"""
The NAT-PMP client's watch on its gateway's epochs: NAT-PMP replies and
announcements judged by RFC 6886 s3.6, PCP announcements (which a NAT-PMP
client hears too, from a gateway that speaks both) by RFC 6887 s8.5 against
each other only; observers told of every loss, the log in aggregate.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .._epoch import EpochTracker, PCPEpochTracker
from .._exchange import notifyObservers
from .._types import Announcement, AnnouncementKind

__all__ = ["STATE_LOSS_INTERVAL", "EpochWatch", "StateLossLog"]

#: Seconds between two summaries of the gateway's losses of state: the
#: first loss of a quiet period is warned of at once, further ones (a flood
#: of forged replies or announcements with lower epochs, or a gateway
#: restarting again and again) in one line per interval.
STATE_LOSS_INTERVAL = 60.0


class EpochWatch:
    """
    Judge every epoch heard from one gateway.

    @ivar natpmp: the RFC 6886 s3.6 judge of NAT-PMP epochs.
    @ivar pcp: the RFC 6887 s8.5 judge of PCP announcements' epochs.
    @ivar observers: called with no arguments at each loss of state.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        gateway: str,
        monotonic: Callable[[], float],
    ) -> None:
        self.natpmp = EpochTracker()
        self.pcp = PCPEpochTracker()
        self.observers: list[Callable[[], object]] = []
        self._monotonic = monotonic
        self._losses = StateLossLog(log, clock, gateway)

    def judge(self, epoch: int) -> bool:
        """
        Judge a NAT-PMP epoch, of a reply or an announcement (RFC 6886
        s3.2.1, s3.6).

        @return: whether the gateway lost its state.
        """
        lost = self.natpmp.update(epoch, self._monotonic())
        if lost:
            self._lost(epoch)
        return lost

    def judgeAnnouncement(self, announcement: Announcement) -> bool:
        """
        Judge an announcement by its protocol's rule.

        @return: whether the gateway lost its state.
        """
        if announcement.kind is AnnouncementKind.NATPMP:
            return self.judge(announcement.epoch)
        lost = self.pcp.update(announcement.epoch, self._monotonic())
        if lost:
            self._lost(announcement.epoch)
        return lost

    def stop(self) -> None:
        """
        Say what the log has not said yet, and stop its summaries.
        """
        self._losses.stop()

    def _lost(self, epoch: int) -> None:
        self._losses.lost(epoch)
        # RFC 6886 s3.6: every loss is told to the observers, whatever the
        # log says; the service coalesces its re-mappings.
        notifyObservers(self.observers, "state-loss")


class StateLossLog:
    """
    Log a gateway's losses of state: the first of a quiet period at once,
    further ones summarised every L{STATE_LOSS_INTERVAL} seconds, so that a
    flood of forged packets with lower epochs (RFC 6886 s3.6) costs a line a
    minute, not a line a packet.  (The lines are tested word for word, so
    this keeps its own texts rather than L{twisted_natpmp._droplog.DropLog}'s.)
    """

    def __init__(self, log: Logger, clock: IReactorTime, gateway: str) -> None:
        self._log = log
        self._clock = clock
        self._gateway = gateway
        #: Losses of state not yet told, the last one's epoch, and the
        #: summary that tells them (None: the next loss is told at once).
        self._untold = 0
        self._lastEpoch = 0
        self._summary: IDelayedCall | None = None

    def lost(self, epoch: int) -> None:
        """
        The gateway lost its state, by a packet with C{epoch}.
        """
        if self._summary is None:
            self._log.warn(
                "gateway {gateway} lost its mapping state (epoch {epoch});"
                " further losses are summarised every {interval:.0f} s",
                gateway=self._gateway,
                epoch=epoch,
                interval=STATE_LOSS_INTERVAL,
            )
            self._summary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._intervalOver
            )
            return
        # Not even a debug line each: a log that records debug (twistd's)
        # would grow by a line a packet.
        self._untold += 1
        self._lastEpoch = epoch

    def stop(self) -> None:
        """
        Say what is not yet said, and stop the summaries.
        """
        summary, self._summary = self._summary, None
        if summary is not None and summary.active():
            summary.cancel()
        self._summarise()

    def _intervalOver(self) -> None:
        self._summary = None
        if self._summarise():
            self._summary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._intervalOver
            )

    def _summarise(self) -> bool:
        """
        Say how many losses of state came since the last line, if any.

        @return: whether there were any.
        """
        count, self._untold = self._untold, 0
        if not count:
            return False
        self._log.warn(
            "gateway {gateway} lost its mapping state {count} more {times} in"
            " the last {interval:.0f} s (last epoch {epoch}): it restarts"
            " often, or someone forges its packets",
            gateway=self._gateway,
            count=count,
            times="time" if count == 1 else "times",
            interval=STATE_LOSS_INTERVAL,
            epoch=self._lastEpoch,
        )
        return True
