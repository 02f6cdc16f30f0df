"""
Our gateway's nftables backend behind the second host setup of
L{tests.interop.test_nftables}: a host forward chain whose policy is drop
and which does not accept DNATed flows itself, reached with
C{--forward-chain}.  Deletion (new connections refused, established ones
cut), expiry and renewal, for both LAN hosts, behave as behind a
firewall that accepts DNATed flows (the same tests, run here); a gateway
killed with SIGKILL leaves its accept rule in the host's chain, and the
next start replaces it.
"""

from __future__ import annotations

from typing import Any

from tools.netlab.forwarding import GATEWAY_TABLE, HOST_FORWARD_CHAIN, HOST_TABLE

from . import test_nftables
from ._lab import LAN_HOSTS
from ._nftlab import NftGatewayTestCase

LAN1 = LAN_HOSTS[0]


class ForwardChainForwardingTests(NftGatewayTestCase):
    """
    Behind a host forward chain that drops what it does not accept, our
    gateway started with C{--forward-chain} naming it forwards exactly
    what it grants, for as long as it grants it.
    """

    acceptDNAT = False

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        await self.startGateway(f"--forward-chain={HOST_FORWARD_CHAIN}")

    # (The tests of ForwardingTests, not the class: a TestCase named in
    # this module would run here too.)
    test_natpmpcMapsForwardsAndDeletes = (
        test_nftables.ForwardingTests.test_natpmpcMapsForwardsAndDeletes
    )
    test_expiryClosesAndRenewalKeeps = (
        test_nftables.ForwardingTests.test_expiryClosesAndRenewalKeeps
    )

    def ourRules(self) -> list[dict[str, Any]]:
        """
        The rules in the host's forward chain that carry our comment.
        """
        return [
            rule
            for rule in self.lab.rulesOf("inet", HOST_TABLE, "forward")
            if rule.get("comment") == GATEWAY_TABLE
        ]

    async def test_sigkillThenRestartReplacesRule(self) -> None:
        """
        A gateway killed with SIGKILL leaves its accept rules in the host's
        chain (those with our comment: for IPv4 forwards, and for IPv6
        pinholes), and its mapping forwarding; started again, it replaces
        them (as many rules with our comment as before, none of them a
        leftover, the host's own rules as they were), no longer forwards
        the mapping it lost, and forwards what it grants now.
        """
        await self.natpmpc(0, "-a", "18900", "8080", "udp", "600")
        await self.assertForwards("udp", 18900, LAN1)
        hostRules = [
            r
            for r in self.lab.chainRules("inet", HOST_TABLE, "forward")
            if r not in [rule["expr"] for rule in self.ourRules()]
        ]
        left = self.ourRules()
        self.assertTrue(left)
        await self.killGateway()
        self.assertEqual(self.ourRules(), left)
        await self.assertForwards("udp", 18900, LAN1)

        await self.startGateway(f"--forward-chain={HOST_FORWARD_CHAIN}")
        replaced = self.ourRules()
        self.assertEqual(len(replaced), len(left), replaced)
        self.assertFalse(
            {r["handle"] for r in replaced} & {r["handle"] for r in left}, replaced
        )
        self.assertEqual(
            [
                r
                for r in self.lab.chainRules("inet", HOST_TABLE, "forward")
                if r not in [rule["expr"] for rule in replaced]
            ],
            hostRules,
        )
        await self.assertClosed("udp", 18900)
        await self.natpmpc(0, "-a", "18901", "8081", "tcp", "600")
        await self.assertForwards("tcp", 18901, LAN1)
        self.assertGatewayRuns()
