"""
Fuzz tests of our gateway (L{twisted_natpmp.server}): every packet is
answered or dropped as RFC 6886 says, the table stays consistent, no
exception escapes, memory stays flat and the log says drops in aggregate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import mutations, validRequests
from twisted_natpmp._types import Transport
from twisted_natpmp.server import NATPMPGateway, NATPMPServerProtocol

from .._fuzzing import (
    EXTERNAL,
    FUZZ,
    HEADER,
    INTERNAL_NETWORK,
    MAP_REQUEST,
    MAP_RESPONSE,
    LogWatch,
    checkBounded,
    checkFlat,
    corpus,
    everyVersionAndOpcode,
    requestKind,
    underFire,
)
from ._fuzzing import SOURCES, Capture
from ._helpers import captureLogs


class GatewayTests(SynchronousTestCase):
    """
    L{NATPMPGateway} and L{NATPMPServerProtocol}: every packet is answered
    or dropped as RFC 6886 says, the table stays consistent, and no
    exception escapes.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.gateway = NATPMPGateway(self.clock, EXTERNAL, [INTERNAL_NETWORK])
        self.protocol = NATPMPServerProtocol(self.gateway)
        self.transport = Capture()
        self.protocol.makeConnection(self.transport)  # type: ignore[arg-type]
        # The global log, and the gateway's, sent to this watch alone.
        self.logs = LogWatch(self, captureLogs)
        self.sent = 0

    def send(self, packet: bytes, source: tuple[str, int]) -> bytes | None:
        """
        Deliver C{packet} to the protocol; return its reply, if any.  The
        clock moves one second per packet.
        """
        self.clock.advance(1)
        before = len(self.transport.written)
        self.protocol.datagramReceived(packet, source)
        written = self.transport.written[before:]
        self.assertLessEqual(len(written), 1)
        if not written:
            return None
        data, addr = written[0]
        # RFC 6886 s3.1: the reply goes back to where the request came from.
        self.assertEqual(addr, source)
        return data

    def check(
        self, packet: bytes, source: tuple[str, int], reply: bytes | None
    ) -> None:
        """
        Is C{reply} what RFC 6886 asks of a gateway for C{packet}?
        """
        hexed = packet.hex()
        kind = requestKind(packet)
        epoch = self.gateway.table.epoch()
        if kind == "drop":
            self.assertIsNone(reply, hexed)
            return
        assert reply is not None, f"no reply to {hexed} ({kind})"
        if kind == "version":
            # s3.5 with Errata 3618: opcode 128, result 1.
            self.assertEqual(reply, HEADER.pack(0, 128, 1, epoch), hexed)
        elif kind == "external":
            # s3.2.
            self.assertEqual(reply, HEADER.pack(0, 128, 0, epoch) + EXTERNAL.packed)
        elif kind == "opcode":
            # s3.5: the entire request, opcode | 128, result 5.
            opcode = packet[1] | 128
            self.assertEqual(reply[:8], HEADER.pack(0, opcode, 5, epoch), hexed)
            self.assertEqual(reply[8:], packet[8:], hexed)
        else:
            self.checkMap(packet, source, reply, epoch)

    def checkMap(
        self, packet: bytes, source: tuple[str, int], reply: bytes, epoch: int
    ) -> None:
        hexed = packet.hex()
        _, opcode, _, internal, _, lifetime = MAP_REQUEST.unpack_from(packet)
        self.assertEqual(len(reply), 16, hexed)
        version, rOpcode, result, rEpoch, rInternal, rExternal, rLifetime = (
            MAP_RESPONSE.unpack(reply)
        )
        # s3.3, s3.5: the opcode plus 128; the internal port always echoed.
        self.assertEqual((version, rOpcode, rEpoch), (0, opcode | 128, epoch), hexed)
        self.assertEqual(rInternal, internal, hexed)
        client = IPv4Address(source[0])
        transport = {1: Transport.UDP, 2: Transport.TCP}[opcode]
        table = self.gateway.table
        if result != 0 or lifetime == 0:
            # s3.4: a deletion answers external port 0 and lifetime 0; s3.5:
            # so does an error.
            self.assertEqual((rExternal, rLifetime), (0, 0), hexed)
        if result != 0:
            return
        if lifetime == 0:
            if internal == 0:
                # s3.4: all of this client's mappings of the transport.
                left = [m for m in table.mappingsOf(client) if m.transport == transport]
                self.assertEqual(left, [], hexed)
            else:
                self.assertIsNone(table.get(client, transport, internal), hexed)
            return
        # s3.3: internal port 0 with a lifetime is no mapping request.
        self.assertNotEqual(internal, 0, hexed)
        # s3.3: the gateway may grant less than asked, never more.
        self.assertGreaterEqual(rLifetime, 1)
        self.assertLessEqual(rLifetime, lifetime, hexed)
        mapping = table.get(client, transport, internal)
        assert mapping is not None, hexed
        self.assertEqual(
            (mapping.externalPort, mapping.lifetime), (rExternal, rLifetime), hexed
        )

    def checkTable(self) -> None:
        """
        Every mapping is a live one of an internal client, its external
        port in range and held by it alone, within the limits.
        """
        table = self.gateway.table
        seen: set[tuple[Transport, int]] = set()
        total = 0
        for source in SOURCES:
            client = IPv4Address(source)
            mappings = table.mappingsOf(client)
            self.assertLessEqual(len(mappings), table.maxMappingsPerClient)
            for m in mappings:
                self.assertEqual(m.client, client)
                self.assertTrue(table.minPort <= m.externalPort <= table.maxPort)
                self.assertLessEqual(m.lifetime, table.maxLifetime)
                self.assertNotIn((m.transport, m.externalPort), seen)
                seen.add((m.transport, m.externalPort))
                total += 1
        self.assertEqual(len(table), total)

    def fuzz(self, packets: Iterable[bytes]) -> None:
        for i, packet in enumerate(packets):
            source = (SOURCES[i % len(SOURCES)], 1024 + i % 60000)
            self.check(packet, source, self.send(packet, source))
        self.checkTable()
        self.assertEqual(self.logs.failures, [])

    def test_corpus(self) -> None:
        """
        Valid requests, every length 0-1100 and mutations: each answered or
        dropped as RFC 6886 s3.2-s3.5 say.
        """
        self.fuzz(corpus(3))

    def test_everyVersionAndOpcode(self) -> None:
        """
        Every version with every opcode.
        """
        self.fuzz(everyVersionAndOpcode(4, (12,)))

    @FUZZ
    @given(st.lists(st.binary(max_size=40), max_size=20))
    def test_arbitrary(self, packets: list[bytes]) -> None:
        """
        Arbitrary sequences of arbitrary packets.
        """
        self.fuzz(packets)

    def test_outsideSourcesDropped(self) -> None:
        """
        Nothing is answered to a source outside the internal networks, and
        nothing it sends changes the table (RFC 6886 s3.3).
        """
        rng = random.Random(5)
        for packet in validRequests() + list(mutations(5, validRequests(), 2000)):
            source = (str(IPv4Address(rng.getrandbits(32) | 0x01000000)), 5350)
            if source[0].startswith("10.77.0."):
                continue
            self.assertIsNone(self.send(packet, source), packet.hex())
        self.assertEqual(len(self.gateway.table), 0)
        self.assertEqual(self.logs.failures, [])


class BoundedTests(SynchronousTestCase):
    """
    Memory does not grow with the number of bad packets, and the log says
    them in aggregate: 20,000 bad packets at the gateway.
    """

    def setUp(self) -> None:
        # The gateway's log goes to this test's watch alone: an observer of
        # the global log that keeps events (another test's, the runner's)
        # would otherwise count as the gateway's memory.
        self.clock, self.logs = underFire(self, captureLogs)

    def gatewayUnderFire(
        self,
    ) -> tuple[NATPMPGateway, Capture, Callable[[bytes, int], None]]:
        """
        A gateway and a function that delivers a packet to it from a forged
        source, all over the internal network and outside it (RFC 6886
        s3.3), 5 ms after the last.
        """
        gateway = NATPMPGateway(self.clock, EXTERNAL, [INTERNAL_NETWORK])
        protocol = NATPMPServerProtocol(gateway)
        transport = Capture()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        rng = random.Random(7)

        def deliver(packet: bytes, i: int) -> None:
            self.clock.advance(0.005)
            if i % 2:
                host = f"10.77.0.{rng.randrange(2, 255)}"
            else:
                host = str(IPv4Address(rng.getrandbits(32)))
            protocol.datagramReceived(packet, (host, rng.randrange(1, 65536)))

        return gateway, transport, deliver

    def test_gateway(self) -> None:
        """
        The gateway's memory stays flat under bad packets from forged
        sources, and it answers none of them.
        """
        gateway, transport, deliver = self.gatewayUnderFire()
        checkFlat(self, deliver, lambda p: requestKind(p) == "drop")
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(transport.written, [])
        self.assertEqual(len(gateway.table), 0)

    def test_gatewayLog(self) -> None:
        """
        The gateway says its drops in aggregate, not one line each.
        """
        gateway, transport, deliver = self.gatewayUnderFire()
        checkBounded(
            self, self.logs, deliver, lambda p: requestKind(p) == "drop", memory=False
        )
