"""
The mapper service against faults of the real miniupnpd and of the
network: a gateway that is down at start, one that dies and comes back
without its rules, a LAN link down for longer than the lifetime, SIGTERM
while the gateway is dead, and the default route moving to a second
gateway.

Every outcome is bounded: the issue's "within a second or two" and
"within 6 s" are the waits' limits, measured from the moment the lab
restores what it broke.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.service import (
    HEALTH_INTERVAL,
    STOP_DEADLINE,
    MappingDeclaration,
    PortMapperService,
)

from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    SECOND_GATEWAY,
    Daemon,
    LabError,
    buildLab,
    sleep,
    waitUntil,
)
from .test_client import reactor
from .test_service import startService

TCP, UDP = Transport.TCP, Transport.UDP

#: RFC 6886 s3.7: after a gateway restart clients re-map after a random
#: 0-5 s hold-off; the issue allows 6 s from the gateway's return.
RESTORE_WINDOW = 6.0
#: "Mapped within a second or two of the gateway starting."
START_WINDOW = 2.0


def expectedRules(
    declarations: Sequence[MappingDeclaration],
) -> dict[tuple[str, int], int | None]:
    return {
        (d.protocol.label.upper(), d.internalPort): d.externalPort for d in declarations
    }


class FaultTests(TestCase):
    """
    The mapper service, in the trial process with its sockets on LAN host
    1 and its default settings unless a test says otherwise, against
    miniupnpd.
    """

    def setUp(self) -> None:
        self.lab = buildLab(self)
        self.declarations = [
            MappingDeclaration(TCP, 9400, 19400, lifetime=600),
            MappingDeclaration(UDP, 9401, 19401, lifetime=600),
        ]

    def startService(
        self, healthInterval: float = HEALTH_INTERVAL, **options: Any
    ) -> PortMapperService:
        # The service's own health checks, unlike test_service's default.
        # These faults test NAT-PMP's recovery (RFC 6886 s3.6-3.7: the epoch,
        # the lifetimes asked for, which miniupnpd's PCP would raise to its
        # 120 s minimum), so the service speaks NAT-PMP.
        options.setdefault("protocol", "natpmp")
        return startService(
            self, self.lab, self.declarations, healthInterval, **options
        )

    def mappedOnRouter(self) -> bool:
        return self.lab.rulesFor(LAN_HOSTS[0]) == expectedRules(self.declarations)

    async def waitMapped(self, what: str, within: float) -> float:
        """
        Wait for every declaration's rule on the router, and fail unless
        they came within C{within} seconds (waiting a little longer, to say
        how long they did take); return how long it took.
        """
        started = reactor().seconds()
        try:
            await waitUntil(self.mappedOnRouter, what, within + 10.0, 0.05)
        except LabError:
            self.fail(f"{what}: not within {within + 10.0:g} s")
        took = float(reactor().seconds() - started)
        self.assertLessEqual(took, within, f"{what}: took {took:.2f} s")
        return took

    async def test_gatewayDownAtStart(self) -> None:
        """
        The gateway is down when the service starts (its port refuses: ICMP
        port unreachable); once it starts, everything is mapped within a
        second or two.
        """
        self.startService()
        await sleep(4.0)
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[0]), {})
        await self.lab.startMiniupnpd()
        await self.waitMapped("mapped after the gateway started", START_WINDOW)

    async def test_gatewayDiesAndReturns(self) -> None:
        """
        The gateway is killed and its rules flushed (a power loss); it stays
        down 20 s, then comes back: everything is mapped again within 6 s of
        its return (RFC 6886 s3.7: it announces itself, clients re-map).

        The issue's outage is 60 s; 20 s with a health check every 5 s
        (not 60) proves the same or more: the service meets as many failed
        checks and retries (four) as a 60 s outage would bring it at the
        default interval, so its backoff is as deep when the gateway
        returns, and the recovery still has to come from the gateway's
        return, not from a check that happens to fall right after it.
        """
        await self.lab.startMiniupnpd()
        self.startService(healthInterval=5.0)
        await self.waitMapped("mapped at first", 10.0)
        await self.lab.killMiniupnpd()
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[0]), {})
        await sleep(20.0)
        await self.lab.startMiniupnpd()
        await self.waitMapped("restored after the gateway came back", RESTORE_WINDOW)

    async def test_linkDownLongerThanLifetime(self) -> None:
        """
        The LAN link is down for longer than the mappings' lifetime (the
        router expires them meanwhile); within 6 s of link-up they are back.
        """
        lifetime = 12
        self.declarations = [
            MappingDeclaration(TCP, 9410, 19410, lifetime=lifetime),
            MappingDeclaration(UDP, 9411, 19411, lifetime=lifetime),
        ]
        await self.lab.startMiniupnpd()
        self.startService()
        await self.waitMapped("mapped at first", 10.0)
        self.lab.setLanLink(0, up=False)
        self.addCleanup(self.lab.setLanLink, 0, True)
        await waitUntil(
            lambda: self.lab.rulesFor(LAN_HOSTS[0]) == {},
            "the router expiring the mappings while the link is down",
            lifetime + 10.0,
            0.2,
        )
        await sleep(2.0)
        self.lab.setLanLink(0, up=True)
        await self.waitMapped("restored after link-up", RESTORE_WINDOW)

    async def test_defaultRouteMoves(self) -> None:
        """
        The service follows the default gateway; when the default route
        moves to a second gateway (ours, on the same LAN), it maps there and
        deletes its mappings at the old one, which is still reachable
        (issue 10 item 8).
        """
        await self.lab.startMiniupnpd()
        second = self.lab.addSecondGateway()
        gateway2 = self.lab.spawn(
            second,
            self.lab.twistd(
                "natpmp-gateway",
                "--listen",
                f"{SECOND_GATEWAY}/24",
                "--external-address",
                "192.0.3.1",
            ),
            "natpmp-gateway-2",
        )
        await self.lab.waitListening(gateway2, 5351)
        lan = self.lab.lans[0]

        def defaultGateway() -> IPv4Address:
            out = self.lab.check(lan, ["ip", "route", "show", "default"])
            match = re.search(r"default via ([\d.]+)", out)
            assert match is not None, out
            return IPv4Address(match.group(1))

        self.startService(
            gateway=None, discoverGateway=defaultGateway, gatewayCheckInterval=1.0
        )
        await self.waitMapped("mapped at the first gateway", 10.0)
        self.lab.setDefaultRoute(0, SECOND_GATEWAY)

        def movedOver() -> bool:
            created = gateway2.output().count(f"-> {LAN_HOSTS[0]}:")
            return created >= len(self.declarations) and not self.lab.rulesFor(
                LAN_HOSTS[0]
            )

        await waitUntil(
            movedOver, "mapped at the second gateway, deleted at the first", 10.0
        )
        for d in self.declarations:
            self.assertRegex(
                gateway2.output(),
                rf"mapping created: {d.protocol.label} external port \d+"
                rf" -> {LAN_HOSTS[0]}:{d.internalPort}\b",
            )


class StopTests(TestCase):
    """
    C{twistd natpmp} stopped (SIGTERM) while its gateway is dead.
    """

    async def test_sigtermWhileGatewayDead(self) -> None:
        """
        The gateway dies (killed, and its box silent: nothing answers, not
        even ICMP); SIGTERM then ends C{twistd natpmp} within its stop
        deadline, and its log names each mapping it left.
        """
        lab = buildLab(self)
        await lab.startMiniupnpd()
        maps = {("TCP", 9420): 19420, ("UDP", 9421): 19421}
        argv = ["natpmp", "--gateway", ROUTER_LAN, "--health-interval", "600"]
        for (protocol, port), external in maps.items():
            argv += ["--map", f"{protocol.lower()}:{port}:{external}"]
        daemon: Daemon = lab.spawn(lab.lans[0], lab.twistd(*argv), "twistd-natpmp")
        await waitUntil(lambda: lab.rulesFor(LAN_HOSTS[0]) == maps, "mapped", 15.0, 0.1)
        # The rules are on the router a moment before the replies reach the
        # service and its log: wait for both grants' lines, briefly.
        await waitUntil(
            lambda: all(
                f"{ROUTER_WAN}:{external}" in daemon.output()
                for external in maps.values()
            ),
            "both grants in twistd natpmp's log",
            5.0,
        )
        assert lab.miniupnpd is not None
        lab.miniupnpd.signal(signal.SIGKILL)
        lab.firewall(lab.router, "-I INPUT -p udp --dport 5351 -j DROP")
        started = reactor().seconds()
        daemon.signal(signal.SIGTERM)
        # The deadline, and a second for the process to wind down.
        ended = await daemon.waitEnded(STOP_DEADLINE + 1.0)
        took = reactor().seconds() - started
        self.assertTrue(ended, f"still running after {took:.1f} s:\n{daemon.output()}")
        output = daemon.output()
        left = [line for line in output.splitlines() if "left" in line]
        self.assertEqual(len(left), 1, output)
        for protocol, port in maps:
            self.assertIn(f"{protocol.lower()}:{port}", left[0])
        self.assertIn("left 2 mapping", left[0])
