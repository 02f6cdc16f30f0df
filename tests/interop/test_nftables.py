"""
Our gateway as a router daemon: C{twistd natpmp-gateway --backend nftables}
in the router namespace writes real forwarding rules, and a WAN host's TCP
and UDP connections to the external address reach echo servers on the LAN
hosts, for mappings made by libnatpmp's natpmpc, by py-natpmp and by our
own client; deleted and expired mappings stop forwarding and cut their
established flows; a gateway killed with SIGKILL stops forwarding when its
lifetimes end; a clean stop leaves nothing of ours in the ruleset.

Two host firewalls on the router, each a forward chain whose policy is
drop: one that accepts DNATed flows itself (C{ct status dnat accept}, as
OpenWrt's fw4 does), and one that does not, which our gateway's
C{--forward-chain} reaches.

Needs Debian's C{nftables} and C{conntrack} besides the lab's own
prerequisites (L{tests.interop}); the harness is proven first by
C{tests.interop.test_forwardlab}.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address

from twisted.internet.defer import Deferred

from tools.netlab.echo import EchoServers
from tools.netlab.forwarding import GATEWAY_TABLE, HOST_FORWARD_CHAIN, HOST_TABLE
from twisted_natpmp import Transport
from twisted_natpmp.errors import NetworkFailureError

from ._forwarding import CLOSED, REFUSED, SILENT
from ._lab import LAN_HOSTS, ROUTER_WAN, Completed, Inbox, sleep, waitUntil
from ._nftlab import SHORT, NftGatewayTestCase

TCP, UDP = Transport.TCP, Transport.UDP
LAN1, LAN2 = LAN_HOSTS


class ForwardingTests(NftGatewayTestCase):
    """
    Behind a host firewall that accepts DNATed flows, our gateway forwards
    exactly what it grants, for as long as it grants it.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        await self.startGateway()

    async def test_natpmpcMapsForwardsAndDeletes(self) -> None:
        """
        natpmpc's TCP and UDP mappings are one map element each, with the
        granted lifetime as its timeout, and the WAN host reaches the LAN
        host through them; natpmpc's delete of the TCP one (C{-a PUBLIC
        PRIVATE tcp 0}) removes its element, refuses new TCP connections and
        cuts the established one, and leaves UDP forwarding until that is
        deleted too.
        """
        done = await self.natpmpc(0, "-a", "18000", "8080", "tcp", "600")
        self.assertRegex(done.out, r"Mapped public port 18000 protocol TCP")
        done = await self.natpmpc(0, "-a", "18000", "8080", "udp", "600")
        self.assertRegex(done.out, r"Mapped public port 18000 protocol UDP")
        elements = self.lab.mapElements()
        self.assertEqual(set(elements), {("tcp", 18000), ("udp", 18000)})
        for element in elements.values():
            self.assertEqual((element.address, element.port), (LAN1, 8080))
            self.assertEqual(element.timeout, 600)
        await self.assertForwards("tcp", 18000, LAN1)
        await self.assertForwards("udp", 18000, LAN1)
        tcpFlow, udpFlow = await self.openFlows(18000, LAN1)

        await self.natpmpc(0, "-a", "18000", "8080", "tcp", "0")
        self.assertEqual(set(self.lab.mapElements()), {("udp", 18000)})
        await self.flowsCut("tcp", 18000)
        self.assertEqual(await self.reach("tcp", 18000), REFUSED)
        self.assertEqual(await tcpFlow.exchange(), CLOSED)
        self.assertEqual(await udpFlow.exchange(), LAN1)

        await self.natpmpc(0, "-a", "18000", "8080", "udp", "0")
        self.assertEqual(self.lab.mapElements(), {})
        await self.flowsCut("udp", 18000)
        self.assertEqual(await self.reach("udp", 18000), REFUSED)
        self.assertEqual(await udpFlow.exchange(), REFUSED)
        self.assertGatewayRuns()

    async def test_pyNatpmpAndOurClient(self) -> None:
        """
        Mappings made by py-natpmp (TCP and UDP, first LAN host) and one made
        by our client (TCP, second LAN host) each forward to the host that
        asked; each one's deletion closes only its own port.
        """
        for transport in ("tcp", "udp"):
            reply = await self.pyNatpmp(0, transport, 18100, 8081, 600)
            self.assertEqual((reply["result"], reply["public"]), (0, 18100), reply)
        client = self.client(1)
        mapping = await client.addMapping(TCP, 8082, externalPort=18101, lifetime=600)
        self.assertEqual(mapping.externalPort, 18101)
        await self.assertForwards("tcp", 18100, LAN1)
        await self.assertForwards("udp", 18100, LAN1)
        await self.assertForwards("tcp", 18101, LAN2)

        await client.deleteMapping(TCP, 8082)
        await self.assertClosed("tcp", 18101)
        await self.assertForwards("tcp", 18100, LAN1)
        await self.assertForwards("udp", 18100, LAN1)
        for transport, other in (("tcp", "udp"), ("udp", None)):
            reply = await self.pyNatpmp(0, transport, 0, 8081, 0)
            self.assertEqual(reply["result"], 0, reply)
            await self.assertClosed(transport, 18100)
            if other is not None:
                await self.assertForwards(other, 18100, LAN1)
        self.assertEqual(self.lab.mapElements(), {})

    async def test_hostsCannotTakeEachOthersPorts(self) -> None:
        """
        The second LAN host asking for the first one's external port gets
        another, over TCP and over UDP; each external port reaches its own
        host; the second host's deletes and delete-alls of "the same"
        internal port leave the first host's mappings forwarding to it.
        """
        ours, other = self.client(0), self.client(1)
        theirs = {}
        for transport in (TCP, UDP):
            mine = await ours.addMapping(transport, 8080, externalPort=18200)
            self.assertEqual(mine.externalPort, 18200)
            taken = await other.addMapping(transport, 8080, externalPort=18200)
            self.assertNotEqual(taken.externalPort, 18200)
            theirs[transport.value] = taken.externalPort
        for name, port in theirs.items():
            await self.assertForwards(name, 18200, LAN1)
            await self.assertForwards(name, port, LAN2)

        await other.deleteMapping(TCP, 8080)
        await other.deleteMapping(UDP, 8080)
        await self.natpmpc(1, "-a", "0", "0", "tcp", "0")
        await self.natpmpc(1, "-a", "0", "0", "udp", "0")
        self.assertEqual(set(self.lab.mapElements()), {("tcp", 18200), ("udp", 18200)})
        for name, port in theirs.items():
            await self.assertForwards(name, 18200, LAN1)
            await self.assertClosed(name, port)

    async def test_expiryClosesAndRenewalKeeps(self) -> None:
        """
        A mapping whose renewal shortens its lifetime to a few seconds (its
        element's timeout written again) forwards before that lifetime
        and, once it and a margin have passed, refuses new connections and
        has cut its established ones; a short mapping renewed within its
        lifetime for longer still forwards then.  (The flows are opened
        under a long lifetime, so that a loaded machine cannot let the
        short one end first.)
        """
        await self.natpmpc(0, "-a", "18400", "8080", "tcp", "600")
        await self.natpmpc(0, "-a", "18400", "8080", "udp", "600")
        tcpFlow, udpFlow = await self.openFlows(18400, LAN1)
        await self.natpmpc(1, "-a", "18401", "8081", "udp", str(SHORT))
        self.assertEqual(self.lab.mapElements()[("udp", 18401)].timeout, SHORT)
        await self.natpmpc(1, "-a", "18401", "8081", "udp", "600")
        self.assertEqual(self.lab.mapElements()[("udp", 18401)].timeout, 600)
        await self.natpmpc(0, "-a", "18400", "8080", "tcp", str(SHORT))
        await self.natpmpc(0, "-a", "18400", "8080", "udp", str(SHORT))
        elements = self.lab.mapElements()
        self.assertEqual(elements[("tcp", 18400)].timeout, SHORT)
        self.assertEqual(elements[("udp", 18400)].timeout, SHORT)

        await self.pastLifetime()
        self.assertEqual(set(self.lab.mapElements()), {("udp", 18401)})
        await self.flowsCut("tcp", 18400)
        await self.flowsCut("udp", 18400)
        self.assertEqual(await self.reach("tcp", 18400), REFUSED)
        self.assertEqual(await self.reach("udp", 18400), REFUSED)
        self.assertEqual(await tcpFlow.exchange(), CLOSED)
        self.assertEqual(await udpFlow.exchange(), REFUSED)
        await self.assertForwards("udp", 18401, LAN2)
        self.assertGatewayRuns()

    async def test_sigkillThenRestart(self) -> None:
        """
        After SIGKILL the gateway's mappings keep forwarding until their
        lifetime ends, and no longer once it and a margin have passed (the
        kernel expires the elements by itself), while a longer one still
        does.  A gateway started again creates its table afresh (one table,
        no elements: the longer mapping closes; the epoch starts again at 0,
        RFC 6886 s3.6) and forwards what it grants.
        """
        await self.natpmpc(1, "-a", "18501", "8081", "udp", "600")
        await self.natpmpc(0, "-a", "18500", "8080", "tcp", str(SHORT))
        await self.natpmpc(0, "-a", "18500", "8080", "udp", str(SHORT))
        await self.killGateway()
        await self.assertForwards("tcp", 18500, LAN1)
        await self.assertForwards("udp", 18500, LAN1)
        await self.pastLifetime()
        self.assertEqual(set(self.lab.mapElements()), {("udp", 18501)})
        await self.assertClosed("tcp", 18500)
        await self.assertClosed("udp", 18500)
        await self.assertForwards("udp", 18501, LAN2)

        await self.startGateway()
        self.assertEqual(self.lab.mapElements(), {})
        await self.assertClosed("udp", 18501)
        self.assertLess(_epoch(await self.natpmpc(0)), 10)
        await self.natpmpc(0, "-a", "18502", "8081", "udp", "600")
        await self.assertForwards("udp", 18502, LAN1)
        tables = [t for t in self.lab.tables() if t[1] == GATEWAY_TABLE]
        self.assertEqual(tables, [("inet", GATEWAY_TABLE)])

    async def test_cleanStopLeavesNothing(self) -> None:
        """
        After SIGTERM the gateway's table is gone from the ruleset, the host
        firewall's table is exactly as it was, and nothing it granted
        forwards.
        """
        before = self.lab.ofTable(HOST_TABLE)
        await self.client(0).addMapping(UDP, 8080, externalPort=18600)
        await self.assertForwards("udp", 18600, LAN1)
        await self.stopGateway()
        self.assertEqual(self.lab.tables(), {("inet", HOST_TABLE)})
        self.assertEqual(self.lab.ofTable(HOST_TABLE), before)
        await self.assertClosed("udp", 18600)


class RouterSideTests(NftGatewayTestCase):
    """
    The router's own side: the external address comes from the external
    interface and is followed when it changes; the router's own ports are
    never granted.
    """

    async def test_routerPortsNeverGranted(self) -> None:
        """
        Ports the router itself listens on (on every address, so on its
        external one too), open before the gateway starts, are never
        granted: the client asking for them gets other ports, and
        connections to them still reach the router's own programs.
        """
        router = EchoServers(self.lab.router, ROUTER_WAN)
        router.listen(tcp=(18300,), udp=(18301,))
        self.addCleanup(lambda: Deferred.fromCoroutine(router.stop()))
        await self.startGateway()
        client = self.client(0)
        tcp = await client.addMapping(TCP, 8080, externalPort=18300)
        udp = await client.addMapping(UDP, 8080, externalPort=18301)
        self.assertNotEqual(tcp.externalPort, 18300)
        self.assertNotEqual(udp.externalPort, 18301)
        self.assertEqual(await self.reach("tcp", 18300), ROUTER_WAN)
        self.assertEqual(await self.reach("udp", 18301), ROUTER_WAN)
        await self.assertForwards("tcp", tcp.externalPort, LAN1)
        await self.assertForwards("udp", udp.externalPort, LAN1)

    async def test_followsInterface(self) -> None:
        """
        Without C{--external-address} the gateway reports the WAN
        interface's address; while the interface has none it answers result
        3 (network failure, RFC 6886 s3.2); given a new one it announces it
        to 224.0.0.1:5350 (s3.2.1), reports it with an epoch that has gone
        back (reset, s3.6), and forwards from it.
        """
        inbox = Inbox()
        heard = self.lab.reactorIn(self.lab.lans[1]).listenMulticast(
            5350, inbox, interface="224.0.0.1", listenMultiple=True
        )
        self.addCleanup(heard.stopListening)
        await heard.joinGroup("224.0.0.1")
        await self.startGateway()
        await sleep(EPOCH_AGE)
        done = await self.natpmpc(0)
        self.assertIn(f"Public IP address : {ROUTER_WAN}", done.out, done.describe())
        before = _epoch(done)
        client = self.client(0)
        self.lab.check(self.lab.router, ["ip", "address", "flush", "dev", "wan0"])

        async def refused() -> bool:
            try:
                await client.externalAddress()
            except NetworkFailureError:
                return True
            return False

        await self.until(refused, "result 3 without an address")
        moved = "192.0.3.7"
        self.lab.check(
            self.lab.router, ["ip", "address", "add", f"{moved}/24", "dev", "wan0"]
        )

        async def follows() -> bool:
            try:
                return str(await client.externalAddress()) == moved
            except NetworkFailureError:
                return False

        await self.until(follows, f"external address {moved}")
        self.assertLess(_epoch(await self.natpmpc(0)), before)
        packed = IPv4Address(moved).packed
        await waitUntil(
            lambda: any(
                len(data) == 12
                and data[:4] == b"\x00\x80\x00\x00"
                and data[8:] == packed
                for data, _ in inbox.received
            ),
            f"an announcement of {moved}",
            5.0,
        )
        mapping = await client.addMapping(UDP, 8080, externalPort=18700)
        self.assertEqual(str(mapping.externalAddress), moved)
        self.assertEqual(await self.reach("udp", 18700, address=moved), LAN1)

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """
        Ask C{condition()} every 0.5 s, at most 20 times; fail naming C{what}
        if it never holds.
        """
        for _ in range(20):
            if await condition():
                return
            await sleep(0.5)
        self.fail(f"{what}: not seen within 10 s")


def _epoch(done: Completed) -> int:
    epoch = re.search(r"epoch = (\d+)", done.out)
    assert epoch is not None, done.describe()
    return int(epoch.group(1))


#: How long the gateway runs before its external address changes, in
#: seconds: long enough for an epoch that has gone back to show.
EPOCH_AGE = 3.0


class ForwardChainTests(NftGatewayTestCase):
    """
    Behind a host firewall that drops what it does not accept, and does not
    accept DNATed flows: our gateway's C{--forward-chain} adds an accept
    rule for exactly its mappings into that chain, removed again on stop.
    """

    acceptDNAT = False

    async def test_forwardChain(self) -> None:
        """
        Without C{--forward-chain} a granted mapping is dropped by the host
        chain (silent).  With it (and a table name of our choice), mappings
        forward over TCP and UDP, while a DNAT that is not ours (a
        hand-written table's, silent rather than refused: DNATed, then
        dropped) is still dropped; after SIGTERM the host's table holds
        exactly what it held before (no rule, set or element of ours) and
        our table is gone.
        """
        await self.startGateway()
        await self.client(0).addMapping(TCP, 8080, externalPort=18800)
        self.assertEqual(await self.reach("tcp", 18800, timeout=1.0), SILENT)
        await self.stopGateway()

        before = self.lab.chainRules("inet", HOST_TABLE, "forward")
        host = self.lab.ofTable(HOST_TABLE)
        self.lab.loadRuleset(_OTHER_DNAT)
        await self.startGateway(
            f"--forward-chain={HOST_FORWARD_CHAIN}", table="natpmp_lab"
        )
        self.assertGreater(
            len(self.lab.chainRules("inet", HOST_TABLE, "forward")), len(before)
        )
        client = self.client(0)
        await client.addMapping(TCP, 8080, externalPort=18801)
        await client.addMapping(UDP, 8081, externalPort=18801)
        await self.assertForwards("tcp", 18801, LAN1)
        await self.assertForwards("udp", 18801, LAN1)
        self.assertEqual(await self.reach("tcp", 18802, timeout=1.0), SILENT)

        await self.stopGateway()
        self.assertEqual(self.lab.ofTable(HOST_TABLE), host)
        self.assertEqual(self.lab.tables(), {("inet", HOST_TABLE), ("ip", "other")})
        await self.assertClosed("tcp", 18801)


#: A DNAT of someone else's: TCP 18802 to the first LAN host's port 8082,
#: where none of our mappings goes (an accept rule for our mappings may
#: match on the internal address and port, after DNAT, as miniupnpd's does).
_OTHER_DNAT = f"""\
table ip other {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" tcp dport 18802 dnat to {LAN1}:8082
    }}
}}
"""
