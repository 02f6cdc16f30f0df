"""
PCP pinholes (IPv6, RFC 6887 s11.3) on our gateway's nftables backend: a MAP
from the first LAN host's global IPv6 address opens that address and port
to the WAN, through the host's forward chain (C{--forward-chain}), whose
policy drops everything else.  The IPv6 addresses are added by the test
itself (the lab has none), as in L{tests.interop.test_pcpipv6}.
"""

from __future__ import annotations

import os
import struct
from ipaddress import IPv6Address
from pathlib import Path

from tools.netlab.echo import probe
from tools.netlab.forwarding import GATEWAY_TABLE, HOST_FORWARD_CHAIN, HOST_TABLE
from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import NonceStore
from twisted_natpmp.pcp.client import listenPCPClient

from ._forwarding import SILENT
from ._lab import Inbox, waitUntil
from ._nftlab import NftGatewayTestCase

TCP, UDP = Transport.TCP, Transport.UDP

ROUTER_LAN6 = "2001:db8:77::1"
LAN_HOST6 = "2001:db8:77::2"
ROUTER_WAN6 = "2001:db8:3::1"
WAN_HOST6 = "2001:db8:3::2"
#: A second address of the WAN host, which a FILTER does not let in.
OTHER_WAN6 = "2001:db8:3::3"
#: The echo servers' IPv6 ports (the IPv4 ones, from the base class, hold
#: 8080-8082 on every IPv4 address).
ECHO6 = 8090
#: Our set of pinholes in the host's table.
PINHOLE_SET = f"{GATEWAY_TABLE}_pinholes"

#: What the test adds to the lab, as (host: 0 the router, 1 the first LAN
#: host, 2 the WAN host; an C{ip -6} command).
_IPV6 = (
    (0, f"address add {ROUTER_LAN6}/64 dev br0 nodad"),
    (0, f"address add {ROUTER_WAN6}/64 dev wan0 nodad"),
    (1, f"address add {LAN_HOST6}/64 dev eth0 nodad"),
    (1, f"route add default via {ROUTER_LAN6}"),
    (2, f"address add {WAN_HOST6}/64 dev eth0 nodad"),
    (2, f"address add {OTHER_WAN6}/64 dev eth0 nodad"),
    (2, f"route add 2001:db8:77::/64 via {ROUTER_WAN6}"),
)


class PinholeTests(NftGatewayTestCase):
    """
    Behind a host forward chain that drops what it does not accept, a PCP
    MAP from a global IPv6 address opens a pinhole through
    C{--forward-chain}.
    """

    acceptDNAT = False

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        lab = self.lab
        where = (lab.router, lab.lans[0], lab.wan)
        for host, command in _IPV6:
            lab.check(where[host], ["ip", "-6", *command.split()])
        lab.check(lab.router, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        lab.echo(0, LAN_HOST6).listen(tcp=(ECHO6,), udp=(ECHO6,), interface="::")
        await self.startGateway(
            f"--listen={ROUTER_LAN6}/64", f"--forward-chain={HOST_FORWARD_CHAIN}"
        )

    async def fromWAN6(self, transport: str, source: str = "::") -> str:
        return await probe(self.lab.wan, transport, LAN_HOST6, ECHO6, 1.0, source)

    async def test_filteredPinhole(self) -> None:
        """
        A PCP MAP with a FILTER for one WAN address (RFC 6887 s13.3; a raw
        request, our client sends no FILTER) opens the pinhole to that
        address only: the other WAN address's packets are dropped.
        """
        inbox = Inbox()
        port = self.lab.listenUDP(self.lab.lans[0], 0, inbox, interface=LAN_HOST6)
        self.addCleanup(port.stopListening)
        host = IPv6Address(LAN_HOST6).packed
        request = (
            struct.pack("!BBHI", 2, 1, 0, 600)
            + host
            + os.urandom(12)
            + struct.pack("!B3xHH", 6, ECHO6, ECHO6)
            + bytes(16)
            + struct.pack("!BBH", 3, 0, 20)
            + struct.pack("!xBH", 128, 0)
            + IPv6Address(WAN_HOST6).packed
        )
        port.write(request, (ROUTER_LAN6, 5351))  # type: ignore[attr-defined]
        await waitUntil(lambda: inbox.received, "the gateway's answer", 5.0)
        reply = inbox.received[0][0]
        self.assertEqual(reply[3], 0, reply.hex())
        self.assertEqual(await self.fromWAN6("tcp", WAN_HOST6), LAN_HOST6)
        self.assertEqual(await self.fromWAN6("tcp", OTHER_WAN6), SILENT)

    async def test_pinhole(self) -> None:
        """
        Before the MAP the WAN host's TCP and UDP packets to the LAN host's
        port are dropped (silent); the MAP's granted external address is
        the internal one (RFC 6887 s11.3) and both reach the LAN host's
        echo server through the pinhole; after the MAP is deleted they are
        dropped again.  After SIGTERM the host's table holds no set or rule
        of ours (the pinhole set and its accept rule are gone).
        """
        self.assertEqual(await self.fromWAN6("tcp"), SILENT)
        self.assertEqual(await self.fromWAN6("udp"), SILENT)
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]),
            ROUTER_LAN6,
            internalAddress=LAN_HOST6,
            nonces=NonceStore(Path(self.mktemp()) / "nonces.json"),
        )
        self.addCleanup(client.stop)
        for transport in (TCP, UDP):
            mapping = await client.addMapping(transport, ECHO6, lifetime=600)
            self.assertEqual(str(mapping.externalAddress), LAN_HOST6)
            self.assertEqual(mapping.externalPort, ECHO6)
        self.assertEqual(await self.fromWAN6("tcp"), LAN_HOST6)
        self.assertEqual(await self.fromWAN6("udp"), LAN_HOST6)

        for transport in (TCP, UDP):
            await client.deleteMapping(transport, ECHO6)
        self.assertEqual(await self.fromWAN6("tcp"), SILENT)
        self.assertEqual(await self.fromWAN6("udp"), SILENT)

        self.assertIn(PINHOLE_SET, self.ofOurs())
        await self.stopGateway()
        self.assertEqual(self.ofOurs(), [])

    def ofOurs(self) -> list[str]:
        """
        What of ours the host's table holds: each set whose name starts
        with our table's, and each rule with our comment (as C{"rule"}).
        """
        found = []
        for o in self.lab.ofTable(HOST_TABLE):
            ((kind, body),) = o.items()
            if kind == "set" and body["name"].startswith(GATEWAY_TABLE):
                found.append(body["name"])
            elif kind == "rule" and body.get("comment") == GATEWAY_TABLE:
                found.append("rule")
        return found
