"""
Our gateway with PCP on (L{twisted_natpmp.server}, C{pcp=True}) in the
router namespace, against our PCP client (L{twisted_natpmp.pcp.client}),
our NAT-PMP client and raw PCP packets from the LAN hosts.

The gateway runs in the trial process, its sockets opened in the router
namespace (L{tools.netlab.NamespacedReactor}); every packet stays inside
namespaces this test created.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp._types import ProtocolName
from twisted_natpmp.errors import NotAuthorizedError
from twisted_natpmp.pcp._nonces import NonceStore
from twisted_natpmp.pcp.client import PCPClient, listenPCPClient
from twisted_natpmp.server import GatewayService, MemoryBackend

from ._lab import LAN_HOSTS, ROUTER_LAN, ROUTER_WAN, Inbox, buildLab, waitUntil
from .test_client import clientOn

TCP, UDP = Transport.TCP, Transport.UDP


def mapped(address: str) -> bytes:
    return bytes(10) + b"\xff\xff" + IPv4Address(address).packed


def mapRequest(
    client: str, internal: int, lifetime: int, nonce: bytes, external: int = 0
) -> bytes:
    return (
        struct.pack("!BBHI", 2, 1, 0, lifetime)
        + mapped(client)
        + nonce
        + struct.pack("!B3xHH", 6, internal, external)
        + mapped("0.0.0.0")
    )


def withoutEpoch(reply: bytes) -> bytes:
    return reply[:8] + b"EPCH" + reply[12:]


class PCPGatewayLabTests(TestCase):
    """
    A lab whose router runs our gateway with PCP on.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        self.backend = MemoryBackend()
        self.service = GatewayService(
            self.lab.reactorIn(self.lab.router),
            [f"{ROUTER_LAN}/24"],
            ROUTER_WAN,
            backend=self.backend,
            pcp=True,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def pcpClient(self, lan: int = 0, **kwargs: Any) -> PCPClient:
        nonces = NonceStore(Path(self.mktemp()) / "nonces.json")
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[lan]), ROUTER_LAN, nonces=nonces, **kwargs
        )
        self.addCleanup(client.stop)
        return client

    async def test_probe(self) -> None:
        """
        Our PCP client's ANNOUNCE probe finds a PCP server (RFC 6887 s14.1).
        """
        # RFC 6887 s14.1
        probe = await self.pcpClient().probe()
        self.assertIs(probe.protocolName, ProtocolName.PCP)

    async def test_mapRenewDelete(self) -> None:
        """
        Our PCP client maps, renews and deletes across the namespaces (RFC
        6887 s11, s15); the backend holds the forward meanwhile.
        """
        # RFC 6887 s11.3
        client = self.pcpClient()
        mapping = await client.addMapping(TCP, 7000, 7000, lifetime=30)
        self.assertEqual(
            (mapping.protocolName, mapping.externalPort, mapping.externalAddress),
            (ProtocolName.PCP, 7000, IPv4Address(ROUTER_WAN)),
        )
        self.assertEqual(mapping.lifetime, 120)  # RFC 6887 s15: clamped up
        again = await client.addMapping(TCP, 7000, 7000, lifetime=600)
        self.assertEqual((again.externalPort, again.lifetime), (7000, 600))
        self.assertEqual(
            self.backend.forwards, {(TCP, 7000): (IPv4Address(LAN_HOSTS[0]), 7000)}
        )
        await client.deleteMapping(TCP, 7000)
        self.assertEqual(self.backend.forwards, {})

    async def test_twoHostsTwoProtocols(self) -> None:
        """
        PCP from one LAN host and NAT-PMP from another share one table; a
        NAT-PMP delete of the PCP host's port from the other host touches
        nothing of it (RFC 6887 appendix A, RFC 6886 s3.3).
        """
        # RFC 6887 appendix A
        pcp = self.pcpClient(0)
        natpmp = clientOn(self, self.lab, 1)
        first = await pcp.addMapping(UDP, 7100, 17100, lifetime=600)
        second = await natpmp.addMapping(UDP, 7100, 17100, lifetime=600)
        self.assertEqual(first.externalPort, 17100)
        self.assertNotEqual(second.externalPort, 17100)
        self.assertEqual(len(self.service.gateway.table), 2)  # type: ignore[union-attr]
        await natpmp.deleteMapping(UDP, 7100)
        self.assertEqual(
            self.backend.forwards, {(UDP, 17100): (IPv4Address(LAN_HOSTS[0]), 7100)}
        )

    async def test_natpmpCannotDeletePCPMapping(self) -> None:
        """
        From the same host, a NAT-PMP delete of a PCP-made mapping is
        refused (result 2) and the mapping stays (RFC 6887 appendix A).
        """
        # RFC 6887 appendix A
        await self.pcpClient(0).addMapping(TCP, 7200, 17200, lifetime=600)
        natpmp = clientOn(self, self.lab, 0)
        try:
            await natpmp.deleteMapping(TCP, 7200)
        except NotAuthorizedError as e:
            self.assertEqual(e.resultCode, 2)
        else:
            self.fail("the NAT-PMP delete was not refused")
        self.assertEqual(list(self.backend.forwards), [(TCP, 17200)])

    async def test_rawPackets(self) -> None:
        """
        Raw edge-case packets from a LAN host are answered byte for byte as
        RFC 6887 says (epochs aside): a MAP; a higher version; too short;
        not a multiple of 4; a wrong client address; another nonce; a
        response (dropped).
        """
        # RFC 6887 s8.2
        inbox = Inbox()
        port = self.lab.listenUDP(self.lab.lans[0], 0, inbox)
        self.addCleanup(port.stopListening)
        host, nonce, other = LAN_HOSTS[0], bytes(range(12)), bytes(12)
        ok = mapRequest(host, 7300, 3600, nonce, 17300)
        cases = [
            (
                ok,
                ok[:1]
                + b"\x81\x00\x00"
                + ok[4:8]
                + b"EPCH"
                + bytes(12)
                + ok[24:44]
                + mapped(ROUTER_WAN),
            ),
            (
                b"\x03" + ok[1:],
                b"\x02\x81\x00\x01\x00\x00\x07\x08EPCH" + bytes(12) + ok[24:],
            ),
            (ok[:12], b"\x02\x81\x00\x03\x00\x00\x07\x08EPCH" + bytes(12)),
            (
                ok + b"\x00\x00",
                b"\x02\x81\x00\x03\x00\x00\x07\x08EPCH"
                + bytes(12)
                + ok[24:]
                + b"\x00\x00\x00\x00",
            ),
            (
                mapRequest(LAN_HOSTS[1], 7301, 3600, nonce),
                b"\x02\x81\x00\x0c\x00\x00\x07\x08EPCH"
                + bytes(12)
                + mapRequest(LAN_HOSTS[1], 7301, 3600, nonce)[24:],
            ),
            (
                mapRequest(host, 7300, 3600, other, 17300),
                b"\x02\x81\x00\x02\x00\x00\x07\x08EPCH"
                + bytes(12)
                + mapRequest(host, 7300, 3600, other, 17300)[24:],
            ),
        ]
        for request, expected in cases:
            before = len(inbox.received)
            port.write(request, (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
            await waitUntil(
                lambda n=before: len(inbox.received) > n,  # type: ignore[misc]
                f"reply to {request.hex()}",
                5.0,
            )
            reply, source = inbox.received[-1]
            self.assertEqual(source, (ROUTER_LAN, 5351))
            self.assertEqual(withoutEpoch(reply).hex(), expected.hex(), request.hex())
        response = bytearray(ok)
        response[1] |= 0x80
        port.write(bytes(response), (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
        port.write(b"\x02\x00" + ok[2:24], (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
        await waitUntil(lambda: len(inbox.received) > len(cases), "ANNOUNCE reply", 5.0)
        self.assertEqual(len(inbox.received[-1][0]), 24)
        self.assertEqual(len(inbox.received), len(cases) + 1)


#: The IPv6 addresses this module adds to the lab (it has none of its own):
#: the LAN on the router's bridge and on the first LAN host.
ROUTER_LAN6 = "2001:db8:77::1"
LAN_HOST6 = "2001:db8:77::2"


class PCPGatewayIPv6LabTests(TestCase):
    """
    Our gateway serving PCP on an internal IPv6 address of the router, and
    our PCP client on a LAN host's global IPv6 address.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = lab = buildLab(self)
        lab.check(
            lab.router,
            ["ip", "-6", "address", "add", f"{ROUTER_LAN6}/64", "dev", "br0", "nodad"],
        )
        lab.check(
            lab.lans[0],
            ["ip", "-6", "address", "add", f"{LAN_HOST6}/64", "dev", "eth0", "nodad"],
        )
        self.backend = MemoryBackend()
        self.service = GatewayService(
            lab.reactorIn(lab.router),
            [f"{ROUTER_LAN}/24", f"{ROUTER_LAN6}/64"],
            ROUTER_WAN,
            backend=self.backend,
            pcp=True,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    async def test_pinhole(self) -> None:
        """
        A MAP from the LAN host's global IPv6 address opens a pinhole: the
        external address and port are its own (RFC 6887 s11.3); the delete
        closes it.
        """
        # RFC 6887 s11.3
        nonces = NonceStore(Path(self.mktemp()) / "nonces.json")
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]), ROUTER_LAN6, nonces=nonces
        )
        self.addCleanup(client.stop)
        mapping = await client.addMapping(TCP, 8080, lifetime=600)
        self.assertEqual(
            (str(mapping.externalAddress), mapping.externalPort),
            (LAN_HOST6, 8080),
        )
        self.assertEqual(
            {(str(a), t, p) for a, t, p in self.backend.pinholes},
            {(LAN_HOST6, TCP, 8080)},
        )
        await client.deleteMapping(TCP, 8080)
        self.assertEqual(self.backend.pinholes, set())


class TwistdPCPGatewayLabTests(TestCase):
    """
    C{twistd natpmp-gateway} (PCP on by default) in the router namespace,
    on its LAN addresses IPv4 and IPv6, on real sockets that check each
    request's arriving interface.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = lab = buildLab(self)
        lab.check(
            lab.router,
            ["ip", "-6", "address", "add", f"{ROUTER_LAN6}/64", "dev", "br0", "nodad"],
        )
        lab.check(
            lab.lans[0],
            ["ip", "-6", "address", "add", f"{LAN_HOST6}/64", "dev", "eth0", "nodad"],
        )
        self.gateway = lab.spawn(
            lab.router,
            lab.twistd(
                "natpmp-gateway",
                f"--listen={ROUTER_LAN}/24",
                f"--listen={ROUTER_LAN6}/64",
                f"--external-address={ROUTER_WAN}",
            ),
            "natpmp-gateway",
        )
        await lab.waitListening(self.gateway, 5351)

    def client(self, gateway: str) -> PCPClient:
        nonces = NonceStore(Path(self.mktemp()) / "nonces.json")
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]), gateway, nonces=nonces
        )
        self.addCleanup(client.stop)
        return client

    async def test_ipv4AndIPv6(self) -> None:
        """
        Our PCP client maps over IPv4 (a forward from the external address)
        and over IPv6 (a pinhole, RFC 6887 s11.3) from the same LAN host.
        """
        # RFC 6887 s11.3
        four = await self.client(ROUTER_LAN).addMapping(TCP, 7400, 17400, 600)
        self.assertEqual(
            (four.externalAddress, four.externalPort),
            (IPv4Address(ROUTER_WAN), 17400),
        )
        six = await self.client(ROUTER_LAN6).addMapping(TCP, 7400, lifetime=600)
        self.assertEqual(
            (str(six.externalAddress), six.externalPort), (LAN_HOST6, 7400)
        )
        self.assertFalse(self.gateway.ended, self.gateway.output())
