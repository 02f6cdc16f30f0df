"""
Tests for L{twisted_natpmp.server.dispatch} and the gateway's datagram
protocol: whatever arrives, nothing escapes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    SERVER_PORT,
)
from twisted_natpmp.server import (
    NATPMPGateway,
    NATPMPServerProtocol,
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

        def broken(packet: bytes, source: Any) -> bytes | None:
            calls.append(packet)
            if len(calls) == 1:
                raise RuntimeError("bug")
            return b"reply"

        self.patch(self.gateway, "respond", broken)
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
