"""
Tests for what the NAT-PMP client accepts as a reply: result codes (RFC 6886
s3.5), liberal decoding, and the gateway's address and port only (s3.1).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.natpmp._wire import (
    ErrorResponse,
    ExternalAddressResponse,
    MapResponse,
    Protocol,
)
from twisted_natpmp.natpmp.client import (
    listenClient,
)
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST, ScriptedGateway
from twisted_natpmp.testing._udp import MemoryUDPNetwork

from ._client import ClientTestMixin


class ResultCodeTests(ClientTestMixin, SynchronousTestCase):
    def resultFor(self, code: int) -> Any:
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, code, 1, 80, 0, 0).encode()
        ]
        d = self.client.addMapping(Protocol.TCP, 80)
        self.network.flush()
        return self.failureResultOf(d, errors.GatewayError).value

    def test_codes(self) -> None:
        # RFC 6886 s3.5: each non-zero result fails the request with its own
        # exception carrying the code and its meaning.
        for code, cls, meaning in [
            (1, errors.UnsupportedVersionError, "unsupported version"),
            (2, errors.NotAuthorizedError, "not authorized/refused"),
            (3, errors.NetworkFailureError, "network failure"),
            (4, errors.OutOfResourcesError, "out of resources"),
            (5, errors.UnsupportedOpcodeError, "unsupported opcode"),
        ]:
            error = self.resultFor(code)
            self.assertIsInstance(error, cls)
            self.assertEqual((error.resultCode, error.meaning), (code, meaning))
            self.assertIn(f"result code {code} ({meaning})", str(error))

    def test_unknownCode(self) -> None:
        # RFC 6886 s3.5: unknown result codes are fatal for that request.
        error = self.resultFor(99)
        self.assertIsInstance(error, errors.UnknownResultError)
        self.assertEqual(error.resultCode, 99)

    def test_unsupportedVersionForms(self) -> None:
        # RFC 6886 s3.5 and Errata 3618: the reply may carry opcode 0, 128 or
        # 128 plus the request's opcode.
        for opcode in (0, 128, 130):
            self.gateway.reply = lambda r, op=opcode: [ErrorResponse(op, 1, 5).encode()]  # type: ignore[misc]
            d = self.client.addMapping(Protocol.TCP, 80)
            self.network.flush()
            self.failureResultOf(d, errors.UnsupportedVersionError)
            d2 = self.client.externalAddress()
            self.network.flush()
            if opcode in (0, 128):
                self.failureResultOf(d2, errors.UnsupportedVersionError)
            else:
                self.assertNoResult(d2)
                d2.cancel()
                self.failureResultOf(d2, CancelledError)


class LiberalAcceptanceTests(ClientTestMixin, SynchronousTestCase):
    def test_trailingBytes(self) -> None:
        self.gateway.reply = lambda r: [
            ExternalAddressResponse(0, 1, EXTERNAL).encode() + b"\x00" * 8
        ]
        d = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(d), EXTERNAL)

    def test_mismatchedPort(self) -> None:
        # RFC 6886 s3.3: the reply must echo the internal port and the opcode
        # plus 128; old routers garbled ports, so others are not answers.
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, 0, 1, 81, 81, 60).encode(),
            MapResponse(Protocol.UDP, 0, 1, 80, 80, 60).encode(),
            ExternalAddressResponse(0, 1, EXTERNAL).encode(),
        ]
        d = self.client.addMapping(Protocol.TCP, 80, timeouts=(1,))
        self.network.flush()
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_malformedDropped(self) -> None:
        # Malformed packets are dropped and logged; the request goes on.
        self.gateway.reply = lambda r: [
            b"\x00",
            b"\x01\x80" + b"\x00" * 10,
            b"\x00\x00",
        ]
        with capturedLogs() as events:
            d = self.client.externalAddress(timeouts=(1,))
            self.network.flush()
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        details = [e["detail"] for e in events if "detail" in e]
        self.assertEqual(
            [d.split(" (")[0] for d in details],
            [
                "packet of 1 bytes is too short",
                "unsupported version 1",
                "response of 2 bytes is too short",
            ],
        )
        self.assertEqual(self.client.drops.reasons, {"malformed": 3})

    def test_duplicateAndLateReplies(self) -> None:
        # Duplicate and late replies are harmless (RFC 6886 s3.5: idempotent).
        self.gateway.reply = lambda r: [self.gateway.answer(r)[0]] * 2
        d = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(d), EXTERNAL)
        late = ExternalAddressResponse(0, 100, EXTERNAL).encode()
        port = self.client.exchange.port
        assert port is not None
        source = port.getHost().port  # type: ignore[attr-defined]
        self.network.send((GATEWAY, 5351), (HOST, source), late)
        self.network.flush()
        mapped = self.client.addMapping(Protocol.TCP, 80)
        self.network.flush()
        self.assertEqual(self.successResultOf(mapped).externalPort, 80)


class SourceCheckTests(SynchronousTestCase):
    """
    RFC 6886 s3.1: only replies from the gateway's address and port 5351
    count; an explicit list admits other sources (CARP/VRRP pairs).
    """

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, extraSources=["10.0.0.5"]
        )
        self.port = self.client.exchange.port.getHost().port  # type: ignore[union-attr]

    def inject(self, source: tuple[str, int]) -> Deferred[IPv4Address]:
        self.gateway.reply = lambda r: []
        d = self.client.externalAddress(timeouts=(1,))
        self.network.flush()
        packet = ExternalAddressResponse(0, 1, EXTERNAL).encode()
        self.network.send(source, (HOST, self.port), packet)
        self.network.flush()
        return d

    def test_strangerIgnored(self) -> None:
        with capturedLogs() as events:
            d = self.inject(("10.0.0.9", 5351))
        self.assertNoResult(d)
        self.assertTrue(any(e.get("source") == "10.0.0.9:5351" for e in events))
        self.assertEqual(self.client.drops.reasons, {"not the gateway": 1})
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_wrongPortIgnored(self) -> None:
        d = self.inject((GATEWAY, 5350))
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_extraSourceAccepted(self) -> None:
        self.assertEqual(
            self.successResultOf(self.inject(("10.0.0.5", 5351))), EXTERNAL
        )

    def test_gatewayAccepted(self) -> None:
        self.assertEqual(self.successResultOf(self.inject((GATEWAY, 5351))), EXTERNAL)

    def test_strictByDefault(self) -> None:
        # Without extra sources the socket is connected to the gateway, so
        # nothing from elsewhere reaches it.
        client = listenClient(self.network.host("10.0.0.3"), GATEWAY)
        self.assertTrue(client.connectSocket)
        self.assertFalse(self.client.connectSocket)

    def test_refused(self) -> None:
        # RFC 6886 s3.1: ICMP port unreachable means no NAT-PMP there: stop.
        client = listenClient(self.network.host("10.0.0.3"), "10.0.0.200")
        d = client.externalAddress()
        self.network.flush()
        failure = self.failureResultOf(d, errors.NotSupportedError)
        self.assertEqual(failure.value.gateway, IPv4Address("10.0.0.200"))

    def test_unansweredAtInfo(self) -> None:
        # A well-formed reply from the gateway that answers nothing pending
        # (a late duplicate, normal under loss) is counted and said at info
        # level, never as a warning.
        reply = MapResponse(Protocol.UDP, 0, 5, 5000, 5000, 60).encode()
        with capturedLogs() as events:
            for _ in range(3):
                self.client.protocol.datagramReceived(reply, (GATEWAY, 5351))
            self.client.stop()
        self.assertEqual(self.client.exchange.unanswered.total, 3)
        levels = {e["log_level"] for e in events if "answers no pending" in str(e)}
        # Said at info (the first at once, then the summary), details at debug.
        self.assertEqual(levels, {LogLevel.info, LogLevel.debug})

    def test_floodLogsBounded(self) -> None:
        # 50,000 bad packets (malformed ones from the gateway, strays from
        # a thousand LAN hosts) are counted, and logged in aggregate: a
        # bounded number of short lines, not a hex dump each.
        strays = [(f"10.9.{n // 250}.{n % 250 + 1}", 5351) for n in range(1000)]
        received = self.client.protocol.datagramReceived
        with capturedLogs() as events:
            for _ in range(5):
                for n in range(10000):
                    if n % 2:
                        received(b"\x00\x81", (GATEWAY, 5351))
                    else:
                        received(b"\x00", strays[n % 1000])
                self.network.clock.advance(60)
            self.client.stop()
        self.assertEqual(self.client.drops.total, 50000)
        self.assertLess(len(events), 300)
        self.assertLess(sum(len(formatEvent(e)) for e in events), 40000)

    def test_nothingAfterStop(self) -> None:
        # A packet that reaches the port while it closes, after stop, is
        # ignored: no drop counted, no summary timer left behind.
        self.successResultOf(self.client.stop())
        self.client.protocol.datagramReceived(b"\x00", ("10.0.0.9", 5351))
        self.assertEqual(self.client.drops.total, 0)
        self.assertEqual(self.network.clock.getDelayedCalls(), [])

    def test_refusedDuringSend(self) -> None:
        # Twisted's UDP port calls connectionRefused from inside write when
        # the send itself meets ECONNREFUSED (an earlier ICMP port
        # unreachable, RFC 6886 s3.1): the requests fail, and none is left
        # with a retransmission timer.
        client = listenClient(self.network.host("10.0.0.3"), GATEWAY)
        assert client.protocol.transport is not None

        def refuse(packet: bytes, addr: object = None) -> None:
            client.protocol.connectionRefused()

        client.protocol.transport.write = refuse  # type: ignore[method-assign,assignment]
        queued = client.externalAddress()
        batch = client.deleteMappings([(Protocol.TCP, 80), (Protocol.UDP, 80)])
        self.failureResultOf(queued, errors.NotSupportedError)
        for failure in self.successResultOf(batch).values():
            assert failure is not None
            failure.trap(errors.NotSupportedError)
        self.assertEqual(self.network.clock.getDelayedCalls(), [])
