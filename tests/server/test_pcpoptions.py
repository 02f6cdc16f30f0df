"""
Tests for L{twisted_natpmp.pcp.responder}: PCP's options on MAP (RFC 6887
s7.3, s13), on a L{Clock} and in memory.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_natpmp.pcp._wire import (
    FilterOption,
    MapData,
    PreferFailureOption,
    ResultCode,
    ThirdPartyOption,
    UnknownOption,
    decodeResponse,
)

from ._helpers import CLIENT, EXTERNAL, OTHER, TCP
from ._pcp import (
    EXTERNAL_ADDRESS,
    ForwardsOnly,
    PCPGatewayMixin,
    mapPacket,
)


class OptionTests(PCPGatewayMixin):
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
