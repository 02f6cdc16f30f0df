"""
Tests for L{twisted_natpmp._exchange}: the protocol-neutral request engine,
on a L{Clock} and the in-memory UDP network, with a toy protocol: a request
C{b"Q" + key} is answered by C{b"A" + key}.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp._exchange import Exchange, checkTimeouts
from twisted_natpmp.testing import HostReactor, MemoryUDPNetwork

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"
PORT = 5351


class Toy(DatagramProtocol):
    """
    A toy gateway: answers each request C{Q<key>} with C{A<key>} while
    C{answering}.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answering = True

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)
        if self.answering:
            assert self.transport is not None
            self.transport.write(b"A" + datagram[1:], addr)

    def answer(self, key: bytes, source: Any) -> None:
        assert self.transport is not None
        self.transport.write(b"A" + key, source)


def decode(datagram: bytes) -> bytes:
    if not datagram.startswith(b"A"):
        raise ValueError("not an answer")
    return datagram[1:]


class ShutdownReactor(HostReactor):
    """
    A host reactor with system event triggers, to play a reactor shutdown.
    """

    def __init__(self, network: MemoryUDPNetwork, address: str) -> None:
        super().__init__(network, address)
        self.triggers: dict[int, Callable[[], object]] = {}

    def addSystemEventTrigger(
        self, phase: str, event: str, f: Callable[[], object]
    ) -> int:
        self.triggers[id(f)] = f
        return id(f)

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.triggers[trigger]


class ExchangeTestMixin(SynchronousTestCase):
    window = 1
    byKey = False

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = Toy()
        self.gatewayPort = self.network.host(GATEWAY).listenUDP(PORT, self.gateway)
        self.exchange = self.makeExchange()
        self.exchange.listen(self.network.host(HOST))

    def makeExchange(self, **kwargs: Any) -> Exchange[bytes, bytes]:
        if self.byKey:
            kwargs.setdefault("keyOf", lambda response: response)
        else:
            kwargs.setdefault("matches", lambda request, response: request == response)
        kwargs.setdefault("window", self.window)
        return Exchange(
            self.clock,
            IPv4Address(GATEWAY),
            PORT,
            decode=decode,
            protocolName="TOY",
            describe=lambda request: f"request {request.decode()}",
            **kwargs,
        )

    def submit(
        self, key: bytes, exchange: Exchange[bytes, bytes] | None = None, **kw: Any
    ) -> Deferred[bytes]:
        exchange = exchange or self.exchange
        return exchange.submit(key, b"Q" + key, key=key if self.byKey else None, **kw)

    def sent(self) -> list[bytes]:
        return [d.data for d in self.network.sentTo((GATEWAY, PORT))]


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


class RefusalTests(ExchangeTestMixin):
    def test_refused(self) -> None:
        # ICMP port unreachable (RFC 6886 s3.1): the request in flight fails
        # with the protocol's NotSupportedError.
        self.gatewayPort.stopListening()
        d = self.submit(b"1")
        self.network.flush()
        error = self.failureResultOf(d, errors.NotSupportedError).value
        self.assertEqual(
            str(error), f"gateway {GATEWAY} does not speak TOY (ICMP port unreachable)"
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusedDuringBatchSend(self) -> None:
        # A refusal reported from inside a send fails the whole batch and
        # sends no more.
        transport = self.exchange.protocol.transport
        assert transport is not None
        writes: list[bytes] = []

        def write(packet: bytes, addr: Any = None) -> None:
            writes.append(packet)
            self.exchange.protocol.connectionRefused()

        transport.write = write  # type: ignore[method-assign]
        batch = self.exchange.submitBatch([(b"1", b"Q1", None), (b"2", b"Q2", None)])
        for d in batch:
            self.failureResultOf(d, errors.NotSupportedError)
        self.assertEqual(writes, [b"Q1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_portLostRebinds(self) -> None:
        # The epoll reactor closes a connected UDP port on ICMP port
        # unreachable: the pending requests fail as refused, and a fresh
        # port is bound for later requests.
        self.gateway.answering = False
        first, second = self.submit(b"1"), self.submit(b"2")
        old = self.exchange.port
        assert old is not None
        old.stopListening()
        self.failureResultOf(first, errors.NotSupportedError)
        self.failureResultOf(second, errors.NotSupportedError)
        self.assertIsNot(self.exchange.port, old)
        self.assertIsNotNone(self.exchange.port)
        self.gateway.answering = True
        d = self.submit(b"3")
        self.network.flush()
        self.assertEqual(self.successResultOf(d), b"3")
        self.assertEqual(self.sent(), [b"Q1", b"Q3"])

    def test_shutdownIsNoRefusal(self) -> None:
        # A port closed while the reactor shuts down is not rebound, and
        # fails nothing as refused.
        reactor = ShutdownReactor(self.network, "10.0.0.3")
        exchange = self.makeExchange()
        exchange.listen(reactor)
        self.gateway.answering = False
        d = self.submit(b"1", exchange)
        [trigger] = reactor.triggers.values()
        trigger()
        port = exchange.port
        assert port is not None
        port.stopListening()
        self.assertIs(exchange.port, port)
        self.assertNoResult(d)
        exchange.stop()
        self.failureResultOf(d, CancelledError)

    def test_stopRemovesTrigger(self) -> None:
        reactor = ShutdownReactor(self.network, "10.0.0.3")
        exchange = self.makeExchange()
        exchange.listen(reactor)
        self.assertEqual(len(reactor.triggers), 1)
        exchange.stop()
        self.assertEqual(reactor.triggers, {})


class SourceTests(ExchangeTestMixin):
    def test_strangerAndWrongPortDropped(self) -> None:
        # RFC 6886 s3.1: only the gateway's port answers.
        exchange = self.makeExchange(extraSources=[IPv4Address("10.0.0.9")])
        self.assertFalse(exchange.connectSocket)
        self.assertTrue(self.exchange.connectSocket)
        exchange.listen(self.network.host("10.0.0.3"))
        d = self.submit(b"1", exchange)
        self.network.flush()
        self.assertEqual(self.successResultOf(d), b"1")
        exchange.protocol.datagramReceived(b"A1", ("10.0.0.8", PORT))
        exchange.protocol.datagramReceived(b"A1", (GATEWAY, 5350))
        self.assertEqual(exchange.drops.reasons, {"not the gateway": 2})
        d = self.submit(b"2", exchange)
        exchange.protocol.datagramReceived(b"A2", ("10.0.0.9", PORT))
        self.assertEqual(self.successResultOf(d), b"2")
        exchange.stop()

    def test_malformedDropped(self) -> None:
        self.gateway.answering = False
        d = self.submit(b"1")
        self.exchange.protocol.datagramReceived(b"junk", (GATEWAY, PORT))
        self.assertEqual(self.exchange.drops.reasons, {"malformed": 1})
        self.assertNoResult(d)

    def test_sourceAddress(self) -> None:
        self.assertEqual(self.exchange.sourceAddress(), IPv4Address(HOST))
        unbound = self.makeExchange()
        self.assertIsNone(unbound.sourceAddress())
        self.assertIsNone(unbound.port)

    def test_ownPort(self) -> None:
        # A caller may bind the exchange's protocol itself.
        exchange = self.makeExchange()
        self.network.host("10.0.0.3").listenUDP(0, exchange.protocol)
        d = self.submit(b"1", exchange)
        self.network.flush()
        self.assertEqual(self.successResultOf(d), b"1")

    def test_notListening(self) -> None:
        d = self.submit(b"1", self.makeExchange())
        error = self.failureResultOf(d, errors.PortMappingError).value
        self.assertEqual(str(error), "the TOY client is not listening")


class StopTests(ExchangeTestMixin):
    def test_stop(self) -> None:
        # Everything pending is cancelled, the port closed, later requests
        # fail at once, and what still arrives is ignored.
        self.gateway.answering = False
        d = self.submit(b"1")
        port = self.exchange.port
        stopped = self.exchange.stop()
        self.successResultOf(stopped)
        self.assertTrue(self.exchange.stopped)
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(self.exchange.port)
        assert port is not None
        self.assertNotIn(port, self.network.ports.values())
        later = self.submit(b"2")
        error = self.failureResultOf(later, errors.PortMappingError).value
        self.assertEqual(str(error), "the TOY client is stopped")
        [late] = self.exchange.submitBatch([(b"3", b"Q3", None)])
        self.failureResultOf(late, errors.PortMappingError)
        self.exchange.protocol.datagramReceived(b"junk", (GATEWAY, PORT))
        self.assertEqual(self.exchange.drops.total, 0)
        self.assertEqual(self.sent(), [b"Q1"])
        self.network.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopUnbound(self) -> None:
        self.successResultOf(self.makeExchange().stop())
