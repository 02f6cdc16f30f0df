"""
Tests for the nftables backend's IPv6 pinholes (RFC 6887 s11.3): made only
through the host's forward chain of an inet table, in our set there.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._options import FilterOption
from twisted_natpmp.pcp._wire import ResultCode, decodeResponse
from twisted_natpmp.server._entries import GatewayMapping
from twisted_natpmp.server.backends._batching import (
    ChangeKind,
    ForwardChange,
    IBatchingPinholeBackend,
)
from twisted_natpmp.server.backends._filters import RemoteFilter
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
        Our pinhole sets and their accept rules, for packets arriving on
        the external interface (to an unfiltered pinhole, or from a peer
        its filters let in), go into the host's table, and away again.
        """
        ruleset = Ruleset("wan0", forwardChain=CHAIN)
        created = ruleset.create()
        pinhole = "ip6 daddr . meta l4proto . th dport @twisted_natpmp_pinholes"
        for name in (SET, f"{SET}_filtered", f"{SET}_permitted"):
            self.assertIn(f"flush set {name}\n", created)
            self.assertIn(f"delete set {name}\n", ruleset.destroy([]))
        self.assertIn(
            f'add rule inet filter forward iifname "wan0" {pinhole}'
            " ip6 daddr . meta l4proto . th dport != @twisted_natpmp_pinholes_filtered"
            ' accept comment "twisted_natpmp"\n',
            created,
        )
        self.assertIn(
            f'add rule inet filter forward iifname "wan0" {pinhole}'
            " ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport"
            ' @twisted_natpmp_pinholes_permitted accept comment "twisted_natpmp"\n',
            created,
        )

    def test_filters(self) -> None:
        """
        PCP's FILTER on a pinhole (RFC 6887 s13.3): the pinhole goes into
        our filtered set and each peer let in into our permitted set,
        timing out with it; a removal takes them away with the pinhole.
        """
        ruleset = Ruleset("wan0", forwardChain=CHAIN)
        peer = RemoteFilter(IPv6Network("2001:db8:1::/64"), 443)
        key = "2001:db8:77::2 . tcp . 8082"
        filtered, view = ruleset.batch(
            [ForwardChange(ChangeKind.FILTER, PINHOLE, (peer,))], {}
        )
        self.assertIn(
            f"add element {SET}_filtered {{ {key} timeout 300s }}\n", filtered
        )
        self.assertIn(
            f"add element {SET}_permitted {{ {key} . 2001:db8:1::/64 . 443"
            " timeout 300s }\n",
            filtered,
        )
        removed, after = ruleset.batch(
            [ForwardChange(ChangeKind.REMOVE, PINHOLE)], view
        )
        self.assertIn(f"delete element {SET}_filtered {{ {key} }}\n", removed)
        self.assertIn(f"delete element {SET} {{ {key} }}\n", removed)
        self.assertEqual(after, {})

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

    def test_pinholeFiltered(self) -> None:
        """
        A PCP MAP with a FILTER from an IPv6 host opens a pinhole that lets
        in only the peers named; a FILTER of IPv4 peers is UNSUPP_OPTION.
        """
        option = FilterOption(128, 0, IPv6Address("2001:db8:1::9"))
        self.send(mapPacket(8082, 300, client=CLIENT6, options=(option,)), CLIENT6)
        self.turn()
        batch = self.nft.succeed().stdin
        self.assertIn("twisted_natpmp_pinholes_filtered", batch)
        self.assertIn(". 2001:db8:1::9/128 . 0-65535 timeout 300s", batch)
        response = decodeResponse(self.replies[CLIENT6][0])
        self.assertEqual(response.resultCode, ResultCode.SUCCESS)
        option = FilterOption(96 + 32, 0, IPv6Address("::ffff:198.51.100.9"))
        self.send(mapPacket(8083, 300, client=CLIENT6, options=(option,)), CLIENT6)
        self.turn()
        if self.nft.inFlight is not None:
            self.nft.succeed()
        response = decodeResponse(self.replies[CLIENT6][1])
        self.assertEqual(response.resultCode, ResultCode.UNSUPP_OPTION)

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
