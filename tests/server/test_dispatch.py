"""
Tests for L{twisted_natpmp.server.dispatch} and the gateway's datagram
protocol: whatever arrives, nothing escapes.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import IPAddress
from twisted_natpmp.natpmp._wire import (
    SERVER_PORT,
)
from twisted_natpmp.server import (
    NATPMPGateway,
    NATPMPServerProtocol,
    VersionDispatcher,
)
from twisted_natpmp.testing import MemoryUDPNetwork

from ._helpers import (
    CLIENT,
    EXTERNAL,
    GATEWAY,
    TCP,
    captureLogs,
    mapRequest,
)


class RobustnessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.gateway = NATPMPGateway(self.clock, EXTERNAL, ["10.77.0.0/24"])
        captureLogs(self, lambda event: None)  # type: ignore[arg-type]

    @settings(max_examples=500)
    @given(st.binary(max_size=40))
    def test_anyBytes(self, packet: bytes) -> None:
        """
        Whatever arrives, the gateway answers with a well-formed response
        (version 0, a response opcode, a result code) or drops it; it never
        raises.
        """
        reply = self.gateway.respond(packet, (CLIENT, 5350))
        if reply is not None:
            self.assertGreaterEqual(len(reply), 8)
            self.assertEqual(reply[0], 0)
            self.assertTrue(reply[1] & 128)
        self.assertEqual(len(self.gateway.respond(b"\x00\x00", (CLIENT, 1)) or b""), 12)

    def test_protocolSurvivesErrors(self) -> None:
        """
        If answering raises, the protocol logs it and goes on serving.
        """
        logged: list[dict[str, Any]] = []
        captureLogs(self, logged.append)  # type: ignore[arg-type]
        net = MemoryUDPNetwork(clock=self.clock)
        protocol = NATPMPServerProtocol(self.gateway)
        net.host(GATEWAY).listenUDP(SERVER_PORT, protocol)
        calls = []

        def broken(packet: bytes, source: Any, send: Any) -> None:
            calls.append(packet)
            if len(calls) == 1:
                raise RuntimeError("bug")
            send(b"reply")

        self.patch(self.gateway, "answer", broken)
        protocol.datagramReceived(b"\x00\x00", (CLIENT, 1))
        protocol.datagramReceived(b"\x00\x00", (CLIENT, 1))
        failures = [e["log_failure"] for e in logged if "log_failure" in e]
        self.assertEqual([f.type for f in failures], [RuntimeError])
        self.assertEqual([d.data for d in net.log], [b"reply"])

    def test_otherInterfaceDropped(self) -> None:
        """
        A request its port reports as arrived on another interface than the
        internal one is dropped unanswered and counted, even from an
        internal source address (RFC 6886 s3.3: the gateway MUST NOT accept
        mapping requests received on its external interface).
        """
        net = MemoryUDPNetwork(clock=self.clock)
        protocol = NATPMPServerProtocol(self.gateway)
        net.host(GATEWAY).listenUDP(SERVER_PORT, protocol)
        protocol.otherInterface(mapRequest(TCP, 22, 2222, 3600), (CLIENT, 1), 3)
        self.assertEqual(len(self.gateway.table), 0)
        self.assertEqual(net.log, [])
        self.assertEqual(
            dict(self.gateway.drops.reasons),
            {"not received on an internal interface": 1},
        )

    def test_nonIPv4Source(self) -> None:
        """
        A source that is not an IPv4 address is dropped.
        """
        self.assertIsNone(self.gateway.respond(b"\x00\x00", ("::1", 1)))


class Scripted:
    """
    A responder that answers every packet with C{answer} and keeps what it
    was asked.
    """

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.asked: list[tuple[bytes, IPAddress]] = []

    def respond(self, packet: bytes, client: IPAddress) -> bytes | None:
        self.asked.append((packet, client))
        return self.answer


class VersionDispatchTests(SynchronousTestCase):
    """
    L{VersionDispatcher}: the responder by version byte, as a gateway that
    also speaks PCP will use it (RFC 6886 s1.1).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.gateway = NATPMPGateway(self.clock, EXTERNAL, ["10.77.0.0/24"])
        captureLogs(self, lambda event: None)  # type: ignore[arg-type]
        self.source = (CLIENT, 5350)

    def test_natpmpAlone(self) -> None:
        """
        With NAT-PMP's responder alone, it answers every version: version
        0 as NAT-PMP, the rest with Unsupported Version (RFC 6886 s1.1,
        s3.5).
        """
        dispatcher = self.gateway.dispatcher
        for version in range(256):
            self.assertIs(dispatcher.responderFor(version), self.gateway.natpmp)
        self.assertEqual(len(self.gateway.respond(b"\x00\x00", self.source) or b""), 12)
        self.assertEqual(
            self.gateway.respond(b"\x02\x01" + bytes(58), self.source),
            bytes.fromhex("0080000100000000"),
        )

    def test_registered(self) -> None:
        """
        A responder registered for version 2 answers version 2, and is
        handed the client's address; version 0 stays NAT-PMP's, and so do
        versions nobody registered for, 1 among them (RFC 6886 s1.1).
        """
        pcp = Scripted(b"pcp")
        self.gateway.dispatcher.register(2, pcp)
        request = b"\x02\x01" + bytes(58)
        self.assertEqual(self.gateway.respond(request, self.source), b"pcp")
        self.assertEqual(pcp.asked, [(request, IPv4Address(CLIENT))])
        self.assertEqual(len(self.gateway.respond(b"\x00\x00", self.source) or b""), 12)
        for other in (b"\x01\x00", b"\x03\x01" + bytes(22)):
            reply = self.gateway.respond(other, self.source) or b""
            self.assertEqual(reply[:4], bytes.fromhex("00800001"), other.hex())
        self.assertEqual(len(pcp.asked), 1)

    def test_fallback(self) -> None:
        """
        The fallback answers the versions nobody registered for; version 0
        may still be another's.
        """
        natpmp, pcp = Scripted(b"natpmp"), Scripted(b"pcp")
        dispatcher = VersionDispatcher(pcp, self.gateway.drops)
        dispatcher.register(0, natpmp)
        dispatcher.register(1, natpmp)
        client = IPv4Address(CLIENT)
        answers = [
            dispatcher.respond(bytes((version, 1)), client) for version in (0, 1, 2, 3)
        ]
        self.assertEqual(answers, [b"natpmp", b"natpmp", b"pcp", b"pcp"])
        self.assertRaises(ValueError, dispatcher.register, 256, pcp)

    def test_responsesDropped(self) -> None:
        """
        A response (the top bit of the second byte set: NAT-PMP's opcode
        128 + x, PCP's R bit) is dropped unanswered whatever its version,
        and no responder sees it (RFC 6886 s3.3, s3.5).
        """
        pcp = Scripted(b"pcp")
        self.gateway.dispatcher.register(2, pcp)
        for version in (0, 2, 9):
            packet = bytes((version, 0x81)) + bytes(58)
            self.assertIsNone(self.gateway.respond(packet, self.source), packet.hex())
        self.assertEqual(pcp.asked, [])
        self.assertEqual(
            dict(self.gateway.drops.reasons), {"a response, not a request": 3}
        )

    def test_shortToVersionZero(self) -> None:
        """
        A packet too short to hold a version and an opcode goes to the
        version-0 responder, which drops it (RFC 6886 s3.5 gives it no
        reply).
        """
        natpmp = Scripted(None)
        dispatcher = VersionDispatcher(Scripted(b"pcp"), self.gateway.drops)
        dispatcher.register(0, natpmp)
        for packet in (b"", b"\x02"):
            self.assertIsNone(dispatcher.respond(packet, IPv4Address(CLIENT)))
        self.assertEqual([p for p, _ in natpmp.asked], [b"", b"\x02"])
