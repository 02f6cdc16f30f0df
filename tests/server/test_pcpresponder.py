"""
Tests for L{twisted_natpmp.pcp.responder}: PCP ANNOUNCE and MAP answered by
our gateway (RFC 6887), on a L{Clock} and in memory.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    ResultCode,
)
from twisted_natpmp.pcp.responder import PCPResponder, errorLifetime

from ._helpers import CLIENT, EXTERNAL, OTHER, TCP, UDP
from ._pcp import (
    EXTERNAL_ADDRESS,
    NONCE,
    OTHER_NONCE,
    PCPGatewayMixin,
    announcePacket,
    mapPacket,
)


class AnnounceTests(PCPGatewayMixin):
    def test_announce(self) -> None:
        """
        ANNOUNCE gets a 24-byte success with lifetime 0 and the epoch (RFC
        6887 s14.1).
        """
        # RFC 6887 s14.1
        self.clock.advance(7)
        reply = self.raw(announcePacket())
        self.assertEqual(reply, bytes.fromhex("028000000000000000000007") + bytes(12))

    def test_announceAddressMismatch(self) -> None:
        """
        An ANNOUNCE whose client-address field is not its source gets
        ADDRESS_MISMATCH (RFC 6887 s8.2).
        """
        # RFC 6887 s8.2
        response = self.ask(announcePacket(OTHER))
        self.assertEqual(response.resultCode, ResultCode.ADDRESS_MISMATCH)


class MapTests(PCPGatewayMixin):
    def test_workedExample(self) -> None:
        """
        The MAP of the notes' worked exchange (TCP 7000, 3600 s) gets the
        same 60 bytes as from miniupnpd, epoch aside (RFC 6887 s11.3).
        """
        # RFC 6887 s11.3
        request = mapPacket(7000, 3600, external=7000)
        reply = self.raw(request)
        expected = (
            "02810000"
            "00000e10"
            "00000000" + "00" * 12 + NONCE.hex() + "06000000"
            "1b58"
            "1b58"
            "00000000000000000000ffff"
            "c000034d"
        )
        self.assertEqual(reply, bytes.fromhex(expected))
        self.assertEqual(self.forwards(), {(TCP, 7000): (IPv4Address(CLIENT), 7000)})

    def test_addressMismatch(self) -> None:
        """
        A MAP whose client-address field is not its source gets
        ADDRESS_MISMATCH, long-lived, in a copy of the request (RFC 6887
        s8.2, s7.4).
        """
        # RFC 6887 s8.2
        request = mapPacket(80, clientField=OTHER)
        reply = self.raw(request)
        assert reply is not None
        self.assertEqual(reply[3], ResultCode.ADDRESS_MISMATCH)
        self.assertEqual(int.from_bytes(reply[4:8], "big"), 1800)
        self.assertEqual(reply[24:], request[24:])
        self.assertEqual(self.forwards(), {})

    def test_lifetimeClamped(self) -> None:
        """
        Lifetimes are clamped to [120 s, 24 h] by default (RFC 6887 s15).
        """
        # RFC 6887 s15
        self.assertEqual(self.ask(mapPacket(80, 30)).lifetime, 120)
        self.assertEqual(self.ask(mapPacket(81, 10**7)).lifetime, 86400)
        self.assertEqual(self.ask(mapPacket(82, 600)).lifetime, 600)

    def test_lifetimeConfigured(self) -> None:
        """
        The lifetime range is configurable (RFC 6887 s15).
        """
        # RFC 6887 s15
        self.gateway = self.makeGateway(minLifetime=300, maxLifetime=900)
        self.assertEqual(self.ask(mapPacket(80, 30)).lifetime, 300)
        self.assertEqual(self.ask(mapPacket(81, 3600)).lifetime, 900)

    def test_badLifetimeRange(self) -> None:
        """
        A range whose minimum exceeds its maximum is refused at once.
        """
        self.assertRaises(
            ValueError, PCPResponder, self.gateway, minLifetime=10, maxLifetime=5
        )

    def test_renewKeepsPort(self) -> None:
        """
        A renewal with the same nonce keeps the mapping and its port (RFC
        6887 s11.3).
        """
        # RFC 6887 s11.3
        first = self.ask(mapPacket(80, external=5000))
        again = self.ask(mapPacket(80, external=6000))
        assert isinstance(first.data, MapData) and isinstance(again.data, MapData)
        self.assertEqual(first.data.externalPort, 5000)
        self.assertEqual(again.data.externalPort, 5000)
        self.assertEqual(len(self.gateway.table), 1)

    def test_newNonceRefused(self) -> None:
        """
        A MAP for a mapping another nonce owns is NOT_AUTHORIZED and changes
        nothing (RFC 6887 s11.3; miniupnpd lets the new nonce take it).
        """
        # RFC 6887 s11.3
        self.ask(mapPacket(80, 600))
        response = self.ask(mapPacket(80, 3600, nonce=OTHER_NONCE))
        self.assertEqual(response.resultCode, ResultCode.NOT_AUTHORIZED)
        self.assertEqual(response.lifetime, errorLifetime(ResultCode.NOT_AUTHORIZED))
        mapping = self.gateway.table.get(IPv4Address(CLIENT), TCP, 80)
        assert mapping is not None
        owner = self.gateway.table.ownerOf(mapping)
        self.assertEqual((mapping.lifetime, owner), (600, NONCE))

    def test_deleteOtherNonce(self) -> None:
        """
        A delete with another nonce is NOT_AUTHORIZED; the mapping stays
        (RFC 6887 s15).
        """
        # RFC 6887 s15
        self.ask(mapPacket(80))
        response = self.ask(mapPacket(80, 0, nonce=OTHER_NONCE))
        self.assertEqual(response.resultCode, ResultCode.NOT_AUTHORIZED)
        self.assertEqual(len(self.forwards()), 1)

    def test_delete(self) -> None:
        """
        A delete with the mapping's nonce removes it and answers success
        with lifetime 0 (RFC 6887 s15).
        """
        # RFC 6887 s15
        self.ask(mapPacket(80))
        response = self.ask(mapPacket(80, 0))
        self.assertEqual((response.resultCode, response.lifetime), (0, 0))
        self.assertEqual(self.forwards(), {})

    def test_deleteMissing(self) -> None:
        """
        Deleting a mapping that does not exist succeeds (RFC 6887 s15; not
        miniupnpd's NO_RESOURCES), so a retransmitted delete is answered
        alike.
        """
        # RFC 6887 s15
        response = self.ask(mapPacket(80, 0))
        self.assertEqual((response.resultCode, response.lifetime), (0, 0))

    def test_deleteWithoutExternalAddress(self) -> None:
        """
        Deleting works without an external address; mapping answers
        NETWORK_FAILURE, short-lived (RFC 6887 s7.4).
        """
        # RFC 6887 s7.4
        self.gateway = self.makeGateway(externalAddress=None)
        response = self.ask(mapPacket(80))
        self.assertEqual(
            (response.resultCode, response.lifetime), (ResultCode.NETWORK_FAILURE, 30)
        )
        self.assertEqual(self.ask(mapPacket(80, 0)).resultCode, 0)

    def test_suggestedPortTaken(self) -> None:
        """
        A suggested port another host holds: another port is granted (RFC
        6887 s11.3).
        """
        # RFC 6887 s11.3
        self.ask(mapPacket(80, external=5000, client=OTHER), OTHER)
        response = self.ask(mapPacket(80, external=5000))
        assert isinstance(response.data, MapData)
        self.assertNotEqual(response.data.externalPort, 5000)

    def test_protocols(self) -> None:
        """
        Protocol 0 (all; its internal port ignored) and SCTP are
        UNSUPP_PROTOCOL (not miniupnpd's NO_RESOURCES); a mapping of all
        ports of TCP (internal port 0 with a lifetime) is refused by policy
        with NOT_AUTHORIZED (RFC 6887 s11.1).
        """
        # RFC 6887 s11.1
        cases = [
            (mapPacket(80, protocol=0), ResultCode.UNSUPP_PROTOCOL),
            (mapPacket(0, protocol=0), ResultCode.UNSUPP_PROTOCOL),
            (mapPacket(80, protocol=132), ResultCode.UNSUPP_PROTOCOL),
            (mapPacket(0), ResultCode.NOT_AUTHORIZED),
        ]
        for packet, code in cases:
            self.assertEqual(self.ask(packet).resultCode, code, packet.hex())
        self.assertEqual(self.forwards(), {})

    def test_deleteAllPorts(self) -> None:
        """
        A deletion of internal port 0 deletes every mapping of that
        transport the nonce owns, keeps another nonce's and the other
        transport's, and answers success (RFC 6887 s11.1).
        """
        # RFC 6887 s11.1
        for port in (5000, 5001):
            self.assertEqual(self.ask(mapPacket(port)).resultCode, ResultCode.SUCCESS)
        other = mapPacket(5002, nonce=b"\x07" * 12)
        self.assertEqual(self.ask(other).resultCode, ResultCode.SUCCESS)
        udp = mapPacket(5003, transport=UDP)
        self.assertEqual(self.ask(udp).resultCode, ResultCode.SUCCESS)
        reply = self.ask(mapPacket(0, 0))
        self.assertEqual((reply.resultCode, reply.lifetime), (ResultCode.SUCCESS, 0))
        self.assertEqual(
            sorted(
                (t.label, internal[1]) for (t, _), internal in self.forwards().items()
            ),
            [("tcp", 5002), ("udp", 5003)],
        )

    def test_udp(self) -> None:
        """
        UDP is mapped apart from TCP (RFC 6887 s11.1).
        """
        # RFC 6887 s11.1
        self.ask(mapPacket(53, transport=UDP, external=5353))
        self.assertEqual(self.forwards(), {(UDP, 5353): (IPv4Address(CLIENT), 53)})

    def test_clientLimit(self) -> None:
        """
        A client at its limit gets NO_RESOURCES, short-lived (RFC 6887
        s7.4).
        """
        # RFC 6887 s7.4
        self.gateway = self.makeGateway(maxMappingsPerClient=1)
        self.ask(mapPacket(80))
        response = self.ask(mapPacket(81))
        self.assertEqual((response.resultCode, response.lifetime), (8, 30))

    def test_rateLimit(self) -> None:
        """
        Beyond its rate a source's MAP requests are dropped and counted;
        ANNOUNCE is not limited.
        """
        self.gateway = self.makeGateway(requestRate=1.0, requestBurst=2)
        answered = [self.raw(mapPacket(80 + i)) for i in range(4)]
        self.assertEqual([a is not None for a in answered], [True, True, False, False])
        self.assertIsNotNone(self.raw(announcePacket()))
        self.assertEqual(self.gateway.drops.reasons["over the rate limit"], 2)

    def test_refusalsAggregated(self) -> None:
        """
        Many refused requests make one log line at once and a summary, not
        a line each.
        """
        for _ in range(50):
            self.raw(mapPacket(80, clientField=OTHER))
        self.assertEqual(self.gateway.refusals.total, 50)
        lines = [e for e in self.logged if "refused" in e.get("log_format", "")]
        self.assertLessEqual(len(lines), 2)

    def test_epoch(self) -> None:
        """
        Responses carry seconds since the table's epoch began (RFC 6887
        s8.5).
        """
        # RFC 6887 s8.5
        self.clock.advance(42)
        self.assertEqual(self.ask(mapPacket(80)).epoch, 42)
        self.assertEqual(Opcode.MAP, self.ask(mapPacket(80)).opcode)
        self.assertEqual(EXTERNAL, str(EXTERNAL_ADDRESS))
