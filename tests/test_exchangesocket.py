"""
Tests for L{twisted_natpmp._exchange}'s socket: refusals and rebinding,
the sources answers are taken from, and stopping; with the toy protocol
of L{tests._exchange}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import CancelledError

from twisted_natpmp import errors

from ._exchange import (
    GATEWAY,
    HOST,
    PORT,
    ExchangeTestMixin,
    ShutdownReactor,
)


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
