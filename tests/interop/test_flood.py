"""
Floods over real UDP in the lab's namespaces: 100,000 fuzzed packets,
rate-bounded, at our gateway and at a running mapper service (C{twistd
natpmp}); afterwards each still does its job, and its log shows no crash
and stays small.  (The impairment tests are in L{test_reliability}.)

Every flood is bounded in count, rate and time; every wait is bounded.
"""

from __future__ import annotations

import json
import signal

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.service import STOP_DEADLINE

from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    Daemon,
    Lab,
    buildLab,
    sleep,
    waitUntil,
)
from .test_client import reactor
from .test_reliability import (
    FLOOD_PACKETS,
    FLOOD_RATE,
    MAX_FLOOD_LOG,
    SERVICE_MAPS,
    crashes,
    udpPortsConnectedTo,
)

TCP, UDP = Transport.TCP, Transport.UDP


class FloodTests(TestCase):
    """
    100,000 fuzzed packets over real UDP, rate-bounded, at our gateway and
    at a running C{twistd natpmp}; afterwards each still does its job, and
    its log shows no crash and stays small.
    """

    async def flood(
        self,
        lab: Lab,
        *targets: str,
        responses: bool = False,
        seed: int = 1,
        count: int = FLOOD_PACKETS,
    ) -> dict[str, float]:
        """
        Send C{count} mutated packets from LAN host 2, round-robin
        over C{targets} (L{tools.impair.flood.Target.parse} forms), at L{FLOOD_RATE}.
        Mutations that are still whole map requests are left out: each of
        those is a mapping event a gateway rightly logs.
        """
        argv = [
            "flood",
            "--count",
            str(count),
            "--rate",
            str(FLOOD_RATE),
            "--seed",
            str(seed),
            "--max-seconds",
            "40",
            "--no-map-requests",
        ]
        for target in targets:
            argv += ["--to", target]
        if responses:
            argv.append("--responses")
        done = await lab.run(lab.lans[1], lab.impair(*argv), timeout=60.0)
        self.assertEqual(done.code, 0, done.describe())
        counts: dict[str, float] = json.loads(done.out.strip().splitlines()[-1])[
            "flood"
        ]
        self.assertEqual(counts["sent"], count, counts)
        return counts

    def checkLog(self, daemon: Daemon) -> None:
        """
        No crash in C{daemon}'s log, and (checked last, so that a failure
        here hides nothing else) the log stays under L{MAX_FLOOD_LOG}.
        """
        output = daemon.output()
        self.assertEqual(crashes(output), [])
        size = daemon.log.stat().st_size
        self.assertLessEqual(
            size,
            MAX_FLOOD_LOG,
            f"{size} bytes of log; the end:\n{output[-2000:]}",
        )

    async def test_ourGateway(self) -> None:
        """
        Our gateway takes 100,000 fuzzed requests from LAN host 2 and then
        answers natpmpc on LAN host 1 correctly: the external address, a
        mapping, its deletion.
        """
        lab = buildLab(self)
        gateway = await lab.startOurGateway()
        await self.flood(lab, f"{ROUTER_LAN}:5351")
        self.assertFalse(gateway.ended, gateway.output()[-2000:])
        lan = lab.lans[0]
        done = await lab.run(lan, ["natpmpc", "-g", ROUTER_LAN])
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(f"Public IP address : {ROUTER_WAN}", done.out)
        done = await lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "5001", "5000", "udp", "600"]
        )
        self.assertEqual(done.code, 0, done.describe())
        self.assertRegex(done.out, r"Mapped public port 5001 protocol UDP")
        done = await lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "5001", "5000", "udp", "0"]
        )
        self.assertEqual(done.code, 0, done.describe())
        self.checkLog(gateway)

    async def startService(self, lab: Lab, lifetime: int) -> tuple[Daemon, int]:
        """
        Start C{twistd natpmp} on LAN host 1 with L{SERVICE_MAPS}; wait
        until miniupnpd holds them; return it and its client port.
        """
        argv = ["natpmp", "--gateway", ROUTER_LAN, "--lifetime", str(lifetime)]
        # The flood forges NAT-PMP replies and announcements (RFC 6886), and
        # the lifetime asked for is below miniupnpd's PCP minimum (120 s):
        # the service speaks NAT-PMP, from its one client port.
        argv += ["--protocol", "natpmp", "--health-interval", "600"]
        for (protocol, port), external in SERVICE_MAPS.items():
            argv += ["--map", f"{protocol.lower()}:{port}:{external}"]
        daemon = lab.spawn(lab.lans[0], lab.twistd(*argv), "twistd-natpmp")
        await waitUntil(
            lambda: lab.rulesFor(LAN_HOSTS[0]) == SERVICE_MAPS,
            "twistd natpmp's mappings",
            15.0,
            0.1,
        )
        ports = udpPortsConnectedTo(daemon.pid, (ROUTER_LAN, 5351))
        self.assertEqual(len(ports), 1, ports)
        return daemon, ports[0]

    async def floodService(self, lab: Lab, port: int, count: int) -> None:
        """
        Flood a service's client port with forged replies from the
        gateway's address and port, and 224.0.0.1:5350 with announcements
        forged from the gateway and sent from another host.
        """
        await self.flood(
            lab,
            f"{LAN_HOSTS[0]}:{port}<-{ROUTER_LAN}:5351",
            f"224.0.0.1:5350<-{ROUTER_LAN}:5351",
            "224.0.0.1:5350",
            responses=True,
            count=count,
        )

    async def test_service(self) -> None:
        """
        A running C{twistd natpmp} takes 100,000 fuzzed packets: forged
        replies from the gateway's address and port at its client port, and
        announcements (forged from the gateway, and from another host) at
        224.0.0.1:5350; it keeps renewing its mappings on miniupnpd (each
        is there after more than its lifetime), no exception escapes, and
        stopping deletes them.
        """
        lab = buildLab(self)
        await lab.startMiniupnpd()
        lifetime = 20
        daemon, port = await self.startService(lab, lifetime)
        mappedAt = reactor().seconds()
        await self.floodService(lab, port, FLOOD_PACKETS)
        self.assertFalse(daemon.ended, daemon.output()[-2000:])

        # Past a lifetime after mapping: only renewals keep the rules.
        def aLifetimeLater() -> bool:
            return bool(reactor().seconds() > mappedAt + lifetime + 4)

        await waitUntil(aLifetimeLater, "a lifetime", lifetime + 10.0, 0.2)
        self.assertEqual(lab.rulesFor(LAN_HOSTS[0]), SERVICE_MAPS)
        self.assertEqual(crashes(daemon.output()), [])
        daemon.signal(signal.SIGTERM)
        self.assertTrue(await daemon.waitEnded(STOP_DEADLINE + 5.0), daemon.output())
        self.assertEqual(lab.rulesFor(LAN_HOSTS[0]), {})

    async def test_serviceLog(self) -> None:
        """
        The service's log stays small under a flood of forged packets: for a
        fifth of the big flood, a fifth of L{MAX_FLOOD_LOG}.
        """
        lab = buildLab(self)
        await lab.startMiniupnpd()
        daemon, port = await self.startService(lab, 600)
        before = daemon.log.stat().st_size
        await self.floodService(lab, port, FLOOD_PACKETS // 5)
        await sleep(1.0)
        self.assertEqual(crashes(daemon.output()), [])
        size = daemon.log.stat().st_size - before
        self.assertLessEqual(
            size,
            MAX_FLOOD_LOG // 5,
            f"{size} bytes of log; the end:\n{daemon.output()[-2000:]}",
        )
