"""
Tests for L{twisted_natpmp.server.backends.nftables._ruleset}: the text of
every batch.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.server._entries import GatewayMapping
from twisted_natpmp.server.backends._batching import ChangeKind, ForwardChange
from twisted_natpmp.server.backends._filters import RemoteFilter
from twisted_natpmp.server.backends.nftables._ruleset import (
    ForwardChain,
    Port,
    Ruleset,
    checkInterface,
    checkName,
    ruleHandles,
)

MAPPING = GatewayMapping(IPv4Address("10.77.0.2"), Transport.UDP, 5001, 5000, 60, 0)
CHAIN = ForwardChain("inet", "filter", "forward")


def everyChange(ruleset: Ruleset, mapping: GatewayMapping) -> list[str]:
    """
    The lines of the batch that adds C{mapping}, renews it, then removes
    it.
    """
    kinds = (ChangeKind.ADD, ChangeKind.SET, ChangeKind.REMOVE)
    changes = [ForwardChange(kind, mapping) for kind in kinds]
    return ruleset.changes(changes).splitlines()


class RulesetTests(SynchronousTestCase):
    def test_create(self) -> None:
        """
        The table is made afresh whether or not it exists: added, deleted,
        then defined with its map (timeouts) and its DNAT rule for packets
        arriving on the external interface for the router itself (not those
        routed on, to a public subnet behind it).
        """
        text = Ruleset("wan0", "gw").create()
        lines = text.splitlines()
        self.assertEqual(
            lines[:3], ["add table inet gw", "delete table inet gw", "table inet gw {"]
        )
        self.assertIn(
            "        type inet_proto . inet_service : ipv4_addr . inet_service", lines
        )
        self.assertIn("        flags timeout", lines)
        self.assertIn(
            '        iifname "wan0" fib daddr type local meta l4proto { tcp, udp }'
            " dnat ip to meta l4proto . th dport map @forwards",
            lines,
        )
        self.assertNotIn("add rule", text)

    def test_createWithForwardChain(self) -> None:
        """
        With a host forward chain, our stale rules there go, our set is
        made (emptied) and our accept rule goes at the chain's end, after
        the host's own rules (its drops first).
        """
        text = Ruleset("wan0", forwardChain=CHAIN).create([7, 9])
        self.assertIn("delete rule inet filter forward handle 7\n", text)
        self.assertIn("delete rule inet filter forward handle 9\n", text)
        self.assertIn("flush set inet filter twisted_natpmp_forwards\n", text)
        self.assertIn(
            "add rule inet filter forward ct status dnat ip daddr"
            " . meta l4proto . th dport @twisted_natpmp_forwards accept"
            ' comment "twisted_natpmp"\n',
            text,
        )

    def test_destroy(self) -> None:
        """
        Stopping removes our rules and set in the host's table (an ip one:
        no pinholes), then our table, each whether or not it is there; a
        host chain that cannot be listed (L{None}) is left alone.
        """
        ruleset = Ruleset("wan0", forwardChain=ForwardChain("ip", "filter", "forward"))
        self.assertEqual(
            ruleset.destroy([3]).splitlines(),
            [
                "delete rule ip filter forward handle 3",
                "add set ip filter twisted_natpmp_forwards { type ipv4_addr"
                " . inet_proto . inet_service; flags timeout; }",
                "delete set ip filter twisted_natpmp_forwards",
                "add table inet twisted_natpmp",
                "delete table inet twisted_natpmp",
            ],
        )
        self.assertEqual(
            ruleset.destroy(None),
            "add table inet twisted_natpmp\ndelete table inet twisted_natpmp\n",
        )

    def test_addSetAndRemove(self) -> None:
        """
        An ADD only adds the element, its timeout the lifetime (nothing
        forwards the port yet, and a batch without a deletion commits
        faster); a SET (a renewal) refreshes or adds it, deletes it and
        adds it with the new timeout; a REMOVE adds it briefly and deletes
        it, so neither fails on an element the kernel has expired.
        """
        m = "inet twisted_natpmp forwards"
        element = "udp . 5000 timeout 60s : 10.77.0.2 . 5001"
        self.assertEqual(
            everyChange(Ruleset("wan0"), MAPPING),
            [
                f"add element {m} {{ {element} }}",
                f"add element {m} {{ udp . 5000 timeout 1s : 10.77.0.2 . 5001 }}",
                f"delete element {m} {{ udp . 5000 }}",
                f"add element {m} {{ {element} }}",
                f"add element {m} {{ udp . 5000 timeout 1s : 10.77.0.2 . 5001 }}",
                f"delete element {m} {{ udp . 5000 }}",
            ],
        )

    def test_hostSetElements(self) -> None:
        """
        With a host forward chain each change is mirrored in our set there,
        keyed by the internal address, transport and port.
        """
        text = Ruleset("wan0", forwardChain=CHAIN).changes(
            [ForwardChange(ChangeKind.SET, MAPPING)]
        )
        s = "inet filter twisted_natpmp_forwards"
        self.assertIn(
            f"add element {s} {{ 10.77.0.2 . udp . 5001 timeout 60s }}\n", text
        )
        self.assertIn(f"delete element {s} {{ 10.77.0.2 . udp . 5001 }}\n", text)

    def test_listForwardChain(self) -> None:
        """
        Our rules are found by listing the host's chain as JSON with
        handles.
        """
        self.assertEqual(
            Ruleset("wan0", forwardChain=CHAIN).listForwardChain(),
            ["-j", "-a", "list", "chain", "inet", "filter", "forward"],
        )


class NamesTests(SynchronousTestCase):
    def test_badNames(self) -> None:
        """
        Names that nft would not take, or that could smuggle syntax into a
        batch, are refused with the value named.
        """
        for bad in ("", "1abc", "a b", 'x"y', "a;b", "a" * 65):
            with self.assertRaises(ValueError) as caught:
                checkName("table", bad)
            self.assertIn(repr(bad), str(caught.exception))
        self.assertEqual(checkName("table", "natpmp_2"), "natpmp_2")

    def test_badInterfaces(self) -> None:
        """
        An interface name is at most 15 characters, none of them quotes or
        white space.
        """
        for bad in ("", "wan 0", 'wan"', "a" * 16, "a/b"):
            self.assertRaises(ValueError, checkInterface, bad)
        self.assertEqual(checkInterface("eth0.100"), "eth0.100")

    def test_forwardChain(self) -> None:
        """
        C{FAMILY:TABLE:CHAIN}, with FAMILY inet or ip.
        """
        self.assertEqual(
            ForwardChain.parse("ip:fw:fwd"), ForwardChain("ip", "fw", "fwd")
        )
        self.assertEqual(str(CHAIN), "inet:filter:forward")
        for bad in (
            "inet:filter",
            "ip6:filter:forward",
            "inet:fil ter:forward",
            "a:b:c:d",
        ):
            with self.assertRaises(ValueError) as caught:
                ForwardChain.parse(bad)
            self.assertIn(repr(bad), str(caught.exception))

    def test_ruleHandles(self) -> None:
        """
        Our rules are those with our comment.
        """
        listing = {
            "nftables": [
                {"metainfo": {"version": "1.0.6"}},
                {"chain": {"name": "forward", "handle": 1}},
                {"rule": {"handle": 3, "comment": "twisted_natpmp"}},
                {"rule": {"handle": 4}},
                {"rule": {"handle": 5, "comment": "other"}},
                {"rule": {"handle": 8, "comment": "twisted_natpmp"}},
            ]
        }
        self.assertEqual(
            ruleHandles(json.dumps(listing).encode(), "twisted_natpmp"), [3, 8]
        )
        self.assertRaises(ValueError, ruleHandles, b"not json", "x")
        self.assertRaises(ValueError, ruleHandles, b"{}", "x")


class FilterRulesetTests(SynchronousTestCase):
    """
    PCP's FILTER (RFC 6887 s13.3) as element-level source restrictions.
    """

    WIDE = RemoteFilter(IPv4Network("198.51.100.0/24"))
    ONE = RemoteFilter(IPv4Network("203.0.113.7/32"), 443)

    def test_chain(self) -> None:
        """
        Before the DNAT, packets to a filtered port from a peer not let
        through are dropped.
        """
        text = Ruleset("wan0").create()
        self.assertIn("type filter hook prerouting priority dstnat - 10;", text)
        self.assertIn(
            '        iifname "wan0" fib daddr type local'
            " meta l4proto . th dport @filtered"
            " meta l4proto . th dport . ip saddr . th sport != @permitted drop\n",
            text,
        )

    def test_setChangeClear(self) -> None:
        """
        Setting filters adds the port to C{filtered} and each peer to
        C{permitted}, timing out with the mapping; changing them removes
        the old ones first; none removes them all; the filters left are
        returned.
        """
        ruleset = Ruleset("wan0")
        first, view = ruleset.batch(
            [ForwardChange(ChangeKind.FILTER, MAPPING, (self.WIDE,))], {}
        )
        f, p = "inet twisted_natpmp filtered", "inet twisted_natpmp permitted"
        self.assertEqual(
            first.splitlines(),
            [
                f"add element {f} {{ udp . 5000 timeout 60s }}",
                f"add element {p} {{ udp . 5000 . 198.51.100.0/24 . 0-65535"
                " timeout 60s }",
            ],
        )
        port = (Transport.UDP, 5000)
        self.assertEqual(view, {port: (self.WIDE,)})
        changed, view = ruleset.batch(
            [ForwardChange(ChangeKind.FILTER, MAPPING, (self.ONE,))], view
        )
        self.assertEqual(
            changed.splitlines()[1],
            f"delete element {p} {{ udp . 5000 . 198.51.100.0/24 . 0-65535 }}",
        )
        self.assertIn(
            f"add element {p} {{ udp . 5000 . 203.0.113.7/32 . 443 timeout 60s }}",
            changed,
        )
        cleared, view = ruleset.batch(
            [ForwardChange(ChangeKind.FILTER, MAPPING, ())], view
        )
        self.assertIn(f"delete element {f} {{ udp . 5000 }}", cleared)
        self.assertNotIn("timeout 60s", cleared)
        self.assertEqual(view, {})

    def test_renewAndRemove(self) -> None:
        """
        A renewal writes a filtered mapping's filters again with the new
        lifetime; a removal removes them with it.
        """
        ruleset = Ruleset("wan0")
        view: dict[Port, tuple[RemoteFilter, ...]] = {
            (Transport.UDP, 5000): (self.WIDE,)
        }
        renewed, after = ruleset.batch([ForwardChange(ChangeKind.SET, MAPPING)], view)
        self.assertIn(
            "add element inet twisted_natpmp filtered { udp . 5000 timeout 60s }",
            renewed,
        )
        self.assertEqual(after, view)
        removed, after = ruleset.batch(
            [ForwardChange(ChangeKind.REMOVE, MAPPING)], view
        )
        self.assertIn(
            "delete element inet twisted_natpmp filtered { udp . 5000 }", removed
        )
        self.assertEqual(after, {})
