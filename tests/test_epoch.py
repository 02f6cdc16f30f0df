"""
Tests for L{twisted_natpmp._epoch.EpochTracker}, the RFC 6886 s3.6 rule.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._epoch import EpochTracker


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
