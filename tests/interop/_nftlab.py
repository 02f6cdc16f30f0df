"""
A trial base class for the tests of our gateway's nftables backend
(C{tests.interop.test_nftables}): a forwarding lab (L{buildForwardingLab})
with a host firewall on the router, echo servers on both LAN hosts, and
the clients that ask for mappings: libnatpmp's natpmpc, py-natpmp and our
own.
"""

from __future__ import annotations

import json
import signal
from signal import SIGTERM

from twisted.trial.unittest import TestCase

from tools.netlab.echo import TCPFlow, UDPFlow
from twisted_natpmp.natpmp.client import NATPMPClient

from ._forwarding import REFUSED, ForwardingLab, Outcome, buildForwardingLab, fromWAN
from ._lab import ROUTER_LAN, ROUTER_WAN, Completed, Daemon, sleep, waitUntil
from .test_client import clientOn

#: The ports the echo servers listen on, TCP and UDP, on both LAN hosts.
ECHO_PORTS = (8080, 8081, 8082)
#: A lifetime short enough to wait for in a test, in seconds.
SHORT = 4
#: How long after a lifetime ends a mapping must be gone: the gateway's
#: timer, the kernel's element timeout and a loaded machine all fit.
MARGIN = 2.5

_PY_NATPMP = """\
import json, sys, natpmp
transport = {"udp": natpmp.NATPMP_PROTOCOL_UDP, "tcp": natpmp.NATPMP_PROTOCOL_TCP}
proto, public, private, lifetime = sys.argv[1], *map(int, sys.argv[2:5])
reply = natpmp.map_port(transport[proto], public, private, lifetime,
                        gateway_ip=sys.argv[5], retry=4)
print(json.dumps({"result": reply.result, "public": reply.public_port,
                  "private": reply.private_port, "lifetime": reply.lifetime}))
"""


class NftGatewayTestCase(TestCase):
    """
    A forwarding lab whose router has a host firewall (L{acceptDNAT} says
    whether it accepts DNATed flows itself) and whose LAN hosts run echo
    servers on L{ECHO_PORTS}; L{startGateway} starts our gateway with its
    nftables backend.
    """

    #: Whether the host firewall accepts DNATed flows (C{ct status dnat}).
    acceptDNAT = True

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab: ForwardingLab = buildForwardingLab(self)
        self.lab.addHostFirewall(acceptDNAT=self.acceptDNAT)
        for lan in (0, 1):
            self.lab.echo(lan).listen(tcp=ECHO_PORTS, udp=ECHO_PORTS)
        self.gateway: Daemon | None = None

    async def startGateway(self, *options: str, **kwargs: str) -> Daemon:
        """
        Start our gateway with its nftables backend (and C{options}), with
        the per-source rate limit off (the tests ask in bursts).
        """
        self.gateway = await self.lab.startNftGateway(
            "--rate-limit=0", *options, **kwargs
        )
        return self.gateway

    async def stopGateway(self) -> None:
        """
        Stop the gateway with SIGTERM; it must shut down cleanly (twistd
        ends itself with the signal once it has; no traceback on the way).
        """
        assert self.gateway is not None
        await self.gateway.stop()
        output = self.gateway.output()
        self.assertIn(
            (self.gateway.code, self.gateway.endedBy), [(0, None), (None, SIGTERM)]
        )
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)

    async def killGateway(self) -> None:
        """
        Kill the gateway with SIGKILL: it cleans nothing up.
        """
        assert self.gateway is not None
        self.gateway.signal(signal.SIGKILL)
        self.assertTrue(await self.gateway.waitEnded(5.0))

    def assertGatewayRuns(self) -> None:
        assert self.gateway is not None
        self.assertFalse(
            self.gateway.ended,
            f"the gateway exited {self.gateway.code}:\n{self.gateway.output()}",
        )

    # The clients

    async def natpmpc(self, lan: int, *args: str) -> Completed:
        """
        Run natpmpc from LAN host C{lan}; it must exit 0.
        """
        done = await self.lab.run(
            self.lab.lans[lan], ["natpmpc", "-g", ROUTER_LAN, *args]
        )
        self.assertEqual(done.code, 0, done.describe())
        return done

    async def pyNatpmp(
        self, lan: int, transport: str, external: int, internal: int, lifetime: int
    ) -> dict[str, int]:
        """
        Map (or, with lifetime 0, delete) with py-natpmp from LAN host
        C{lan}; return its reply's result, public and private port and
        lifetime.
        """
        done = await self.lab.run(
            self.lab.lans[lan],
            self.lab.python(
                "-c",
                _PY_NATPMP,
                transport,
                str(external),
                str(internal),
                str(lifetime),
                ROUTER_LAN,
            ),
        )
        self.assertEqual(done.code, 0, done.describe())
        reply: dict[str, int] = json.loads(done.out)
        return reply

    def client(self, lan: int = 0) -> NATPMPClient:
        """
        Our NAT-PMP client on LAN host C{lan}.
        """
        return clientOn(self, self.lab, lan)

    # What the WAN host reaches

    async def reach(
        self,
        transport: str,
        port: int,
        address: str = ROUTER_WAN,
        timeout: float = 2.0,
    ) -> Outcome:
        """
        Who answers a new connection from the WAN host to C{address}:C{port}
        within C{timeout} seconds.
        """
        return await fromWAN(self.lab, transport, port, timeout, address)

    async def assertForwards(self, transport: str, port: int, lan: str) -> None:
        """
        A new C{transport} connection from the WAN host to external port
        C{port} reaches the echo server of LAN host C{lan} (its address).
        """
        self.assertEqual(await self.reach(transport, port), lan, (transport, port))

    async def assertClosed(self, transport: str, port: int) -> None:
        """
        A new C{transport} connection from the WAN host to external port
        C{port} is refused: nothing forwards it, so it reaches the router's
        own stack, where nothing listens.
        """
        self.assertEqual(await self.reach(transport, port), REFUSED, (transport, port))

    async def openFlows(self, port: int, lan: str) -> tuple[TCPFlow, UDPFlow]:
        """
        An established TCP flow and an established UDP flow from the WAN host
        to external port C{port}, each answered once by LAN host C{lan}'s
        echo server, each closed at the test's end.
        """
        tcpFlow, outcome = await TCPFlow.open(self.lab.wan, ROUTER_WAN, port)
        self.addCleanup(tcpFlow.close)
        self.assertEqual(outcome, lan)
        udpFlow = UDPFlow.open(self.lab.wan, ROUTER_WAN, port)
        self.addCleanup(udpFlow.close)
        self.assertEqual(await udpFlow.exchange(), lan)
        return tcpFlow, udpFlow

    async def flowsCut(self, transport: str, port: int) -> None:
        """
        Wait (a bounded time) until the router holds no conntrack entry for
        C{transport} flows to external port C{port}.
        """
        await waitUntil(
            lambda: self.lab.conntrack(transport, port) == 0,
            f"no conntrack entries for {transport} {port}",
            3.0,
            0.05,
        )

    async def pastLifetime(self, lifetime: float = SHORT) -> None:
        """
        Wait until C{lifetime} seconds, and L{MARGIN} more, have passed
        since now.
        """
        await sleep(lifetime + MARGIN)
