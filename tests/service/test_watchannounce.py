"""
Tests for L{twisted_natpmp.service.watch}: what the gateway watch does on
announcements and on the gateway's silence
(L{twisted_natpmp.service._silence}); on a L{Clock} against
L{FakePortMapper}.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import AnnouncementKind
from twisted_natpmp.errors import NoResponseError, NotAuthorizedError
from twisted_natpmp.interfaces import Probe
from twisted_natpmp.service.keeper import KeeperPhase
from twisted_natpmp.service.policy import (
    CONFIRM_SPACING,
)
from twisted_natpmp.service.watch import _events

from .test_watch import (
    EXTERNAL,
    UDP5000,
    WatchTestCase,
    announcement,
    texts,
)


class AnnouncementTests(WatchTestCase):
    def test_copyConfirms(self) -> None:
        """
        A copy of an announcement from the run that granted the mappings,
        late enough in it, costs nothing.
        """
        watch = self.mapped(UDP5000)
        self.mapper.requests.clear()
        watch.announced(announcement(1000))
        self.clock.advance(10)
        self.assertEqual(self.mapper.requests, [])

    def test_newRunConfirmed(self) -> None:
        """
        An announcement that proves nothing (another run by its epoch, but
        not lost by the s3.6 rule) confirms the mappings, at most once every
        CONFIRM_SPACING seconds.
        """
        watch = self.mapped(UDP5000)
        watch.announced(announcement(5000))
        self.clock.advance(2)
        self.answerAll()
        self.mapper.requests.clear()
        watch.announced(announcement(9000))
        # The last re-mapping started 0 s ago.
        self.clock.advance(CONFIRM_SPACING - 0.1)
        self.assertEqual(self.mapper.requests, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.mapper.pending("probe")), 1)

    def test_lossByAnnouncement(self) -> None:
        """
        RFC 6886 s3.2.1, s3.6: an announcement whose epoch shows a loss of
        state re-maps everything, through the mapper's judgement.
        """
        # RFC 6886 s3.2.1
        watch = self.mapped(UDP5000)
        watch.announced(announcement(1000))
        self.clock.advance(100)
        with capturedLogs() as events:
            watch.announced(announcement(3))
        self.assertIn(
            "the gateway lost its state (RFC 6886 s3.6): re-mapping everything in"
            " 2.00 s",
            texts(events),
        )

    def test_newAddressAnnounced(self) -> None:
        """
        A NAT-PMP announcement of a new external address re-maps.
        """
        watch = self.mapped(UDP5000)
        with capturedLogs() as events:
            watch.announced(announcement(1000, address=IPv4Address("192.0.2.9")))
        self.assertIn(
            "NAT-PMP announcement from 10.0.0.1: a new external address:"
            " re-mapping everything in 2.00 s",
            texts(events),
        )

    def test_pcpLossRateLimited(self) -> None:
        """
        A PCP announcement judged a loss (RFC 6887 s8.5) re-maps no sooner
        than CONFIRM_SPACING after the last re-mapping started.
        """
        # RFC 6887 s8.5
        watch = self.mapped(UDP5000)
        # The first PCP announcement is judged fine, and confirms.
        watch.announced(announcement(10, AnnouncementKind.PCP))
        self.clock.advance(2)
        self.answerAll()
        self.clock.advance(1)
        with capturedLogs() as events:
            watch.announced(announcement(0, AnnouncementKind.PCP))
        self.assertIn(
            "PCP announcement from 10.0.0.1: the gateway lost its state:"
            " re-mapping everything in 4.00 s",
            texts(events),
        )

    def test_firstRequestsAtOnce(self) -> None:
        """
        RFC 6886 s3.1: a mapping never granted, waiting to be retried, is
        asked at once on an announcement, once per burst.
        """
        # RFC 6886 s3.1
        watch = self.watch(UDP5000)
        self.mapper.pending("probe")[0].succeed(Probe(self.mapper.protocolName, 1))
        self.mapper.pending("addMapping")[0].fail(NotAuthorizedError(2))
        [keeper] = self.keepers
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        watch.announced(announcement(0))
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)
        self.mapper.pending("addMapping")[0].fail(NotAuthorizedError(2))
        watch.announced(announcement(0))
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)


class SilenceTests(WatchTestCase):
    def test_silenceWarnedAndAnswersAgain(self) -> None:
        """
        A gateway that does not answer for SILENCE_WARNING seconds is
        warned about; when it answers again, every mapping waiting to be
        retried is retried at once.
        """
        self.watch(UDP5000)
        probe, asked = self.mapper.pending()
        with capturedLogs() as events:
            self.clock.advance(3)
        self.assertEqual(
            texts(events, "warn"),
            ["no answer from gateway 10.0.0.1 yet; still trying"],
        )
        with capturedLogs() as events:
            asked.fail(NoResponseError(self.mapper.gateway, 4, 3.75))
        # Told already: the failure is said at info.
        self.assertEqual(texts(events, "warn"), [])
        [keeper] = self.keepers
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        probe.succeed(Probe(self.mapper.protocolName, 1000, EXTERNAL))
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)


class CoalescedWordsTests(SynchronousTestCase):
    """
    The re-mapping line counts what came meanwhile in good English.
    """

    def test_words(self) -> None:
        self.assertEqual(
            [_events(1), _events(2)],
            ["announcement or loss", "announcements or losses"],
        )
