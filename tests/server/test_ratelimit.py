"""
Tests for L{twisted_natpmp.server._ratelimit}: per-source token buckets on a
L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.server._ratelimit import RateLimiter, checkRate


class RateLimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)

    def allowed(self, limiter: RateLimiter, source: str, count: int) -> int:
        return sum(limiter.allow(source) for _ in range(count))

    def test_burstThenRate(self) -> None:
        """
        A source may send a burst at once, then requests at the rate.
        """
        limiter = RateLimiter(self.clock, rate=5, burst=10)
        self.assertEqual(self.allowed(limiter, "10.0.0.2", 30), 10)
        self.clock.advance(1)
        self.assertEqual(self.allowed(limiter, "10.0.0.2", 30), 5)
        self.clock.advance(0.2)
        self.assertEqual(self.allowed(limiter, "10.0.0.2", 30), 1)
        self.clock.advance(1000)
        self.assertEqual(self.allowed(limiter, "10.0.0.2", 30), 10)

    def test_perSource(self) -> None:
        """
        Each source has its own bucket: one source's flood does not stop
        another.
        """
        limiter = RateLimiter(self.clock, rate=1, burst=3)
        self.assertEqual(self.allowed(limiter, "10.0.0.2", 100), 3)
        self.assertEqual(self.allowed(limiter, "10.0.0.3", 2), 2)

    def test_boundedSources(self) -> None:
        """
        At most C{maxSources} sources have a bucket; a new one takes the
        place of the least recently heard source when that one's bucket is
        full again, and otherwise shares one bucket with the other
        newcomers.
        """
        limiter = RateLimiter(self.clock, rate=1, burst=2, maxSources=2)
        limiter.allow("a")
        limiter.allow("b")
        # Neither is full again yet: newcomers share a bucket of 2.
        self.assertEqual(
            self.allowed(limiter, "c", 1) + self.allowed(limiter, "d", 5), 2
        )
        self.assertEqual(len(limiter), 2)
        self.clock.advance(1)
        # "a" is full again and heard from least recently: "e" replaces it.
        self.assertEqual(self.allowed(limiter, "e", 5), 2)
        self.assertEqual(len(limiter), 2)
        self.assertEqual(self.allowed(limiter, "b", 5), 2)

    def test_badValues(self) -> None:
        """
        A rate that is not positive, or a burst or source limit below 1, is
        refused.
        """
        for rate, burst in [(0, 1), (-1, 1), (1, 0)]:
            self.assertRaises(ValueError, checkRate, rate, burst)
        self.assertRaises(ValueError, RateLimiter, self.clock, 1, 1, 0)
