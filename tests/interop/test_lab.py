"""
The lab itself: real miniupnpd answering real natpmpc across the namespaces,
and a teardown that leaves nothing behind.  If these fail, every other
interop failure is suspect.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tools.netlab import _namespaces
from twisted_natpmp import Transport

from .._imports import modulesLoadedBy
from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    Inbox,
    Lab,
    LabError,
    LabUnavailable,
    buildLab,
    waitUntil,
)


class NatpmpcAgainstMiniupnpdTests(TestCase):
    """
    libnatpmp's natpmpc on a LAN host against miniupnpd on the router: the
    lab is a working NAT-PMP network.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()

    async def test_externalAddress(self) -> None:
        """
        natpmpc on a LAN host learns the router's WAN address from
        miniupnpd.
        """
        done = await self.lab.run(self.lab.lans[0], ["natpmpc", "-g", ROUTER_LAN])
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(f"Public IP address : {ROUTER_WAN}", done.out, done.describe())

    async def test_mapAndDelete(self) -> None:
        """
        A mapping natpmpc makes shows up as a forward in the router's
        firewall, to the LAN host that asked, and deleting it (lifetime 0,
        RFC 6886 s3.4) removes it.
        """
        lan = self.lab.lans[0]
        done = await self.lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "5001", "5000", "tcp", "600"]
        )
        self.assertEqual(done.code, 0, done.describe())
        self.assertRegex(
            done.out, r"Mapped public port 5001 protocol TCP to local port 5000"
        )
        self.assertEqual(self.lab.rules(Transport.TCP), {5001: (LAN_HOSTS[0], 5000)})
        self.assertEqual(self.lab.rules(Transport.UDP), {})

        done = await self.lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "0", "5000", "tcp", "0"]
        )
        self.assertEqual(done.code, 0, done.describe())
        self.assertEqual(self.lab.rules(Transport.TCP), {})

    async def test_restartResetsEpoch(self) -> None:
        """
        A restart of miniupnpd through the lab loses its rules and starts its
        epoch again at 0, like a router reboot (RFC 6886 s3.6).  The listing
        of miniupnpd's chains that the restart checks its flush with shows
        the rules a mapping makes.
        """
        lan = self.lab.lans[0]
        await self.lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "6000", "6000", "udp"]
        )
        self.assertIn(6000, self.lab.rules(Transport.UDP))
        self.assertEqual(
            {" ".join(rule.split()[:3]) for rule in self.lab.miniupnpdRules()},
            {
                "nat: -A MINIUPNPD",
                "nat: -A MINIUPNPD-POSTROUTING",
                "filter: -A MINIUPNPD",
            },
        )
        before = self.lab.miniupnpd
        await self.lab.restartMiniupnpd()
        assert before is not None and self.lab.miniupnpd is not None
        self.assertNotEqual(before.pid, self.lab.miniupnpd.pid)
        self.assertEqual(self.lab.rules(Transport.UDP), {})
        self.assertEqual(self.lab.miniupnpdRules(), [])
        done = await self.lab.run(lan, ["natpmpc", "-g", ROUTER_LAN])
        epoch = re.search(r"epoch = (\d+)", done.out)
        assert epoch is not None, done.describe()
        self.assertLessEqual(int(epoch.group(1)), 1)


class LabTests(TestCase):
    """
    The lab's own promises: sockets opened in a namespace stay there, and
    teardown ends every process and deletes every namespace.
    """

    async def test_socketsStayInTheirNamespace(self) -> None:
        """
        A trial-process socket opened in a LAN namespace sends from that LAN
        host's address, across the bridge, to a socket opened in the router
        namespace.
        """
        lab = buildLab(self)
        inbox = Inbox()
        router = lab.listenUDP(lab.router, 0, inbox, interface=ROUTER_LAN)
        self.addCleanup(router.stopListening)
        sender = DatagramProtocol()
        port = lab.listenUDP(lab.lans[1], 0, sender)
        self.addCleanup(port.stopListening)
        assert sender.transport is not None
        sender.transport.write(b"hello", (ROUTER_LAN, router.getHost().port))  # type: ignore[attr-defined]
        await waitUntil(lambda: inbox.received, "datagram at the router", 5.0)
        data, (source, _) = inbox.received[0]
        self.assertEqual((data, source), (b"hello", LAN_HOSTS[1]))

    async def test_destroyLeavesNothing(self) -> None:
        """
        After teardown the lab's namespaces are gone and miniupnpd (ended by
        its pid) no longer runs.
        """
        lab = buildLab(self)
        daemon = await lab.startMiniupnpd()
        await lab.destroy()
        self.assertTrue(daemon.ended)
        left = set(os.listdir("/var/run/netns")) & set(lab.namespaces)
        self.assertEqual(left, set())


class LabWithoutTrialTests(SynchronousTestCase):
    """
    The lab (L{tools.netlab}) is trial-free: it says it cannot run with
    L{LabUnavailable}, which only the suite's L{buildLab} turns into a skip.
    These run anywhere: nothing here builds a namespace.
    """

    def setUp(self) -> None:
        self.missing: list[str] = []
        self.patch(_namespaces, "missingPrerequisites", lambda: self.missing)
        self.patch(os, "environ", dict(os.environ))
        os.environ.pop("NATPMP_INTEROP_REQUIRED", None)

    def test_noTrial(self) -> None:
        """
        Importing the lab and the packet tools, or the benchmarks' use of
        them, loads neither trial nor the test suite.
        """
        for module in ("tools.netlab", "tools.impair.relay", "benchmarks._netlab"):
            loaded = modulesLoadedBy(module)
            self.assertEqual(
                {m for m in loaded if m.startswith(("twisted.trial", "tests"))},
                set(),
                module,
            )

    def test_unavailable(self) -> None:
        """
        With something missing, building a lab raises L{LabUnavailable}
        naming it, and L{buildLab} skips the test with that reason.
        """
        self.missing = ["the 'miniupnpd' command"]
        with self.assertRaises(LabUnavailable) as caught:
            Lab.build(Path(self.mktemp()))
        self.assertIn("the 'miniupnpd' command", str(caught.exception))
        with self.assertRaises(SkipTest) as skipped:
            buildLab(self)
        self.assertIn("the 'miniupnpd' command", str(skipped.exception))

    def test_required(self) -> None:
        """
        With C{NATPMP_INTEROP_REQUIRED=1} (as on CI) a missing prerequisite
        is a L{LabError}, which L{buildLab} lets through: a failure, not a
        skip.
        """
        self.missing = ["root (network namespaces need it)"]
        os.environ["NATPMP_INTEROP_REQUIRED"] = "1"
        with self.assertRaises(LabError) as caught:
            buildLab(self)
        self.assertIn("NATPMP_INTEROP_REQUIRED", str(caught.exception))

    def test_namesPerProcess(self) -> None:
        """
        Each lab's namespaces carry this process's pid and a fresh sequence
        number, so parallel runs and labs never share one.
        """
        first, second = Lab(Path(self.mktemp())), Lab(Path(self.mktemp()))
        self.assertIn(f"tnpmp{os.getpid()}x", first.router)
        self.assertEqual(set(first.namespaces) & set(second.namespaces), set())
