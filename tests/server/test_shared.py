"""
Tests for L{twisted_natpmp.server._shared}: one table for NAT-PMP and PCP
(RFC 6887 appendix A), its owners, and IPv6 pinholes, through the gateway.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted_natpmp.pcp._wire import MapData, PreferFailureOption, ResultCode

from ._helpers import CLIENT, TCP, UDP, mapRequest, parseMap
from ._pcp import (
    CLIENT6,
    NONCE,
    OTHER_NONCE,
    ForwardsOnly,
    PCPGatewayMixin,
    mapPacket,
)


class SharedTableTests(PCPGatewayMixin):
    def natpmp(
        self, transport: str, internal: int, external: int, lifetime: int
    ) -> tuple[int, int, int, int, int, int]:
        reply = self.raw(
            mapRequest(TCP if transport == "tcp" else UDP, internal, external, lifetime)
        )
        assert reply is not None
        return parseMap(reply)

    def test_samePort(self) -> None:
        """
        A PCP MAP and a NAT-PMP request for the same (client, transport,
        internal port) are the same mapping: PCP renews NAT-PMP's, on the
        same external port, and takes it over (RFC 6887 appendix A).
        """
        # RFC 6887 appendix A
        _, result, _, _, external, _ = self.natpmp("tcp", 80, 5000, 600)
        self.assertEqual((result, external), (0, 5000))
        response = self.ask(mapPacket(80, 3600))
        assert isinstance(response.data, MapData)
        self.assertEqual(response.data.externalPort, 5000)
        self.assertEqual(len(self.gateway.table), 1)
        self.assertEqual(len(self.forwards()), 1)
        mapping = self.gateway.table.get(IPv4Address(CLIENT), TCP, 80)
        assert mapping is not None
        self.assertEqual(self.gateway.table.ownerOf(mapping), NONCE)

    def test_natpmpDeleteOfPCPMapping(self) -> None:
        """
        A NAT-PMP delete (no nonce) of a PCP-made mapping is refused with
        result 2 and the mapping stays: only its nonce may delete it (RFC
        6887 appendix A, s15).  miniupnpd answers success and keeps the
        rule; we do not tell the client a lie.
        """
        # RFC 6887 appendix A
        self.ask(mapPacket(80, 3600, external=5000))
        _, result, _, internal, external, lifetime = self.natpmp("tcp", 80, 0, 0)
        self.assertEqual((result, internal, external, lifetime), (2, 80, 0, 0))
        self.assertEqual(len(self.forwards()), 1)
        self.assertEqual(self.ask(mapPacket(80, 0)).resultCode, ResultCode.SUCCESS)
        self.assertEqual(self.forwards(), {})

    def test_natpmpRenewOfPCPMapping(self) -> None:
        """
        A NAT-PMP renewal of a PCP-made mapping is refused too (result 2),
        and its lifetime is unchanged (RFC 6887 appendix A, s11.3).
        """
        # RFC 6887 appendix A
        self.ask(mapPacket(80, 600))
        _, result, _, _, _, _ = self.natpmp("tcp", 80, 0, 7200)
        self.assertEqual(result, 2)
        mapping = self.gateway.table.get(IPv4Address(CLIENT), TCP, 80)
        assert mapping is not None
        self.assertEqual(mapping.lifetime, 600)

    def test_natpmpDeleteAll(self) -> None:
        """
        NAT-PMP's delete-all removes the client's NAT-PMP mappings of that
        transport, keeps its PCP ones and answers result 2 to say so (RFC
        6886 s3.4, RFC 6887 appendix A).
        """
        # RFC 6886 s3.4
        self.natpmp("tcp", 81, 6000, 600)
        self.ask(mapPacket(80, 3600, external=5000))
        _, result, _, _, _, _ = self.natpmp("tcp", 0, 0, 0)
        self.assertEqual(result, 2)
        self.assertEqual(list(self.forwards()), [(TCP, 5000)])

    def test_natpmpDeleteOwnMapping(self) -> None:
        """
        NAT-PMP deletes its own mappings as before (RFC 6886 s3.4).
        """
        # RFC 6886 s3.4
        self.natpmp("udp", 53, 5353, 600)
        self.assertEqual(self.natpmp("udp", 53, 0, 0)[1], 0)
        self.assertEqual(self.forwards(), {})

    def test_pcpDeletesNatpmpMapping(self) -> None:
        """
        A PCP delete of a NAT-PMP-made mapping (which has no nonce to
        check) deletes it (RFC 6887 appendix A).
        """
        # RFC 6887 appendix A
        self.natpmp("tcp", 80, 5000, 600)
        self.assertEqual(self.ask(mapPacket(80, 0, nonce=OTHER_NONCE)).resultCode, 0)
        self.assertEqual(self.forwards(), {})

    def test_ownerForgottenWithMapping(self) -> None:
        """
        Once a PCP mapping expires, NAT-PMP may map the port afresh (RFC
        6887 s15).
        """
        # RFC 6887 s15
        self.ask(mapPacket(80, 120))
        self.clock.advance(121)
        self.assertEqual(self.natpmp("tcp", 80, 0, 600)[1], 0)


class PinholeTests(PCPGatewayMixin):
    def test_pinhole(self) -> None:
        """
        A MAP from an internal IPv6 host opens a pinhole: external address
        and port are its own (RFC 6887 s11.3), in the same table, with the
        same backend.
        """
        # RFC 6887 s11.3
        response = self.ask(mapPacket(443, 600, client=CLIENT6, external=8443), CLIENT6)
        self.assertEqual(response.resultCode, ResultCode.SUCCESS)
        assert isinstance(response.data, MapData)
        self.assertEqual(
            (response.data.externalAddress, response.data.externalPort),
            (IPv6Address(CLIENT6), 443),
        )
        self.assertEqual(self.backend.pinholes, {(IPv6Address(CLIENT6), TCP, 443)})
        self.assertEqual(len(self.gateway.table), 1)
        self.assertEqual(self.forwards(), {})

    def test_pinholesApart(self) -> None:
        """
        Pinholes take no port of the external IPv4 address: an IPv4 host
        and two IPv6 hosts all get port 8443 (RFC 6887 s11.3).
        """
        # RFC 6887 s11.3
        other6 = "2001:db8:77::3"
        for host in (CLIENT6, other6, CLIENT):
            packet = mapPacket(8443, 600, client=host, external=8443)
            response = self.ask(packet, host)
            assert isinstance(response.data, MapData)
            self.assertEqual(response.data.externalPort, 8443, host)
        self.assertEqual(len(self.backend.pinholes), 2)

    def test_pinholeWithoutExternalAddress(self) -> None:
        """
        A pinhole needs no external IPv4 address (RFC 6887 s11.3).
        """
        # RFC 6887 s11.3
        self.gateway = self.makeGateway(externalAddress=None)
        response = self.ask(mapPacket(22, 600, client=CLIENT6), CLIENT6)
        self.assertEqual(response.resultCode, ResultCode.SUCCESS)

    def test_pinholeNonceAndDelete(self) -> None:
        """
        A pinhole belongs to its nonce; its delete closes it; it expires
        (RFC 6887 s11.3, s15).
        """
        # RFC 6887 s15
        self.ask(mapPacket(443, 600, client=CLIENT6), CLIENT6)
        refused = self.ask(
            mapPacket(443, 0, client=CLIENT6, nonce=OTHER_NONCE), CLIENT6
        )
        self.assertEqual(refused.resultCode, ResultCode.NOT_AUTHORIZED)
        self.assertEqual(
            self.ask(mapPacket(443, 0, client=CLIENT6), CLIENT6).resultCode, 0
        )
        self.assertEqual(self.backend.pinholes, set())
        self.ask(mapPacket(444, 120, client=CLIENT6), CLIENT6)
        self.clock.advance(121)
        self.gateway.table.expire()
        self.assertEqual(self.backend.pinholes, set())

    def test_pinholePreferFailure(self) -> None:
        """
        A pinhole's suggestion of another port or address cannot be
        honoured: CANNOT_PROVIDE_EXTERNAL with PREFER_FAILURE (RFC 6887
        s13.2).
        """
        # RFC 6887 s13.2
        response = self.ask(
            mapPacket(
                443,
                600,
                client=CLIENT6,
                externalAddress="2001:db8:77::9",
                options=(PreferFailureOption(),),
            ),
            CLIENT6,
        )
        self.assertEqual(response.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL)

    def test_backendWithoutPinholes(self) -> None:
        """
        A backend that cannot open pinholes: IPv6 MAP is NOT_AUTHORIZED.
        """

        self.gateway = self.makeGateway(backend=ForwardsOnly())
        response = self.ask(mapPacket(443, 600, client=CLIENT6), CLIENT6)
        self.assertEqual(response.resultCode, ResultCode.NOT_AUTHORIZED)

    def test_pinholeLimits(self) -> None:
        """
        Pinholes count against the per-client and the gateway's mapping
        limits, as forwards do; the refusal is NO_RESOURCES (RFC 6887
        s7.4).
        """
        # RFC 6887 s7.4
        self.gateway = self.makeGateway(maxMappingsPerClient=1)
        self.ask(mapPacket(443, 600, client=CLIENT6), CLIENT6)
        refused = self.ask(mapPacket(444, 600, client=CLIENT6), CLIENT6)
        self.assertEqual(refused.resultCode, ResultCode.NO_RESOURCES)
        self.gateway = self.makeGateway(maxMappings=1)
        self.ask(mapPacket(443, 600, client=CLIENT6), CLIENT6)
        other = "2001:db8:77::3"
        refused = self.ask(mapPacket(443, 600, client=other), other)
        self.assertEqual(refused.resultCode, ResultCode.NO_RESOURCES)
