"""
Tests for L{twisted_natpmp._epoch}: L{EpochTracker}, the RFC 6886 s3.6 rule,
and L{PCPEpochTracker}, the RFC 6887 s8.5 rule.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._epoch import EpochTracker, PCPEpochTracker


class EpochTrackerTests(SynchronousTestCase):
    def test_firstIsValid(self) -> None:
        # RFC 6886 s3.6: the first packet only sets the reference.
        tracker = EpochTracker()
        self.assertIsNone(tracker.lastEpoch)
        self.assertFalse(tracker.update(0, 1000.0))
        self.assertEqual(tracker.lastEpoch, 0)

    def test_steady(self) -> None:
        # RFC 6886 s3.6: an epoch that advances with local time is fine.
        tracker = EpochTracker()
        tracker.update(100, 0.0)
        self.assertFalse(tracker.update(110, 10.0))
        self.assertFalse(tracker.update(1110, 1010.0))

    def judge(self, previous: tuple[int, float], new: tuple[int, float]) -> bool:
        """
        A fresh tracker's judgement of C{new} after C{previous}, each an
        (epoch, local time) pair.
        """
        tracker = EpochTracker()
        tracker.update(*previous)
        return tracker.update(*new)

    def test_sevenEighthsBoundary(self) -> None:
        # RFC 6886 s3.6: expected = previous + 7/8 of elapsed; a value more
        # than 2 below it means the gateway lost its state.
        # After 80 s, expected is 170: 168 is exactly 2 below (fine), 167 is not.
        self.assertFalse(self.judge((100, 0.0), (168, 80.0)))
        self.assertTrue(self.judge((100, 0.0), (167, 80.0)))

    def test_backwards(self) -> None:
        # RFC 6886 s3.6: a rebooted gateway starts again near 0.
        tracker = EpochTracker()
        tracker.update(5000, 0.0)
        self.assertTrue(tracker.update(3, 1.0))

    def test_comparesWithPrevious(self) -> None:
        """
        The expected value grows from the previous epoch, not from the new one:
        libplum 0.5.3 added 7/8 of the elapsed time to the current value and so
        reported a reset whenever two packets were 3 s or more apart.
        """
        tracker = EpochTracker()
        tracker.update(1000, 0.0)
        self.assertFalse(tracker.update(1004, 4.0))
        self.assertFalse(tracker.update(1104, 104.0))

    def test_updatesAfterLoss(self) -> None:
        # RFC 6886 s3.6: the stored pair is updated whatever the outcome, so a
        # reset is reported once, not on every following packet.
        tracker = EpochTracker()
        tracker.update(5000, 0.0)
        self.assertTrue(tracker.update(0, 10.0))
        self.assertFalse(tracker.update(5, 15.0))

    def test_fasterIsFine(self) -> None:
        # RFC 6886 s3.6 only catches a clock that runs slow or goes back.
        tracker = EpochTracker()
        tracker.update(0, 0.0)
        self.assertFalse(tracker.update(1000, 10.0))

    def test_localClockBackwards(self) -> None:
        # RFC 6886 s3.6 assumes local time moves forward; should it go back,
        # no time has elapsed, which still reveals a gateway whose epoch fell
        # (negative elapsed time would lower the expectation and hide it).
        self.assertTrue(self.judge((1000, 500.0), (990, 400.0)))
        self.assertFalse(self.judge((1000, 500.0), (998, 400.0)))

    def test_reset(self) -> None:
        tracker = EpochTracker()
        tracker.update(5000, 0.0)
        tracker.reset()
        self.assertFalse(tracker.update(0, 1.0))


class PCPEpochTrackerTests(SynchronousTestCase):
    def judge(self, previous: tuple[int, float], new: tuple[int, float]) -> bool:
        """
        A fresh tracker's judgement of C{new} after C{previous}, each an
        (epoch, local time) pair.
        """
        tracker = PCPEpochTracker()
        self.assertFalse(tracker.update(*previous))
        return tracker.update(*new)

    def test_firstIsValid(self) -> None:
        # RFC 6887 s8.5: the first response from a server is always valid.
        tracker = PCPEpochTracker()
        self.assertIsNone(tracker.lastEpoch)
        self.assertFalse(tracker.update(5, 1000.0))
        self.assertEqual(tracker.lastEpoch, 5)

    def test_steady(self) -> None:
        # RFC 6887 s8.5: an epoch that advances with local time is valid.
        tracker = PCPEpochTracker()
        tracker.update(100, 0.0)
        self.assertFalse(tracker.update(110, 10.0))
        self.assertFalse(tracker.update(1110, 1010.0))

    def test_backwardsOneSecond(self) -> None:
        # RFC 6887 s8.5: invalid when the new epoch is more than 1 s below the
        # previous one; exactly 1 s below is tolerated (1 s resolution).
        self.assertFalse(self.judge((1000, 0.0), (999, 0.5)))
        self.assertTrue(self.judge((1000, 0.0), (998, 0.5)))

    def test_rebooted(self) -> None:
        # RFC 6887 s8.5: a restarted server counts again from near 0.
        self.assertTrue(self.judge((86400, 0.0), (3, 60.0)))

    def test_serverFaster(self) -> None:
        # RFC 6887 s8.5: invalid if client + 2 < server - server/16.  After
        # 10 local seconds: server 12 gives 12 < 11.25 (false, valid); server
        # 13 gives 12 < 12.1875 (true, invalid).  NAT-PMP's rule never fires
        # on a server that runs fast.
        self.assertFalse(self.judge((100, 0.0), (112, 10.0)))
        self.assertTrue(self.judge((100, 0.0), (113, 10.0)))

    def test_serverSlower(self) -> None:
        # RFC 6887 s8.5: invalid if server + 2 < client - client/16.  After
        # 32 local seconds the bound is 30: server 28 is valid, 27 is not.
        self.assertFalse(self.judge((100, 0.0), (128, 32.0)))
        self.assertTrue(self.judge((100, 0.0), (127, 32.0)))

    def test_fractionalClient(self) -> None:
        # RFC 6887 s8.5 in exact arithmetic: after 16.5 local seconds the
        # slower bound is 16.5 - 16.5/16 - 2 = 13.46875; 14 is valid, 13 not.
        self.assertFalse(self.judge((0, 0.0), (14, 16.5)))
        self.assertTrue(self.judge((0, 0.0), (13, 16.5)))

    def test_storedEveryTime(self) -> None:
        # RFC 6887 s8.5: the pair is stored after every response, so the
        # tolerance grows with the gap between packets, not with uptime (the
        # libpcpnatpmp mistake kept the first pair: from it, 1013 after 1010 s
        # would be fine; from the previous packet it is 13 s in 10 s).
        tracker = PCPEpochTracker()
        tracker.update(0, 0.0)
        self.assertFalse(tracker.update(1000, 1000.0))
        self.assertTrue(tracker.update(1013, 1010.0))

    def test_storedAfterInvalid(self) -> None:
        # RFC 6887 s8.5: stored even when invalid, so a loss is reported once
        # (and the check is armed from the first packet on: libplum 0.5.3
        # never stored the pair and so never judged).
        tracker = PCPEpochTracker()
        tracker.update(5000, 0.0)
        self.assertTrue(tracker.update(2, 10.0))
        self.assertEqual(tracker.lastEpoch, 2)
        self.assertFalse(tracker.update(7, 15.0))

    def test_localClockBackwards(self) -> None:
        # A local clock that goes back counts as no time elapsed: the server's
        # own small advance is then judged against 0 s.
        self.assertFalse(self.judge((1000, 500.0), (1002, 400.0)))
        self.assertTrue(self.judge((1000, 500.0), (1003, 400.0)))

    def test_reset(self) -> None:
        tracker = PCPEpochTracker()
        tracker.update(5000, 0.0)
        tracker.reset()
        self.assertIsNone(tracker.lastEpoch)
        self.assertFalse(tracker.update(0, 1.0))
