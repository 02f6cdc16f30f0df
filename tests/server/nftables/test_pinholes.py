"""
Tests for the nftables backend's IPv6 pinholes (RFC 6887 s11.3): made only
through the host's forward chain of an inet table, in our set there.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._wire import ResultCode, decodeResponse
from twisted_natpmp.server._entries import GatewayMapping
from twisted_natpmp.server.backends._batching import (
    ChangeKind,
    ForwardChange,
    IBatchingPinholeBackend,
)
from twisted_natpmp.server.backends.nftables import (
    ForwardChain,
    NftablesBackend,
    Ruleset,
)
from twisted_natpmp.server.backends.nftables._conntrack import Flow, through
from twisted_natpmp.server.backends.nftables.testing import RecordingRunner

from .._batchhelpers import BatchingGatewayMixin
from .._pcp import CLIENT6, mapPacket
from .test_ruleset import everyChange

PINHOLE = GatewayMapping(IPv6Address(CLIENT6), Transport.TCP, 8082, 8082, 300, 0)
CHAIN = ForwardChain("inet", "filter", "forward")
SET = "inet filter twisted_natpmp_pinholes"


class PinholeRulesetTests(SynchronousTestCase):
    def test_onlyThroughInetChain(self) -> None:
        """
        Pinholes are made only with a host forward chain of an inet table:
        nothing else could let them through the host's firewall.
        """
        self.assertTrue(Ruleset("wan0", forwardChain=CHAIN).pinholes)
        self.assertFalse(Ruleset("wan0").pinholes)
        self.assertFalse(
            Ruleset("wan0", forwardChain=ForwardChain("ip", "f", "fwd")).pinholes
        )
        self.assertRaises(
            ValueError,
            Ruleset("wan0").changes,
            [ForwardChange(ChangeKind.SET, PINHOLE)],
        )

    def test_createAndDestroy(self) -> None:
        """
        Our pinhole set and its accept rule, for packets arriving on the
        external interface, go into the host's table, and away again.
        """
        ruleset = Ruleset("wan0", forwardChain=CHAIN)
        created = ruleset.create()
        self.assertIn(f"flush set {SET}\n", created)
        self.assertIn(
            'add rule inet filter forward iifname "wan0" ip6 daddr . meta l4proto'
            ' . th dport @twisted_natpmp_pinholes accept comment "twisted_natpmp"\n',
            created,
        )
        self.assertIn(f"delete set {SET}\n", ruleset.destroy([]))

    def test_elements(self) -> None:
        """
        A pinhole is one element of (address, transport, port) whose timeout
        is the lifetime granted; its flows are those to that address and
        port.
        """
        key = "2001:db8:77::2 . tcp . 8082"
        self.assertEqual(
            everyChange(Ruleset("wan0", forwardChain=CHAIN), PINHOLE),
            [
                f"add element {SET} {{ {key} timeout 300s }}",
                f"add element {SET} {{ {key} timeout 1s }}",
                f"delete element {SET} {{ {key} }}",
                f"add element {SET} {{ {key} timeout 300s }}",
                f"add element {SET} {{ {key} timeout 1s }}",
                f"delete element {SET} {{ {key} }}",
            ],
        )
        inbound = Flow("tcp", "2001:db8:1::9", "2001:db8:77::2", 40000, 8082, "", 0)
        self.assertTrue(through(inbound, PINHOLE))
        self.assertFalse(
            through(
                Flow("tcp", "2001:db8:1::9", "2001:db8:77::3", 1, 8082, "", 0), PINHOLE
            )
        )


class PinholeGatewayTests(BatchingGatewayMixin):
    def setUp(self) -> None:
        super().setUp()
        self.backend = NftablesBackend(
            Ruleset("wan0", forwardChain=CHAIN), self.nft, self.conntrack
        )
        self.gateway = self.makeGateway()
        started = self.backend.start()
        self.nft.succeed(b'{"nftables": []}')
        self.nft.succeed()
        self.successResultOf(started)

    def test_provides(self) -> None:
        """
        The backend says it makes pinholes only when it can.
        """
        self.assertTrue(IBatchingPinholeBackend.providedBy(self.backend))
        self.assertFalse(
            IBatchingPinholeBackend.providedBy(
                NftablesBackend(Ruleset("wan0"), RecordingRunner(), None)
            )
        )

    def test_pinholeMapped(self) -> None:
        """
        A PCP MAP from an IPv6 host opens a pinhole (RFC 6887 s11.3:
        external address and port = internal), answered once committed.
        """
        self.send(mapPacket(8082, 300, client=CLIENT6), CLIENT6)
        self.turn()
        self.assertEqual(self.replies[CLIENT6], [])
        batch = self.nft.succeed().stdin
        self.assertIn(
            f"add element {SET} {{ 2001:db8:77::2 . tcp . 8082 timeout 300s }}", batch
        )
        response = decodeResponse(self.replies[CLIENT6][0])
        self.assertEqual(response.resultCode, ResultCode.SUCCESS)
        self.send(mapPacket(8082, 0, client=CLIENT6), CLIENT6)
        self.turn()
        self.assertIn(f"delete element {SET}", self.nft.succeed().stdin)
        self.assertEqual(self.conntrack.runs[0].arguments, ("-L", "-f", "ipv6"))

    def test_pinholeFailureUndone(self) -> None:
        """
        A pinhole whose batch fails is answered NETWORK_FAILURE and not
        held.
        """
        self.send(mapPacket(8082, 300, client=CLIENT6), CLIENT6)
        self.turn()
        self.nft.fail()
        response = decodeResponse(self.replies[CLIENT6][0])
        self.assertEqual(response.resultCode, ResultCode.NETWORK_FAILURE)
        self.assertEqual(len(self.gateway.table), 0)


class NoPinholesTests(BatchingGatewayMixin):
    def test_refused(self) -> None:
        """
        Without a host forward chain of an inet table an IPv6 MAP is refused
        as not authorized, and nothing is written.
        """
        self.send(mapPacket(8082, 300, client=CLIENT6), CLIENT6)
        self.turn()
        response = decodeResponse(self.replies[CLIENT6][0])
        self.assertEqual(response.resultCode, ResultCode.NOT_AUTHORIZED)
        self.assertEqual(self.batches(), [])
