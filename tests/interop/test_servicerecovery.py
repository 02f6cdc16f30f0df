"""
The mapper service against other gateways and as C{twistd -n natpmp}: our
own gateway restarting, a gateway that never answers, a router that comes
up after the service, and the command a user runs, against miniupnpd.
(The in-process tests against miniupnpd are in L{test_service}, with the
helpers these share.)
"""

from __future__ import annotations

import signal
from ipaddress import IPv4Address

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.service import MappingDeclaration, PortMapperService

from ._lab import (
    LAN_HOSTS,
    NOBODY,
    ROUTER_LAN,
    ROUTER_WAN,
    Daemon,
    buildLab,
    sleep,
    waitUntil,
)
from .test_client import reactor
from .test_service import (
    NO_HEALTH_CHECK,
    RECOVERY_WINDOW,
    allMapped,
    logLines,
    startService,
)

TCP, UDP = Transport.TCP, Transport.UDP


class ServiceAgainstOurGatewayTests(TestCase):
    """
    The mapper service against our own gateway (C{twistd natpmp-gateway}),
    which announces itself when it starts (RFC 6886 s3.2.1).
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)

    async def test_remapsAfterGatewayRestart(self) -> None:
        """
        When our gateway restarts (its table lost, its epoch back at 0) its
        announcements reach the service, which re-creates its mapping on
        the new gateway within 6 s.  The first gateway runs for 3 s, so that
        the restart is a loss of state by the RFC 6886 s3.6 rule.
        """
        gateway = await self.lab.startOurGateway()
        service = startService(self, self.lab, [MappingDeclaration(TCP, 9950, 19950)])
        await waitUntil(lambda: allMapped(service), "mapped", 5.0)
        await sleep(3.0)
        await gateway.stop()
        restarted = await self.lab.startOurGateway()
        created = f"-> {LAN_HOSTS[0]}:9950"
        await waitUntil(
            lambda: created in restarted.output(),
            "the mapping on the restarted gateway",
            RECOVERY_WINDOW,
            0.1,
        )
        self.assertEqual(service.state(TCP, 9950).externalPort, 19950)

    async def test_doubleNATIsReported(self) -> None:
        """
        A gateway whose external address is itself private (here shared
        address space, 100.64/10) puts the host behind a second NAT: the
        service says so in each mapping's state.
        """
        await self.lab.startOurGateway(external="100.64.7.7")
        service = startService(self, self.lab, [MappingDeclaration(UDP, 9960)])
        await waitUntil(lambda: allMapped(service), "mapped", 5.0)
        await waitUntil(
            lambda: service.state(UDP, 9960).doubleNAT, "double NAT reported", 5.0
        )
        self.assertTrue(service.doubleNAT)
        self.assertEqual(service.externalAddress, IPv4Address("100.64.7.7"))


class SilentGatewayTests(TestCase):
    """
    The service pointed at an address on the LAN where nothing answers.
    """

    async def test_warnedWithinSeconds(self) -> None:
        """
        Issue 10, item 11: against a gateway that never answers, a person
        reads one clear warning within a few seconds (not after the 128 s
        of the first request's retransmissions), and no reminder soon after.
        """
        lab = buildLab(self)
        lines = logLines(self)
        started = reactor().seconds()
        service = PortMapperService(
            lab.reactorIn(lab.lans[0]),
            [MappingDeclaration(TCP, 9670)],
            gateway=NOBODY,
            healthInterval=NO_HEALTH_CHECK,
            nonces=MemoryNonceStore(),
        )
        service.startService()
        self.addCleanup(service.stopService)
        warning = f"no answer from gateway {NOBODY} yet; still trying"
        await waitUntil(lambda: warning in lines, "the warning", 5.0, 0.1)
        self.assertLess(reactor().seconds() - started, 5.0)
        await sleep(3.0)
        self.assertEqual(
            [line for line in lines if f"gateway {NOBODY}" in line and "still" in line],
            [warning],
        )
        self.assertFalse(service.state(TCP, 9670).mapped)


class ServiceBeforeRouterTests(TestCase):
    """
    The service started while the router runs no NAT-PMP server yet.
    """

    async def test_mapsOnceRouterComesUp(self) -> None:
        """
        While the router has no NAT-PMP server its port 5351 answers ICMP
        port unreachable and the declaration fails; the service never
        forgets it (issue 4: retried with backoff, and re-mapped when the
        router announces itself), so within a few seconds of miniupnpd
        starting the port is mapped.
        """
        lab = buildLab(self)
        service = startService(self, lab, [MappingDeclaration(TCP, 9900)])
        await waitUntil(
            lambda: service.state(TCP, 9900).error is not None, "a failure", 5.0
        )
        self.assertFalse(service.state(TCP, 9900).mapped)
        await lab.startMiniupnpd()
        await waitUntil(
            lambda: service.state(TCP, 9900).mapped,
            "the mapping once miniupnpd runs",
            RECOVERY_WINDOW + 3.0,
            0.1,
        )
        self.assertEqual(lab.rules(TCP), {9900: (LAN_HOSTS[0], 9900)})


class TwistdNatpmpTests(TestCase):
    """
    C{twistd -n natpmp --gateway ROUTER --map ...} on LAN host 1.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()

    def startTwistd(self, *maps: str) -> Daemon:
        args = ["natpmp", "--gateway", ROUTER_LAN]
        args += ["--health-interval", str(NO_HEALTH_CHECK)]
        for spec in maps:
            args += ["--map", spec]
        return self.lab.spawn(self.lab.lans[0], self.lab.twistd(*args), "twistd-natpmp")

    async def waitForRules(self, daemon: Daemon, timeout: float) -> None:
        def mapped() -> bool:
            if daemon.ended:
                raise AssertionError(
                    f"twistd natpmp exited {daemon.code}:\n{daemon.output()}"
                )
            return bool(self.lab.rules(TCP) and self.lab.rules(UDP))

        await waitUntil(mapped, "twistd natpmp's mappings on the router", timeout, 0.1)

    async def test_mapsRecoversAndCleansUp(self) -> None:
        """
        C{twistd natpmp} maps its C{--map} ports; after miniupnpd restarts
        they are back within 6 s (its announcement, then the RFC 6886 s3.7
        hold-off); on SIGTERM it deletes them before exiting, and the
        router holds none of its rules.
        """
        daemon = self.startTwistd("tcp:9800:19800", "udp:9801")
        await self.waitForRules(daemon, 15.0)
        expected = (
            {19800: (LAN_HOSTS[0], 9800)},
            {9801: (LAN_HOSTS[0], 9801)},
        )
        self.assertEqual((self.lab.rules(TCP), self.lab.rules(UDP)), expected)
        # The rule is on the router a moment before the reply reaches the
        # service and its log: wait for the line, briefly.
        await waitUntil(
            lambda: f"{ROUTER_WAN}:19800" in daemon.output(),
            "the granted address and port in twistd natpmp's log",
            5.0,
        )

        await self.lab.restartMiniupnpd()
        # The lab checked its flush before miniupnpd started again; the rules
        # are not looked at here: the service may have re-mapped already (its
        # RFC 6886 s3.7 hold-off may be 0 s).
        await self.waitForRules(daemon, RECOVERY_WINDOW)
        self.assertEqual((self.lab.rules(TCP), self.lab.rules(UDP)), expected)

        daemon.signal(signal.SIGTERM)
        ended = await daemon.waitEnded(10.0)
        self.assertTrue(ended, f"twistd natpmp still runs:\n{daemon.output()}")
        # twistd exits 0, or (Twisted >= 20.3) re-raises the SIGTERM it got.
        self.assertIn(
            (daemon.code, daemon.endedBy), [(0, None), (None, signal.SIGTERM)]
        )
        self.assertEqual((self.lab.rules(TCP), self.lab.rules(UDP)), ({}, {}))
