"""
Tests for L{twisted_natpmp.pcp.responder}: PCP ANNOUNCE and MAP answered by
our gateway (RFC 6887), on a L{Clock} and in memory.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_natpmp.pcp._wire import (
    FilterOption,
    MapData,
    Opcode,
    PreferFailureOption,
    ResultCode,
    ThirdPartyOption,
    UnknownOption,
    decodeResponse,
)
from twisted_natpmp.pcp.responder import PCPResponder, errorLifetime

from ._helpers import CLIENT, EXTERNAL, OTHER, TCP, UDP
from ._pcp import (
    EXTERNAL_ADDRESS,
    NONCE,
    OTHER_NONCE,
    ForwardsOnly,
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

    def test_preferFailurePort(self) -> None:
        """
        With PREFER_FAILURE, a suggested port another host holds gets
        CANNOT_PROVIDE_EXTERNAL, short-lived, and nothing is mapped (RFC
        6887 s13.2).
        """
        # RFC 6887 s13.2
        self.ask(mapPacket(80, external=5000, client=OTHER), OTHER)
        response = self.ask(
            mapPacket(80, external=5000, options=(PreferFailureOption(),))
        )
        self.assertEqual(response.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL)
        self.assertEqual(response.lifetime, 30)
        self.assertEqual(len(self.forwards()), 1)

    def test_preferFailureGranted(self) -> None:
        """
        With PREFER_FAILURE, a free suggestion is granted and the option is
        echoed (RFC 6887 s13.2, s7.3).
        """
        # RFC 6887 s13.2
        options = (PreferFailureOption(),)
        response = self.ask(mapPacket(80, external=5000, options=options))
        assert isinstance(response.data, MapData)
        self.assertEqual(response.data.externalPort, 5000)
        self.assertEqual(response.options, options)

    def test_preferFailureAddress(self) -> None:
        """
        A suggested external address that is not ours is replaced by ours;
        with PREFER_FAILURE it gets CANNOT_PROVIDE_EXTERNAL (RFC 6887
        s11.3, s13.2).
        """
        # RFC 6887 s13.2
        response = self.ask(mapPacket(80, externalAddress="198.51.100.1"))
        assert isinstance(response.data, MapData)
        self.assertEqual(response.data.externalAddress, EXTERNAL_ADDRESS)
        refused = self.ask(
            mapPacket(
                81,
                external=81,
                externalAddress="198.51.100.1",
                options=(PreferFailureOption(),),
            )
        )
        self.assertEqual(refused.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL)
        granted = self.ask(
            mapPacket(
                82,
                external=1082,
                externalAddress=EXTERNAL,
                options=(PreferFailureOption(),),
            )
        )
        self.assertEqual(granted.resultCode, ResultCode.SUCCESS)

    def test_preferFailureWithoutSuggestion(self) -> None:
        """
        PREFER_FAILURE with neither port nor address suggested is
        MALFORMED_OPTION (RFC 6887 s13.2).
        """
        # RFC 6887 s13.2
        response = self.ask(mapPacket(80, options=(PreferFailureOption(),)))
        self.assertEqual(response.resultCode, ResultCode.MALFORMED_OPTION)

    def test_thirdPartyRefused(self) -> None:
        """
        THIRD_PARTY is UNSUPP_OPTION unless allowed (RFC 6887 s13.1).
        """
        # RFC 6887 s13.1
        option = ThirdPartyOption(IPv4Address(OTHER))
        response = self.ask(mapPacket(80, options=(option,)))
        self.assertEqual(response.resultCode, ResultCode.UNSUPP_OPTION)
        self.assertEqual(self.forwards(), {})

    def test_thirdPartyAllowed(self) -> None:
        """
        From an allowed network, THIRD_PARTY maps for the host it names and
        is echoed (RFC 6887 s13.1, s7.3); naming the sender is
        MALFORMED_REQUEST; naming a host outside the internal networks is
        NOT_AUTHORIZED.
        """
        # RFC 6887 s13.1
        self.gateway = self.makeGateway(allowThirdParty=[f"{CLIENT}/32"])
        option = ThirdPartyOption(IPv4Address(OTHER))
        response = self.ask(mapPacket(80, external=2000, options=(option,)))
        self.assertEqual(response.options, (option,))
        self.assertEqual(self.forwards(), {(TCP, 2000): (IPv4Address(OTHER), 80)})
        self.assertEqual(
            self.ask(
                mapPacket(81, options=(ThirdPartyOption(IPv4Address(CLIENT)),))
            ).resultCode,
            ResultCode.MALFORMED_REQUEST,
        )
        outside = ThirdPartyOption(IPv4Address("192.168.9.9"))
        self.assertEqual(
            self.ask(mapPacket(82, options=(outside,))).resultCode,
            ResultCode.NOT_AUTHORIZED,
        )
        # Not from an allowed network:
        self.assertEqual(
            self.ask(
                mapPacket(
                    83, client=OTHER, options=(ThirdPartyOption(IPv4Address(CLIENT)),)
                ),
                OTHER,
            ).resultCode,
            ResultCode.UNSUPP_OPTION,
        )

    def test_filterRefused(self) -> None:
        """
        With a backend that cannot enforce it, FILTER is refused with
        UNSUPP_OPTION, never accepted and ignored (RFC 6887 s13.3).
        """
        # RFC 6887 s13.3
        self.gateway = self.makeGateway(backend=ForwardsOnly())
        option = FilterOption(128, 0, IPv4Address("198.51.100.7"))
        response = self.ask(mapPacket(8080, options=(option,)))
        self.assertEqual(response.resultCode, ResultCode.UNSUPP_OPTION)
        self.assertEqual(len(self.gateway.table), 0)

    def test_filterEnforced(self) -> None:
        """
        With a backend that enforces it, FILTER limits the mapping to its
        remote peers, several FILTERs add up, and they are echoed (RFC 6887
        s13.3, s7.3).
        """
        # RFC 6887 s13.3
        options = (
            FilterOption(128, 0, IPv4Address("198.51.100.7")),
            FilterOption(120, 443, IPv4Address("203.0.113.0")),
        )
        response = self.ask(mapPacket(8080, options=options))
        self.assertEqual(response.options, options)
        client = IPv4Address(CLIENT)

        def permits(remote: str, port: int) -> bool:
            return self.backend.permits(client, TCP, 8080, IPv4Address(remote), port)

        self.assertTrue(permits("198.51.100.7", 1234))
        self.assertFalse(permits("198.51.100.8", 1234))
        self.assertTrue(permits("203.0.113.9", 443))
        self.assertFalse(permits("203.0.113.9", 80))

    def test_filterCleared(self) -> None:
        """
        A FILTER of prefix length 0 removes every filter; a renewal without
        FILTER keeps them; the mapping's deletion removes them (RFC 6887
        s13.3).
        """
        # RFC 6887 s13.3
        only = (FilterOption(128, 0, IPv4Address("198.51.100.7")),)
        self.ask(mapPacket(8080, options=only))
        self.ask(mapPacket(8080))
        self.assertEqual(len(self.backend.filters), 1)
        self.ask(mapPacket(8080, options=(FilterOption(0, 0, IPv4Address(0)),)))
        self.assertEqual(self.backend.filters, {})
        self.ask(mapPacket(8080, options=only))
        self.ask(mapPacket(8080, 0))
        self.assertEqual(self.backend.filters, {})

    def test_unknownOptions(self) -> None:
        """
        An unknown mandatory option is UNSUPP_OPTION; an unknown optional
        one is ignored and not echoed (RFC 6887 s7.3).
        """
        # RFC 6887 s7.3
        mandatory = self.ask(mapPacket(80, options=(UnknownOption(99, b"abcd"),)))
        self.assertEqual(mandatory.resultCode, ResultCode.UNSUPP_OPTION)
        reply = self.raw(mapPacket(80, options=(UnknownOption(200, b"abcd"),)))
        assert reply is not None
        self.assertEqual(len(reply), 60)
        self.assertEqual(decodeResponse(reply).resultCode, ResultCode.SUCCESS)

    def test_protocols(self) -> None:
        """
        Protocol 0 with a port is MALFORMED_REQUEST; protocol 0 (all) and
        SCTP are UNSUPP_PROTOCOL (not miniupnpd's NO_RESOURCES); TCP with
        internal port 0 is MALFORMED_REQUEST (RFC 6887 s11.1).
        """
        # RFC 6887 s11.1
        cases = [
            (mapPacket(80, protocol=0), ResultCode.MALFORMED_REQUEST),
            (mapPacket(0, protocol=0), ResultCode.UNSUPP_PROTOCOL),
            (mapPacket(80, protocol=132), ResultCode.UNSUPP_PROTOCOL),
            (mapPacket(0), ResultCode.MALFORMED_REQUEST),
        ]
        for packet, code in cases:
            self.assertEqual(self.ask(packet).resultCode, code, packet.hex())
        self.assertEqual(self.forwards(), {})

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
