"""
Tests for PCP over IPv6 through L{twisted_natpmp.server.GatewayService}:
the gateway listens on an internal IPv6 address, opens pinholes, and
announces to [ff02::1]:5350 (RFC 6887 s11.3, s14.1), in memory.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import SERVER_PORT
from twisted_natpmp.pcp._wire import MapData, decodeResponse
from twisted_natpmp.server import GatewayService

from ._helpers import GATEWAY, TCP, GatewayTestsMixin
from ._pcp import CLIENT6, announcePacket, mapPacket

GATEWAY6 = "2001:db8:77::1"


class IPv6ServiceTests(GatewayTestsMixin, SynchronousTestCase):
    def start6(self) -> GatewayService:
        return self.startGateway(listen=[f"{GATEWAY}/24", f"{GATEWAY6}/64"], pcp=True)

    def test_pinholeOverIPv6(self) -> None:
        """
        A MAP sent to the gateway's IPv6 address from an internal IPv6 host
        opens a pinhole to that host (RFC 6887 s11.3).
        """
        # RFC 6887 s11.3
        self.start6()
        reply = self.ask(mapPacket(8080, 600, client=CLIENT6), CLIENT6, GATEWAY6)
        assert reply is not None
        response = decodeResponse(reply)
        assert isinstance(response.data, MapData)
        self.assertEqual(
            (
                response.resultCode,
                response.data.externalAddress,
                response.data.externalPort,
            ),
            (0, IPv6Address(CLIENT6), 8080),
        )
        self.assertEqual(self.backend.pinholes, {(IPv6Address(CLIENT6), TCP, 8080)})

    def test_natpmpOverIPv6Dropped(self) -> None:
        """
        NAT-PMP sent over IPv6 is dropped (RFC 6886 is IPv4's).
        """
        # RFC 6886 s1
        self.start6()
        self.assertIsNone(self.ask(b"\x00\x00", CLIENT6, GATEWAY6))

    def test_announceOnIPv6(self) -> None:
        """
        On an IPv6 interface the unsolicited ANNOUNCE goes to [ff02::1]:5350
        from the gateway's IPv6 address (RFC 6887 s14.1); NAT-PMP's
        announcements stay on IPv4.
        """
        # RFC 6887 s14.1
        self.start6()
        self.clock.advance(1000)
        sent = self.net.sentTo(("ff02::1", 5350))
        self.assertEqual(len(sent), 10)
        self.assertEqual({d.source for d in sent}, {(GATEWAY6, SERVER_PORT)})
        self.assertEqual({d.data[:2] for d in sent}, {b"\x02\x80"})

    def test_ipv6NeedsPCP(self) -> None:
        """
        Without PCP an IPv6 internal address is refused at once: NAT-PMP
        cannot serve it (RFC 6886 s1).
        """
        # RFC 6886 s1
        self.assertRaises(
            ValueError,
            GatewayService,
            self.net.host(GATEWAY),
            [f"{GATEWAY6}/64"],
            "192.0.3.77",
        )

    def test_announceAnswered(self) -> None:
        """
        ANNOUNCE over IPv6 is answered (RFC 6887 s14.1).
        """
        # RFC 6887 s14.1
        self.start6()
        reply = self.ask(announcePacket(CLIENT6), CLIENT6, GATEWAY6)
        assert reply is not None
        self.assertEqual(decodeResponse(reply).resultCode, 0)
