"""
What becomes of established flows through our gateway's nftables backend
when the gateway ends: a clean stop (SIGTERM) cuts them, as a deletion
does; a gateway killed with SIGKILL cuts nothing, so its flows outlive it
and the lifetimes it granted (the kernel's element expiry stops new
connections only: conntrack keeps the established ones) until the gateway
is started again, which cuts them.  Behind a host firewall that accepts
DNATed flows (L{tests.interop.test_nftables}).
"""

from __future__ import annotations

from ._forwarding import CLOSED, REFUSED
from ._lab import LAN_HOSTS, waitUntil
from ._nftlab import SHORT, NftGatewayTestCase

LAN1, LAN2 = LAN_HOSTS[0], LAN_HOSTS[1]


class EstablishedFlowTests(NftGatewayTestCase):
    """
    Established TCP and UDP flows when the gateway stops cleanly, and when
    it is killed.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        await self.startGateway()

    async def mapBoth(self, port: int, lifetime: int, lan: int = 0) -> None:
        for transport in ("tcp", "udp"):
            await self.natpmpc(lan, "-a", str(port), "8080", transport, str(lifetime))

    async def test_cleanStopCutsFlows(self) -> None:
        """
        After SIGTERM the gateway's established TCP flow is closed and its
        UDP flow refused (their conntrack entries deleted), and new
        connections are refused.
        """
        await self.mapBoth(18960, 600)
        tcpFlow, udpFlow = await self.openFlows(18960, LAN1)
        await self.stopGateway()
        await self.flowsCut("tcp", 18960)
        await self.flowsCut("udp", 18960)
        self.assertEqual(await tcpFlow.exchange(), CLOSED)
        self.assertEqual(await udpFlow.exchange(), REFUSED)
        await self.assertClosed("tcp", 18960)
        await self.assertClosed("udp", 18960)

    async def test_restartCutsFlowsOfKilled(self) -> None:
        """
        A gateway killed with SIGKILL cuts nothing: once the lifetime it
        granted and a margin have passed, the kernel has expired the
        elements, so new connections are refused, while the established
        TCP and UDP flows still reach the LAN host (their conntrack
        entries outlive the mapping; nothing runs to cut them).  The
        gateway started again cuts them (its port range on the external
        address), and the port granted to another LAN host then forwards
        there.  (What the README says of SIGKILL.)
        """
        await self.mapBoth(18970, 600)
        tcpFlow, udpFlow = await self.openFlows(18970, LAN1)
        await self.mapBoth(18970, SHORT)
        await self.killGateway()
        await self.pastLifetime()
        self.assertEqual(self.lab.mapElements(), {})
        await self.assertClosed("tcp", 18970)
        await self.assertClosed("udp", 18970)
        self.assertEqual(await tcpFlow.exchange(), LAN1)
        self.assertEqual(await udpFlow.exchange(), LAN1)
        gateway = await self.startGateway()
        # Its two flows (the refused probes' entries are not DNATed).
        await waitUntil(
            lambda: "cut 2 flow(s)" in gateway.output(), "the flows cut", 5.0, 0.05
        )
        self.assertEqual(await tcpFlow.exchange(), CLOSED)
        self.assertEqual(await udpFlow.exchange(), REFUSED)
        await self.mapBoth(18970, 600, lan=1)
        await self.assertForwards("tcp", 18970, LAN2)
        await self.assertForwards("udp", 18970, LAN2)
