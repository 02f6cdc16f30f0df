"""
PCP's FILTER option (RFC 6887 s13.3) on our gateway's nftables backend: a
MAP whose FILTER names one remote peer forwards only that peer's packets,
through real rules in the router namespace of a forwarding lab
(L{tests.interop._nftlab}).  Our PCP client does not send FILTER, so the
requests here are raw PCP packets from the first LAN host.
"""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address

from twisted_natpmp import Transport

from ._forwarding import SILENT, fromWAN
from ._lab import LAN_HOSTS, ROUTER_LAN, Inbox, waitUntil
from ._nftlab import NftGatewayTestCase

TCP, UDP = Transport.TCP, Transport.UDP
LAN1 = LAN_HOSTS[0]
#: A second address of the WAN host: the peer a FILTER lets through.
PEER = "192.0.3.3"
WAN_HOST = "192.0.3.2"


def _mapped(address: str) -> bytes:
    return bytes(10) + b"\xff\xff" + IPv4Address(address).packed


def mapWithFilter(
    nonce: bytes, protocol: int, internal: int, external: int, lifetime: int, peer: str
) -> bytes:
    """
    A PCP MAP request from the first LAN host (RFC 6887 s11.1) with one
    FILTER option (s13.3) that lets through only C{peer}, any port.
    """
    header = struct.pack("!BBHI", 2, 1, 0, lifetime) + _mapped(LAN1)
    opdata = (
        nonce + struct.pack("!B3xHH", protocol, internal, external) + _mapped("0.0.0.0")
    )
    option = struct.pack("!BBH", 3, 0, 20) + struct.pack("!xBH", 128, 0)
    return header + opdata + option + _mapped(peer)


class FilterTests(NftGatewayTestCase):
    """
    A filtered MAP forwards only its peer.
    """

    async def test_onlyThePeerReaches(self) -> None:
        """
        A UDP MAP with a FILTER for one peer is granted (result 0); the peer
        reaches the LAN host through it, while another WAN address's packets
        are dropped (silent); the MAP's deletion (same nonce, lifetime 0)
        closes it to the peer too.
        """
        self.lab.check(
            self.lab.wan, ["ip", "address", "add", f"{PEER}/24", "dev", "eth0"]
        )
        await self.startGateway()
        inbox = Inbox()
        port = self.lab.listenUDP(self.lab.lans[0], 0, inbox)
        self.addCleanup(port.stopListening)
        nonce = os.urandom(12)

        async def ask(lifetime: int) -> bytes:
            inbox.received.clear()
            request = mapWithFilter(nonce, 17, 8080, 18970, lifetime, PEER)
            port.write(request, (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
            await waitUntil(lambda: inbox.received, "the gateway's answer", 5.0)
            return inbox.received[0][0]

        reply = await ask(600)
        self.assertEqual(reply[1], 0x81)
        self.assertEqual(reply[3], 0, reply.hex())
        (external,) = struct.unpack("!H", reply[42:44])
        self.assertEqual(external, 18970)
        self.assertEqual(await self.fromPeer(PEER, external), LAN1)
        self.assertEqual(await self.fromPeer(WAN_HOST, external), SILENT)

        reply = await ask(0)
        self.assertEqual(reply[3], 0, reply.hex())
        self.assertNotEqual(await self.fromPeer(PEER, external), LAN1)

    async def fromPeer(self, source: str, port: int) -> str:
        return await fromWAN(self.lab, "udp", port, timeout=1.0, source=source)
