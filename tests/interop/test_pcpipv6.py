"""
Our PCP client over IPv6 against Debian's miniupnpd: a MAP from a global
address opens an inbound pinhole, and PCP reaches the router at its
link-local address.  The IPv6 addresses are added by the tests themselves
(the lab has none).  (The IPv4 tests are in L{test_pcp}, with the helpers
these share.)
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import NonceStore
from twisted_natpmp.pcp.client import listenPCPClient

from ._lab import buildLab, waitUntil
from .test_pcp import nonceFile

TCP, UDP = Transport.TCP, Transport.UDP


#: The lab's IPv6 addresses, added by L{IPv6PinholeTests} itself (the lab
#: has none): the LAN on the bridge, the WAN on wan0.
ROUTER_LAN6 = "2001:db8:77::1"
LAN_HOST6 = "2001:db8:77::2"
ROUTER_WAN6 = "2001:db8:3::1"

_CHAINS6 = """\
*filter
:MINIUPNPD - [0:0]
-A FORWARD -i wan0 ! -o wan0 -j MINIUPNPD
COMMIT
"""


class IPv6PinholeTests(TestCase):
    """
    PCP over IPv6 to miniupnpd: a MAP from a global address opens an
    inbound pinhole for it (RFC 6887 s11: the external address is the
    internal one), seen as an C{ip6tables} rule in miniupnpd's chain.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        lab = self.lab
        for namespace, commands in (
            (
                lab.router,
                [
                    [
                        "ip",
                        "-6",
                        "address",
                        "add",
                        f"{ROUTER_LAN6}/64",
                        "dev",
                        "br0",
                        "nodad",
                    ],
                    [
                        "ip",
                        "-6",
                        "address",
                        "add",
                        f"{ROUTER_WAN6}/64",
                        "dev",
                        "wan0",
                        "nodad",
                    ],
                    ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
                ],
            ),
            (
                lab.lans[0],
                [
                    [
                        "ip",
                        "-6",
                        "address",
                        "add",
                        f"{LAN_HOST6}/64",
                        "dev",
                        "eth0",
                        "nodad",
                    ],
                    ["ip", "-6", "route", "add", "default", "via", ROUTER_LAN6],
                ],
            ),
        ):
            for argv in commands:
                lab.check(namespace, argv)
        lab.check(
            lab.router, ["ip6tables-legacy-restore", "-w", "5", "--noflush"], _CHAINS6
        )
        lab.miniupnpdOptions.append(f"ipv6_listening_ip={ROUTER_LAN6}")
        await lab.startMiniupnpd()

    def pinholes(self) -> str:
        return self.lab.check(
            self.lab.router, ["ip6tables-legacy", "-w", "5", "-S", "MINIUPNPD"]
        )

    async def test_pinhole(self) -> None:
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]),
            ROUTER_LAN6,
            internalAddress=LAN_HOST6,
            nonces=NonceStore(nonceFile(self)),
        )
        self.addCleanup(client.stop)
        mapping = await client.addMapping(TCP, 8443, lifetime=600)
        self.assertEqual(str(mapping.externalAddress), LAN_HOST6)
        self.assertEqual(mapping.externalPort, 8443)
        rules = self.pinholes()
        self.assertIn(LAN_HOST6, rules, rules)
        self.assertIn("8443", rules, rules)
        await client.deleteMapping(TCP, 8443)
        self.assertNotIn("8443", self.pinholes())

    async def test_linkLocalGateway(self) -> None:
        """
        Routers advertise their link-local address as the default IPv6
        gateway: the client reaches it through the interface's scope, bound
        to the global address it opens (so that is the client address).
        """
        lab = self.lab

        def linkLocal() -> str | None:
            shown = lab.check(
                lab.router, ["ip", "-6", "-o", "address", "show", "dev", "br0"]
            )
            for line in shown.splitlines():
                if "scope link" in line and "tentative" not in line:
                    return line.split()[3].split("/")[0]
            return None

        await waitUntil(lambda: linkLocal() is not None, "br0's link-local", 5.0, 0.1)
        gateway = f"{linkLocal()}%eth0"
        client = listenPCPClient(
            lab.reactorIn(lab.lans[0]),
            gateway,
            internalAddress=LAN_HOST6,
            nonces=NonceStore(nonceFile(self)),
        )
        self.addCleanup(client.stop)
        # The IPv6 socket on every address of the router, so on the
        # link-local one too (setUp bound it to the global address).
        lab.miniupnpdOptions.remove(f"ipv6_listening_ip={ROUTER_LAN6}")
        await lab.restartMiniupnpd()
        mapping = await client.addMapping(TCP, 8444, lifetime=600)
        self.assertEqual(str(mapping.externalAddress), LAN_HOST6)
        self.assertIn("8444", self.pinholes())
        await client.deleteMapping(TCP, 8444)
