"""
Tests for L{twisted_natpmp.server.backends.nftables._conntrack}: reading
C{conntrack -L} and picking the flows through removed mappings.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.server._entries import GatewayMapping
from twisted_natpmp.server.backends.nftables._conntrack import (
    Flow,
    deletions,
    flowsThrough,
    listArguments,
    parseFlows,
    through,
)

MAPPING = GatewayMapping(IPv4Address("10.77.0.2"), Transport.UDP, 5001, 5000, 60, 0)
LISTING = (
    "udp      17 29 src=198.51.100.9 dst=192.0.2.1 sport=6000 dport=5000"
    " [UNREPLIED] src=10.77.0.2 dst=198.51.100.9 sport=5001 dport=6000 mark=0 use=1\n"
    "icmp     1 29 src=198.51.100.9 dst=192.0.2.1 type=8 code=0 id=1"
    " src=192.0.2.1 dst=198.51.100.9 type=0 code=0 id=1 mark=0 use=1\n"
    "tcp      6 10 CLOSE src=1.2.3.4 dst=5.6.7.8 sport=x dport=1\n"
    "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n"
)
FLOW = Flow("udp", "198.51.100.9", "192.0.2.1", 6000, 5000, "10.77.0.2", 5001)


class ConntrackTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        TCP and UDP entries are read, with their flags between the tuples;
        other protocols, broken lines and the summary are skipped.
        """
        self.assertEqual(parseFlows(LISTING), [FLOW])

    def test_through(self) -> None:
        """
        A flow goes through a mapping when it came to the external port and
        its replies come from the internal address and port: not one of
        the other transport, nor one a LAN host opened itself.
        """
        self.assertTrue(through(FLOW, MAPPING))
        for other in (
            Flow("tcp", "198.51.100.9", "192.0.2.1", 6000, 5000, "10.77.0.2", 5001),
            Flow("udp", "10.77.0.2", "198.51.100.9", 5001, 5000, "198.51.100.9", 5000),
            Flow("udp", "198.51.100.9", "192.0.2.1", 6000, 5000, "10.77.0.3", 5001),
            Flow("udp", "198.51.100.9", "192.0.2.1", 6000, 5000, "bogus", 5001),
        ):
            self.assertFalse(through(other, MAPPING), other)
        self.assertEqual(flowsThrough([FLOW, FLOW], [MAPPING]), [FLOW, FLOW])

    def test_lanFlowToSamePortNotThrough(self) -> None:
        """
        With the external port the internal one, a LAN host's own flow
        straight to the internal address and port (not DNATed: its replies
        come from where it went) does not go through the mapping.
        """
        same = GatewayMapping(
            IPv4Address("10.77.0.2"), Transport.TCP, 8080, 8080, 60, 0
        )
        direct = Flow("tcp", "10.77.0.3", "10.77.0.2", 41000, 8080, "10.77.0.2", 8080)
        forwarded = Flow(
            "tcp", "198.51.100.9", "192.0.2.1", 41000, 8080, "10.77.0.2", 8080
        )
        self.assertEqual(flowsThrough([direct, forwarded], [same]), [forwarded])

    def test_pinholeFlows(self) -> None:
        """
        A flow goes through a pinhole when it goes to the host's address and
        port, from outside the internal networks.
        """
        host = IPv6Address("2001:db8:77::2")
        pinhole = GatewayMapping(host, Transport.TCP, 8080, 8080, 60, 0)
        wan = Flow("tcp", "2001:db8:1::9", str(host), 41000, 8080, str(host), 8080)
        lan = Flow("tcp", "2001:db8:77::3", str(host), 41000, 8080, str(host), 8080)
        internal = [ip_network("2001:db8:77::/64")]
        self.assertEqual(flowsThrough([wan, lan], [pinhole], internal), [wan])
        self.assertTrue(through(lan, pinhole))

    def test_deletions(self) -> None:
        """
        Each flow is deleted by its exact original tuple, per family.
        """
        self.assertEqual(
            deletions([FLOW], False),
            b"-D -p udp -s 198.51.100.9 -d 192.0.2.1 --sport 6000 --dport 5000\n",
        )
        self.assertTrue(deletions([FLOW], True).startswith(b"-D -f ipv6 -p udp"))
        self.assertEqual(listArguments(True), ("-L", "-f", "ipv6"))
        self.assertEqual(listArguments(False), ("-L", "-f", "ipv4", "--dst-nat"))
