"""
Tests for L{twisted_natpmp._exchange}: the protocol-neutral request engine's
queue, window, schedule and cancellation (its socket:
L{tests.test_exchangesocket}), on a L{Clock} and the in-memory UDP network,
with a toy protocol (L{tests._exchange}).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from twisted_natpmp import errors
from twisted_natpmp._exchange import checkTimeouts

from ._exchange import (
    GATEWAY,
    HOST,
    PORT,
    ExchangeTestMixin,
)


class SerialTests(ExchangeTestMixin):
    def test_oneAtATime(self) -> None:
        # RFC 6886 s3.1: one request in flight; the rest wait their turn,
        # in order.
        self.gateway.answering = False
        ds = [self.submit(k) for k in (b"1", b"2", b"3")]
        self.assertEqual(self.sent(), [b"Q1"])
        self.gateway.answer(b"1", (HOST, self.exchange.port.getHost().port))  # type: ignore[union-attr]
        self.network.flush()
        self.assertEqual(self.successResultOf(ds[0]), b"1")
        self.assertEqual(self.sent(), [b"Q1", b"Q2"])
        self.assertNoResult(ds[2])

    def test_answersInOrder(self) -> None:
        ds = [self.submit(k) for k in (b"1", b"2", b"3")]
        self.network.flush()
        self.assertEqual([self.successResultOf(d) for d in ds], [b"1", b"2", b"3"])
        self.assertEqual(self.sent(), [b"Q1", b"Q2", b"Q3"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_predicateAnswersEveryMatch(self) -> None:
        # A reply answers every request in flight that it matches.
        self.gateway.answering = False
        queued = self.submit(b"1")
        batch = self.exchange.submitBatch([(b"1", b"Q1", None)])
        self.gateway.answer(b"1", (HOST, self.exchange.port.getHost().port))  # type: ignore[union-attr]
        self.network.flush()
        self.assertEqual(self.successResultOf(queued), b"1")
        self.assertEqual(self.successResultOf(batch[0]), b"1")

    def test_hooks(self) -> None:
        # received sees every decoded reply before matching; sent every send.
        received: list[bytes] = []
        sent: list[bytes] = []
        exchange = self.makeExchange(received=received.append, sent=sent.append)
        exchange.listen(self.network.host("10.0.0.3"))
        self.gateway.answering = False
        d = self.submit(b"1", exchange, timeouts=(1, 1))
        self.clock.advance(1)
        self.gateway.answer(b"9", ("10.0.0.3", exchange.port.getHost().port))  # type: ignore[union-attr]
        self.network.flush()
        self.assertEqual((sent, received), ([b"1", b"1"], [b"9"]))
        self.assertNoResult(d)
        self.assertEqual(exchange.unanswered.total, 1)

    def test_unansweredHook(self) -> None:
        # A reply that answers nothing goes to the hook; handled, it is not
        # counted.
        seen: list[tuple[bytes, str]] = []

        def unanswered(response: bytes, source: str) -> bool:
            seen.append((response, source))
            return True

        exchange = self.makeExchange(unanswered=unanswered)
        exchange.listen(self.network.host("10.0.0.3"))
        self.gateway.answer(b"x", ("10.0.0.3", exchange.port.getHost().port))  # type: ignore[union-attr]
        self.network.flush()
        self.assertEqual(seen, [(b"x", f"{GATEWAY}:{PORT}")])
        self.assertEqual(exchange.unanswered.total, 0)


class WindowTests(ExchangeTestMixin):
    window = 2
    byKey = True

    def test_windowBound(self) -> None:
        # Up to the window in flight; each answer lets the next go.
        self.gateway.answering = False
        ds = [self.submit(k) for k in (b"1", b"2", b"3", b"4")]
        self.assertEqual(self.sent(), [b"Q1", b"Q2"])
        self.assertEqual(len(self.exchange.pending()), 4)
        port = self.exchange.port.getHost().port  # type: ignore[union-attr]
        self.gateway.answer(b"2", (HOST, port))
        self.network.flush()
        self.assertEqual(self.successResultOf(ds[1]), b"2")
        self.assertEqual(self.sent(), [b"Q1", b"Q2", b"Q3"])
        self.assertNoResult(ds[0])

    def test_matchedByKey(self) -> None:
        # Replies out of order answer the request with their key.
        self.gateway.answering = False
        one, two = self.submit(b"1"), self.submit(b"2")
        port = self.exchange.port.getHost().port  # type: ignore[union-attr]
        self.gateway.answer(b"2", (HOST, port))
        self.gateway.answer(b"1", (HOST, port))
        self.gateway.answer(b"3", (HOST, port))
        self.network.flush()
        self.assertEqual(
            (self.successResultOf(one), self.successResultOf(two)), (b"1", b"2")
        )
        self.assertEqual(self.exchange.unanswered.total, 1)

    def test_unkeyedNeverMatches(self) -> None:
        # A reply whose key is None answers no request submitted without one.
        exchange = self.makeExchange(keyOf=lambda response: None)
        exchange.listen(self.network.host("10.0.0.3"))
        d = exchange.submit(b"1", b"Q1")
        self.network.flush()
        self.assertNoResult(d)
        self.assertEqual(exchange.unanswered.total, 1)
        exchange.stop()
        self.failureResultOf(d, CancelledError)

    def test_needsOneMatcher(self) -> None:
        self.assertRaises(TypeError, self.makeExchange, matches=lambda q, r: True)
        self.assertRaises(ValueError, self.makeExchange, window=0)


class ScheduleTests(ExchangeTestMixin):
    def setUp(self) -> None:
        super().setUp()
        self.gateway.answering = False

    def sendTimes(self) -> list[float]:
        return [d.time for d in self.network.sentTo((GATEWAY, PORT))]

    def test_resendSchedule(self) -> None:
        # RFC 6886 s3.1: resent after each wait, given up after the last.
        d = self.submit(b"1", timeouts=(1, 2, 4))
        self.clock.pump([0.5] * 20)
        self.assertEqual(self.sendTimes(), [0.0, 1.0, 3.0])
        error = self.failureResultOf(d, errors.NoResponseError).value
        assert isinstance(error, errors.NoResponseError)
        self.assertEqual((error.attempts, error.seconds), (3, 7.0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_defaultSchedule(self) -> None:
        # RFC 6886 s3.1: 250 ms, doubling, nine sends.
        self.assertEqual(self.exchange.timeouts, (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))

    def test_retryObservers(self) -> None:
        heard: list[tuple[str, int, float]] = []

        def observer(what: str, attempt: int, elapsed: float) -> None:
            heard.append((what, attempt, elapsed))

        self.exchange.addRetryObserver(observer)
        d = self.submit(b"1", timeouts=(1, 2, 4, 1))
        self.clock.advance(1)
        self.clock.advance(2)
        self.exchange.removeRetryObserver(observer)
        self.clock.advance(4)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)
        self.assertEqual(heard, [("request 1", 2, 1.0), ("request 1", 3, 3.0)])

    def test_failingObserverLogged(self) -> None:
        def broken(what: str, attempt: int, elapsed: float) -> None:
            raise RuntimeError("broken")

        self.exchange.addRetryObserver(broken)
        self.submit(b"1", timeouts=(1, 1))
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(self.sent()), 2)

    def test_overallLimit(self) -> None:
        # The caller's own limit cuts the schedule short, and counts the
        # time spent queued.
        first = self.submit(b"1", timeouts=(1, 2, 4), limit=2.5)
        queued = self.submit(b"2", limit=2.0)
        self.clock.advance(2)
        error = self.failureResultOf(queued, errors.NoResponseError).value
        assert isinstance(error, errors.NoResponseError)
        self.assertEqual((error.attempts, error.seconds), (0, 2.0))
        self.clock.advance(0.5)
        error = self.failureResultOf(first, errors.NoResponseError).value
        assert isinstance(error, errors.NoResponseError)
        self.assertEqual((error.attempts, error.seconds), (2, 2.5))
        self.assertEqual(self.sent(), [b"Q1", b"Q1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_limitCancelledByAnswer(self) -> None:
        self.gateway.answering = True
        d = self.submit(b"1", limit=10)
        self.network.flush()
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_badSchedule(self) -> None:
        for bad in [(), (0,), (1, -1)]:
            self.failureResultOf(self.submit(b"1", timeouts=bad), ValueError)
            self.assertRaises(ValueError, checkTimeouts, bad)
        self.assertRaises(ValueError, self.exchange.submitBatch, [], (0,))
        self.assertEqual(self.sent(), [])


class CancellationTests(ExchangeTestMixin):
    def setUp(self) -> None:
        super().setUp()
        self.gateway.answering = False

    def test_cancelInFlight(self) -> None:
        # Cancelling stops the resends, and the next request goes.
        first, second = self.submit(b"1"), self.submit(b"2")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.sent(), [b"Q1", b"Q2"])
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.clock.advance(100)
        self.assertEqual(self.sent(), [b"Q1", b"Q2"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelQueued(self) -> None:
        first, second = self.submit(b"1"), self.submit(b"2")
        second.cancel()
        self.failureResultOf(second, CancelledError)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.sent(), [b"Q1"])

    def test_cancelDuringResends(self) -> None:
        d = self.submit(b"1", timeouts=(1, 1, 1))
        self.clock.advance(1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(10)
        self.assertEqual(self.sent(), [b"Q1", b"Q1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelPending(self) -> None:
        # Everything fails, nothing more is sent, and the exchange stays
        # usable.
        ds = [self.submit(k) for k in (b"1", b"2", b"3")]
        batch = self.exchange.submitBatch([(b"4", b"Q4", None)])
        self.exchange.cancelPending()
        for d in [*ds, *batch]:
            self.failureResultOf(d, CancelledError)
        self.assertEqual(self.sent(), [b"Q1", b"Q4"])
        self.network.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.gateway.answering = True
        d = self.submit(b"5")
        self.network.flush()
        self.assertEqual(self.successResultOf(d), b"5")

    def test_cancelledByAnotherAnswer(self) -> None:
        # A request cancelled by the callback of another that the same reply
        # answered is not fired twice.
        one = self.submit(b"1")
        two = self.exchange.submitBatch([(b"1", b"Q1", None)])[0]
        one.addCallback(lambda _: two.cancel())
        self.gateway.answer(b"1", (HOST, self.exchange.port.getHost().port))  # type: ignore[union-attr]
        self.network.flush()
        self.failureResultOf(two, CancelledError)
