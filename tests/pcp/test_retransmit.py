"""
Tests for L{twisted_natpmp.pcp._retransmit}: the s8.1.1 schedule, the
s11.2.1 renewal points and the waits after errors.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.pcp._retransmit import (
    CALL_LIMIT,
    LONG_ERROR_BACKOFF,
    MRT,
    SHORT_ERROR_RETRY,
    errorRetryDelay,
    renewalPoint,
    retransmissionSchedule,
)
from twisted_natpmp.pcp._wire import errorForResult


class ScheduleTests(SynchronousTestCase):
    def test_doubling(self) -> None:
        # RFC 6887 s8.1.1: IRT 3 s, doubling; with RAND 0 (random 0.5) the
        # waits are exact, and the last ends past the per-call limit.
        self.assertEqual(
            retransmissionSchedule(lambda: 0.5), (3.0, 6.0, 12.0, 24.0, 48.0, 96.0)
        )
        self.assertGreaterEqual(sum(retransmissionSchedule(lambda: 0.5)), CALL_LIMIT)

    def test_capped(self) -> None:
        # RFC 6887 s8.1.1: once RT passes MRT, RT = (1 + RAND) * MRT.
        waits = retransmissionSchedule(lambda: 0.5, limit=10000)
        self.assertEqual(waits[:10], (3, 6, 12, 24, 48, 96, 192, 384, 768, 1024))
        self.assertEqual(set(waits[9:]), {MRT})

    @given(st.lists(st.floats(0, 0.999999), min_size=1, max_size=50))
    def test_jitter(self, draws: list[float]) -> None:
        # RFC 6887 s8.1.1: each wait within +-10 % of the doubled previous
        # one (or of IRT, or of MRT), never above 1.1 * MRT.
        values = iter(draws * 100)
        waits = retransmissionSchedule(lambda: next(values), limit=5000)
        self.assertTrue(2.7 <= waits[0] <= 3.3)
        for previous, wait in zip(waits, waits[1:], strict=False):
            self.assertTrue(
                0.9 * 2 * previous <= wait <= 1.1 * 2 * previous
                or 0.9 * MRT <= wait <= 1.1 * MRT,
                (previous, wait),
            )


class RenewalTests(SynchronousTestCase):
    def test_first(self) -> None:
        # RFC 6887 s11.2.1: the first renewal in [1/2, 5/8].
        self.assertEqual(renewalPoint(800, 0, lambda: 0.0), 400)
        self.assertAlmostEqual(renewalPoint(800, 0, lambda: 0.999999), 500, 3)

    def test_retries(self) -> None:
        # RFC 6887 s11.2.1: unanswered, then [3/4, 3/4 + 1/16], [7/8,
        # 7/8 + 1/32], ...
        self.assertEqual(renewalPoint(1600, 1, lambda: 0.0), 1200)
        self.assertEqual(renewalPoint(1600, 1, lambda: 1.0), 1300)
        self.assertEqual(renewalPoint(1600, 2, lambda: 0.0), 1400)
        self.assertEqual(renewalPoint(1600, 2, lambda: 1.0), 1450)
        self.assertLess(renewalPoint(1600, 30, lambda: 1.0), 1600)
        self.assertRaises(ValueError, renewalPoint, 10, -1)


class ErrorDelayTests(SynchronousTestCase):
    def test_shortLived(self) -> None:
        # RFC 6887 s7.4: a short-lived error is retried after its lifetime.
        self.assertEqual(errorRetryDelay(errorForResult(8, 30)), 30)
        self.assertEqual(errorRetryDelay(errorForResult(7, 5)), 5)
        self.assertEqual(errorRetryDelay(errorForResult(10, 0)), SHORT_ERROR_RETRY)

    def test_longLived(self) -> None:
        # RFC 6887 s7.4; miniupnpd sends 0 for long-lived errors: "not
        # soon", never "now".
        self.assertEqual(errorRetryDelay(errorForResult(2, 0)), LONG_ERROR_BACKOFF)
        self.assertEqual(errorRetryDelay(errorForResult(12, 7200)), 7200)
        self.assertEqual(
            errorRetryDelay(errors.GatewayError(2, protocol="pcp")), LONG_ERROR_BACKOFF
        )
