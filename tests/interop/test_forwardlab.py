"""
The forwarding lab itself (L{tools.netlab.forwarding}, L{tools.netlab.echo}),
proven with a hand-written nftables ruleset in the router namespace (the
PROTOCOL.md C5 example), before any gateway writes one: its probes tell a
forwarded connection from a refused, a dropped and a cut one.  If these
fail, every failure in C{test_nftables} is suspect.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tools.netlab.echo import TCPFlow, UDPFlow

from ._forwarding import (
    CLOSED,
    REFUSED,
    SILENT,
    ForwardingLab,
    buildForwardingLab,
    fromWAN,
)
from ._lab import LAN_HOSTS, ROUTER_WAN, sleep

#: PROTOCOL.md C5, without its filter chain (each test adds a host
#: firewall of its own, L{ForwardingLab.addHostFirewall}).
DNAT = (
    'iifname "wan0" meta l4proto { tcp, udp }'
    " dnat ip to meta l4proto . th dport map @portmap"
)
RULESET = f"""\
table inet handmade {{
    map portmap {{
        type inet_proto . inet_service : ipv4_addr . inet_service
        flags timeout
    }}
    chain inbound {{
        type nat hook prerouting priority dstnat; policy accept;
        {DNAT}
    }}
}}
"""


def element(transport: str, external: int, lan: int, internal: int, life: int) -> str:
    return f"{transport} . {external} timeout {life}s : {LAN_HOSTS[lan]} . {internal}"


class HandmadeRulesetTests(TestCase):
    """
    The lab's probes against a ruleset written by hand.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab: ForwardingLab = buildForwardingLab(self)
        self.lab.loadRuleset(RULESET)
        for lan in (0, 1):
            self.lab.echo(lan).listen(tcp=(8080,), udp=(8080,))

    def add(self, *elements: str) -> None:
        self.lab.nft(
            "add",
            "element",
            "inet",
            "handmade",
            "portmap",
            "{ " + ", ".join(elements) + " }",
        )

    def delete(self, *keys: str) -> None:
        self.lab.nft(
            "delete",
            "element",
            "inet",
            "handmade",
            "portmap",
            "{ " + ", ".join(keys) + " }",
        )

    async def test_forwardRefuseCut(self) -> None:
        """
        With a DNAT-accepting host firewall: a port with an element reaches
        the LAN host it names, over TCP and UDP, and the lab reads the
        element back with its timeout; a port without one is refused (the
        router's own stack answers); deleting the element stops new
        connections only (established ones keep their conntrack entry),
        until those entries are deleted too, which cuts them.
        """
        self.lab.addHostFirewall(acceptDNAT=True)
        self.add(
            element("tcp", 18080, 0, 8080, 600),
            element("udp", 18080, 1, 8080, 600),
        )
        self.assertEqual(await fromWAN(self.lab, "tcp", 18080), LAN_HOSTS[0])
        self.assertEqual(await fromWAN(self.lab, "udp", 18080), LAN_HOSTS[1])
        self.assertEqual(await fromWAN(self.lab, "tcp", 18081), REFUSED)
        self.assertEqual(await fromWAN(self.lab, "udp", 18081), REFUSED)
        elements = self.lab.mapElements("handmade")
        self.assertEqual(set(elements), {("tcp", 18080), ("udp", 18080)})
        tcp = elements[("tcp", 18080)]
        self.assertEqual(
            (tcp.address, tcp.port, tcp.timeout), (LAN_HOSTS[0], 8080, 600)
        )
        assert tcp.expires is not None
        self.assertLessEqual(tcp.expires, 600)

        tcpFlow, outcome = await TCPFlow.open(self.lab.wan, ROUTER_WAN, 18080)
        self.addCleanup(tcpFlow.close)
        self.assertEqual(outcome, LAN_HOSTS[0])
        udpFlow = UDPFlow.open(self.lab.wan, ROUTER_WAN, 18080)
        self.addCleanup(udpFlow.close)
        self.assertEqual(await udpFlow.exchange(), LAN_HOSTS[1])
        self.assertGreaterEqual(self.lab.conntrack("tcp", 18080), 1)
        self.assertGreaterEqual(self.lab.conntrack("udp", 18080), 1)

        self.delete("tcp . 18080", "udp . 18080")
        self.assertEqual(await fromWAN(self.lab, "tcp", 18080), REFUSED)
        self.assertEqual(await fromWAN(self.lab, "udp", 18080), REFUSED)
        self.assertEqual(await tcpFlow.exchange(), LAN_HOSTS[0])
        self.assertEqual(await udpFlow.exchange(), LAN_HOSTS[1])

        await self.lab.cutFlows("tcp", 18080)
        await self.lab.cutFlows("udp", 18080)
        self.assertEqual(self.lab.conntrack("tcp", 18080), 0)
        self.assertEqual(await tcpFlow.exchange(), CLOSED)
        self.assertEqual(await udpFlow.exchange(), REFUSED)

    async def test_expiryAndDrop(self) -> None:
        """
        An element with a short timeout forwards before it and not after
        (the kernel removes it: new flows are refused); behind a host
        firewall whose forward policy drops and that does not accept DNAT,
        a forwarded connection is silent rather than refused.
        """
        self.lab.addHostFirewall(acceptDNAT=True)
        self.add(element("udp", 18090, 0, 8080, 2))
        self.assertEqual(await fromWAN(self.lab, "udp", 18090), LAN_HOSTS[0])
        await sleep(3.0)
        self.assertNotIn(("udp", 18090), self.lab.mapElements("handmade"))
        self.assertEqual(await fromWAN(self.lab, "udp", 18090), REFUSED)

        self.lab.addHostFirewall(acceptDNAT=False, table="strict")
        self.add(element("tcp", 18091, 0, 8080, 600))
        self.assertEqual(await fromWAN(self.lab, "tcp", 18091, 1.0), SILENT)
        self.assertEqual(await fromWAN(self.lab, "udp", 18092, 1.0), REFUSED)
