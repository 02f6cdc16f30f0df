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

    def test_sevenEighthsBoundary(self) -> None:
        # RFC 6886 s3.6: expected = previous + 7/8 of elapsed; a value more
        # than 2 below it means the gateway lost its state.
        tracker = EpochTracker()
        tracker.update(100, 0.0)
        # After 80 s, expected is 170: 168 is exactly 2 below (fine), 167 is not.
        self.assertFalse(tracker.update(168, 80.0))
        tracker = EpochTracker()
        tracker.update(100, 0.0)
        self.assertTrue(tracker.update(167, 80.0))

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

    def test_reset(self) -> None:
        tracker = EpochTracker()
        tracker.update(5000, 0.0)
        tracker.reset()
        self.assertFalse(tracker.update(0, 1.0))
