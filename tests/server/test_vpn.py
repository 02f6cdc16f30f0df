"""
Tests for L{twisted_natpmp.server.vpn}: our gateway in its VPN profile
answers internal port 0 with a lifetime as a VPN gateway (ProtonVPN) does,
and keeps the RFC 6886 s3.4 meaning of internal port 0 with lifetime 0.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Mapping
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.pcp._wire import MapData, ResultCode, decodeResponse
from twisted_natpmp.server.vpn import VPNProfile

from ._helpers import (
    CLIENT,
    GATEWAY,
    OTHER,
    TCP,
    UDP,
    GatewayTestsMixin,
    mapRequest,
    parseMap,
)
from ._pcp import mapPacket


class _Lowest(random.Random):
    """
    Picks the lowest port of the range, so that a test knows the start.
    """

    def randint(self, a: int, b: int) -> int:
        return a


class VPNProfileTests(GatewayTestsMixin, SynchronousTestCase):
    def startVPN(self, lease: int = 60, **kwargs: object) -> VPNProfile:
        service = self.startGateway(vpnLease=lease, **kwargs)
        assert service.gateway is not None
        profile = service.gateway.natpmp.forwarder
        assert profile is not None
        return profile

    def test_grantsRandomPortFixedLease(self) -> None:
        # Internal port 0 with a lifetime: a public port of the gateway's
        # choosing for 60 s whatever was asked; the reply's internal port is
        # 0, as ProtonVPN's is.
        self.startVPN(minPort=20000, maxPort=29999)
        opcode, result, _, internal, external, lifetime = parseMap(
            self.ask(mapRequest(UDP, 0, 1, 3600)) or b""
        )
        self.assertEqual((opcode, result, internal, lifetime), (129, 0, 0, 60))
        self.assertTrue(20000 <= external <= 29999)
        # The table forwards the public port to the same port on the client.
        mapping = self.table().get(IPv4Address(CLIENT), UDP, external)
        assert mapping is not None
        self.assertEqual(mapping.externalPort, external)

    def test_randomPorts(self) -> None:
        # Different clients get ports spread over the pool, not the lowest.
        self.startVPN()
        ports = set()
        for n in range(2, 12):
            reply = self.ask(mapRequest(UDP, 0, 0, 60), source=f"10.77.0.{n}")
            ports.add(parseMap(reply or b"")[4])
        self.assertEqual(len(ports), 10)
        self.assertGreater(max(ports) - min(ports), 1000)

    def test_renewalKeepsPort(self) -> None:
        self.startVPN()
        first = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")[4]
        self.clock.advance(30)
        again = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual((again[1], again[4], again[5]), (0, first, 60))
        self.assertEqual(len(self.table()), 1)

    def test_sameForTcp(self) -> None:
        # The same public port for UDP and TCP of one client.
        self.startVPN()
        udp = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")[4]
        tcp = parseMap(self.ask(mapRequest(TCP, 0, 0, 60)) or b"")[4]
        self.assertEqual(tcp, udp)

    def test_portsHeldByOthersAvoided(self) -> None:
        # RFC 6886 s3.3: a port another client holds for either transport
        # is not taken; UDP and TCP still share the one left.
        self.startVPN(minPort=30000, maxPort=30001)
        self.ask(mapRequest(TCP, 30000, 30000, 3600), source=OTHER)
        for _ in range(3):
            udp = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")[4]
            tcp = parseMap(self.ask(mapRequest(TCP, 0, 0, 60)) or b"")[4]
            self.assertEqual((udp, tcp), (30001, 30001))
            self.service.gateway.deleteAll(IPv4Address(CLIENT), UDP)  # type: ignore[union-attr]
            self.service.gateway.deleteAll(IPv4Address(CLIENT), TCP)  # type: ignore[union-attr]

    def test_expiresAfterLease(self) -> None:
        # RFC 6886 s3.3: not renewed, it is deleted when the lease ends.
        self.startVPN(lease=5)
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual(reply[5], 5)
        self.clock.advance(6)
        self.assertEqual(len(self.table()), 0)

    def test_deleteAllStillDeletes(self) -> None:
        # RFC 6886 s3.4: internal port 0 with lifetime 0 deletes all, also
        # in the profile; the reply carries internal port 0.
        self.startVPN()
        self.ask(mapRequest(UDP, 0, 0, 60))
        self.ask(mapRequest(UDP, 5000, 5000, 3600))
        self.assertEqual(len(self.table()), 2)
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 0)) or b"")
        self.assertEqual(reply, (129, 0, reply[2], 0, 0, 0))
        self.assertEqual(len(self.table()), 0)

    def test_ordinaryRequestsUnchanged(self) -> None:
        # RFC 6886 s3.3: a request for a real internal port is served as
        # without the profile: success, the internal port echoed, the port
        # suggested, the lifetime asked (not the lease).
        self.startVPN()
        opcode, result, _, internal, external, lifetime = parseMap(
            self.ask(mapRequest(TCP, 8080, 8080, 3600)) or b""
        )
        self.assertEqual(
            (opcode, result, internal, external, lifetime), (130, 0, 8080, 8080, 3600)
        )

    def test_ownMappingNotTakenOver(self) -> None:
        # The client's own normal mapping of internal port 30000 (external
        # 30001) is never chosen as its forwarded port, though external
        # 30000 is free: mapping it would renew that mapping and cut its
        # lifetime to the lease.
        profile = self.startVPN(minPort=30000, maxPort=30009)
        profile._random = _Lowest()
        own = parseMap(self.ask(mapRequest(UDP, 30000, 30001, 3600)) or b"")
        self.assertEqual(own[3:], (30000, 30001, 3600))
        forwarded = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual(forwarded[1:2] + forwarded[4:], (0, 30002, 60))
        mapping = self.table().get(IPv4Address(CLIENT), UDP, 30000)
        assert mapping is not None
        self.assertEqual(mapping.externalPort, 30001)
        self.assertEqual(mapping.lifetime, 3600)

    def test_companionIsOwnMapping(self) -> None:
        # The port of UDP's forwarded port is not taken for TCP when the
        # client maps TCP internal port of that number itself.
        profile = self.startVPN(minPort=30000, maxPort=30009)
        profile._random = _Lowest()
        udp = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")[4]
        self.assertEqual(udp, 30000)
        own = parseMap(self.ask(mapRequest(TCP, 30000, 30001, 3600)) or b"")
        self.assertEqual(own[4:], (30001, 3600))
        tcp = parseMap(self.ask(mapRequest(TCP, 0, 0, 60)) or b"")
        self.assertEqual(tcp[1:2] + tcp[4:], (0, 30002, 60))
        mapping = self.table().get(IPv4Address(CLIENT), TCP, 30000)
        assert mapping is not None
        self.assertEqual((mapping.externalPort, mapping.lifetime), (30001, 3600))

    def test_maxMappingsPerClient(self) -> None:
        # The forwarded ports count towards --max-mappings-per-client: with
        # a limit of 2, UDP and TCP are granted, then an ordinary request
        # is refused with result 4; a renewal still succeeds.
        self.startVPN(maxMappingsPerClient=2)
        udp = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        tcp = parseMap(self.ask(mapRequest(TCP, 0, 0, 60)) or b"")
        self.assertEqual((udp[1], tcp[1]), (0, 0))
        refused = parseMap(self.ask(mapRequest(UDP, 5000, 5000, 3600)) or b"")
        self.assertEqual(refused[:2], (129, 4))
        again = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual((again[1], again[4]), (0, udp[4]))

    def test_maxMappingsPerClientForwarded(self) -> None:
        # A client at its limit gets no forwarded port: result 4.
        self.startVPN(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 5000, 5000, 3600))
        refused = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual(refused[:2], (129, 4))

    def test_pcpUnchanged(self) -> None:
        # The profile is NAT-PMP's: a PCP MAP is served as without it, for
        # the port and lifetime asked; a PCP MAP of internal port 0 (all
        # ports, RFC 6887 s11.1, only for protocol 0) is not a forwarded
        # port either: NOT_AUTHORIZED, as without the profile, and nothing
        # is mapped.
        self.startVPN(pcp=True)
        reply = decodeResponse(self.ask(mapPacket(8080, 3600, external=8080)) or b"")
        assert isinstance(reply.data, MapData)
        self.assertEqual(
            (reply.resultCode, reply.lifetime, reply.data.internalPort),
            (ResultCode.SUCCESS, 3600, 8080),
        )
        self.assertEqual(reply.data.externalPort, 8080)
        zero = decodeResponse(self.ask(mapPacket(0, 60)) or b"")
        self.assertEqual(zero.resultCode, ResultCode.NOT_AUTHORIZED)
        self.assertEqual(len(self.table()), 1)

    def test_withoutProfileRefused(self) -> None:
        # RFC 6886 s3.4: without the profile, internal port 0 with a
        # lifetime is refused with result 2.
        self.startGateway()
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual(reply[:2], (129, 2))

    def test_noPortFree(self) -> None:
        # Out of ports: result 4.
        self.startVPN(minPort=40000, maxPort=40000)
        self.ask(mapRequest(UDP, 40000, 40000, 3600), source=OTHER)
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 60)) or b"")
        self.assertEqual(reply[:2], (129, 4))

    def test_badLease(self) -> None:
        self.assertRaises(ValueError, self.startGateway, vpnLease=0)
        self.assertRaises(ValueError, self.startGateway, vpnLease=100, maxLifetime=50)

    def test_seeded(self) -> None:
        # A seeded generator picks the same ports again.
        service = self.startGateway()
        assert service.gateway is not None
        ports = []
        for _ in range(2):
            profile = VPNProfile(service.gateway, 60, random.Random(7))
            ports.append(profile.forward(IPv4Address(OTHER), UDP).externalPort)
            service.gateway.deleteAll(IPv4Address(OTHER), UDP)
        self.assertEqual(ports[0], ports[1])

    def test_withOurClient(self) -> None:
        # Our client's forwarded-port mode against the profile.
        self.startVPN()
        client = listenClient(
            self.net.host(CLIENT), GATEWAY, monotonic=self.clock.seconds
        )
        self.addCleanup(client.stop)
        d: Deferred[Mapping] = client.forwardedPort(UDP, 120)
        self.net.flush()
        udp = self.successResultOf(d)
        d = client.forwardedPort(TCP, 120, udp.externalPort)
        self.net.flush()
        tcp = self.successResultOf(d)
        self.assertEqual((udp.lifetime, tcp.externalPort), (60, udp.externalPort))
        self.assertEqual(udp.internalPort, udp.externalPort)
