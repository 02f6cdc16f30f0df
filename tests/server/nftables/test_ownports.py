"""
Tests for L{twisted_natpmp.server.backends.nftables._ownports}, and the
table's reserved ports they feed.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.backends.nftables._ownports import listeningPorts, ownPorts
from twisted_natpmp.server.table import MappingTable

EXTERNAL = IPv4Address("192.0.2.1")
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when\n"
# 0.0.0.0:22 listening, 192.0.2.1:8443 listening, 10.77.0.1:53 listening,
# 192.0.2.1:40000 established.
TCP = HEADER + (
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000\n"
    "   1: 010200C0:20FB 00000000:0000 0A 00000000:00000000 00:00000000\n"
    "   2: 01004D0A:0035 00000000:0000 0A 00000000:00000000 00:00000000\n"
    "   3: 010200C0:9C40 090200C0:0050 01 00000000:00000000 00:00000000\n"
)
# [::]:5353 bound, [::ffff:192.0.2.1]:4500 bound, [::1]:123 bound,
# [::ffff:192.0.2.1]:51820 connected to [::ffff:192.0.2.9]:51820.
UDP6 = HEADER + (
    "   0: 00000000000000000000000000000000:14E9"
    " 00000000000000000000000000000000:0000 07 0\n"
    "   1: 0000000000000000FFFF0000010200C0:1194"
    " 00000000000000000000000000000000:0000 07 0\n"
    "   2: 00000000000000000000000001000000:007B"
    " 00000000000000000000000000000000:0000 07 0\n"
    "   3: 0000000000000000FFFF0000010200C0:CA6C"
    " 0000000000000000FFFF0000090200C0:CA6C 01 0\n"
)


class OwnPortsTests(SynchronousTestCase):
    def test_tcpListening(self) -> None:
        """
        TCP ports listening on the external address or on every address
        count; others, and connections, do not.
        """
        self.assertEqual(listeningPorts(TCP, True, EXTERNAL), {22, 8443})

    def test_udpBound(self) -> None:
        """
        UDP ports bound on every IPv6 address, or on the external address
        in its IPv4-mapped form, count, connected to a peer or not.
        """
        self.assertEqual(listeningPorts(UDP6, False, EXTERNAL), {5353, 4500, 51820})

    def test_ownPorts(self) -> None:
        """
        The four files together; a file that cannot be read counts as
        empty.
        """
        files = {"/proc/net/tcp": TCP, "/proc/net/udp6": UDP6}
        ports = ownPorts(EXTERNAL, read=lambda path: files.get(path, ""))
        self.assertEqual(ports, frozenset({22, 8443, 5353, 4500, 51820}))
        self.assertEqual(
            ownPorts(EXTERNAL, read=lambda path: "junk\nmore junk"), frozenset()
        )


class ReservedPortsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.table = MappingTable(Clock(), MemoryBackend(), minPort=8000, maxPort=8099)
        self.client = IPv4Address("10.77.0.2")

    def test_neverGranted(self) -> None:
        """
        A port the router uses is not granted, in either transport, even
        when suggested: the next free one is.
        """
        self.table.reserve(frozenset({8000, 22}))
        granted = [
            self.table.map(self.client, transport, 1, 8000, 60).externalPort
            for transport in Transport
        ]
        self.assertEqual(granted, [8001, 8002])

    def test_released(self) -> None:
        """
        A port the router no longer uses may be granted again; one a mapping
        held when it was reserved stays taken until the mapping goes.
        """
        held = self.table.map(self.client, Transport.TCP, 1, 8001, 60)
        self.table.reserve(frozenset({8000, 8001}))
        self.table.delete(self.client, Transport.TCP, 1)
        self.assertEqual(
            self.table.map(self.client, Transport.UDP, 2, 8001, 60).externalPort, 8002
        )
        self.table.reserve(frozenset())
        self.assertEqual(
            self.table.map(self.client, Transport.UDP, 3, 8000, 60).externalPort, 8000
        )
        self.assertEqual(held.externalPort, 8001)
        self.assertEqual(
            self.table.map(self.client, Transport.UDP, 4, 8001, 60).externalPort, 8001
        )
