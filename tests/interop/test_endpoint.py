"""
The C{natpmp:} endpoint as a user runs it: C{twistd -n web --listen
natpmp:gateway=ROUTER:tcp:8080 --path DIR} on LAN host 1 serves a page that
the WAN host fetches through the router, at the router's WAN address and the
external port granted; it survives a router restart (the rule comes back,
the page is fetched again), and after SIGTERM the router holds no rule of
it and the page is no longer fetched.

The tests are written once (L{TwistdWebMixin}) for any router that really
forwards, given as a L{Router}: Debian's miniupnpd (L{MINIUPNPD}, whose
iptables rules forward in the lab), and our own gateway with its nftables
backend (L{OUR_GATEWAY_FORWARDING}, in a forwarding lab whose host
firewall accepts DNATed flows; its rules are its map's elements).

Our gateway with its memory backend, which forwards nothing, is checked
apart (L{TwistdWebOurGatewayTests}): twistd's grant line, and the
gateway's own lines for the mapping created and, on SIGTERM, deleted.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from twisted.trial.unittest import TestCase

from tools.netlab.echo import REFUSED, SILENT, probe
from tools.netlab.forwarding import GATEWAY_TABLE

from ._forwarding import ForwardingLab, buildForwardingLab
from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    Daemon,
    Lab,
    LabError,
    buildLab,
    waitUntil,
)

#: The page twistd web serves, and the port it listens on.
PAGE = "reachable through the router\n"
PORT = 8080

#: The line the endpoint logs once granted, with the public address.
_GRANTED = re.compile(
    r"tcp port 8080 is reachable from outside at (?P<address>[0-9.]+):(?P<port>\d+)"
)

#: A bounded HTTP GET, run in the WAN host's namespace: the page on
#: standard output, or an exit code of 1 with the error.
_FETCH = """\
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as reply:
        sys.stdout.write(reply.read().decode())
except OSError as e:
    sys.exit(f"fetching {sys.argv[1]} failed: {e}")
"""

#: How long to wait for the mapping back after a router restart, in
#: seconds: RFC 6886 s3.7's random 0-5 s hold-off once the router's restart
#: announcement arrives, with room for a loaded machine.
RECOVERY_WINDOW = 12.0


async def fetch(lab: Lab, url: str, timeout: float = 5.0) -> str:
    """
    GET C{url} from the WAN host.

    @raise AssertionError: it failed, with why.
    """
    completed = await lab.run(
        lab.wan, lab.python("-c", _FETCH, url, str(timeout)), timeout + 5.0
    )
    if completed.code != 0:
        raise AssertionError(completed.describe())
    return completed.out


def lanRules(lab: Lab) -> dict[tuple[str, int], int]:
    """
    The router's forwards to LAN host 1, from miniupnpd's iptables chains.
    """
    return lab.rulesFor(LAN_HOSTS[0])


_SomeLab = TypeVar("_SomeLab", bound=Lab)


@dataclass(frozen=True)
class Router(Generic[_SomeLab]):
    """
    A router for the tests: how to build its lab for a test case, how to
    start it, how to restart it (a reboot: its mappings lost, which the
    restart checks before the router starts again), how to read its
    forwards to LAN host 1, as C{{("TCP", internalPort): externalPort}},
    and what a new connection to a port it no longer forwards gets.
    """

    name: str
    build: Callable[[TestCase], _SomeLab]
    start: Callable[[_SomeLab], Awaitable[Daemon]]
    restart: Callable[[_SomeLab, Daemon], Awaitable[Daemon]]
    rules: Callable[[_SomeLab], dict[tuple[str, int], int]]
    gone: tuple[str, ...]


MINIUPNPD: Router[Lab] = Router(
    "miniupnpd",
    buildLab,
    Lab.startMiniupnpd,
    lambda lab, daemon: lab.restartMiniupnpd(),
    lanRules,
    # (Refused by the router, or dropped by its firewall.)
    (REFUSED, SILENT),
)


def buildOurForwardingLab(testCase: TestCase) -> ForwardingLab:
    """
    A forwarding lab for C{testCase} whose router has a host firewall that
    drops forwarded flows unless they were DNATed (C{ct status dnat
    accept}, as OpenWrt's fw4 does) or go from the LAN to the WAN.
    """
    lab = buildForwardingLab(testCase)
    lab.addHostFirewall(acceptDNAT=True)
    return lab


def ourGatewayRules(lab: ForwardingLab) -> dict[tuple[str, int], int]:
    """
    Our gateway's forwards to LAN host 1: the elements of its nftables
    maps.
    """
    return {
        (transport.upper(), element.port): external
        for (transport, external), element in lab.mapElements().items()
        if element.address == LAN_HOSTS[0]
    }


async def _restartOurForwardingGateway(lab: ForwardingLab, gateway: Daemon) -> Daemon:
    """
    Stop our gateway (SIGTERM: it deletes its table, and with it every
    forward), check that the table is gone, and start it again: it makes
    its table afresh, its epoch starts again at 0, and it announces itself.
    """
    await gateway.stop()
    if lab.tableHandle(GATEWAY_TABLE) is not None:
        raise LabError(f"our gateway's table is left after it stopped: {lab.tables()}")
    return await lab.startNftGateway()


OUR_GATEWAY_FORWARDING: Router[ForwardingLab] = Router(
    "our gateway",
    buildOurForwardingLab,
    ForwardingLab.startNftGateway,
    _restartOurForwardingGateway,
    ourGatewayRules,
    # (Nothing forwards it: the router's own stack refuses it; its host
    # firewall accepts DNATed flows, so nothing there drops it.)
    (REFUSED,),
)


class TwistdWeb:
    """
    C{twistd web} behind a C{natpmp:} endpoint in L{lab}: started, its grant
    line read, terminated.
    """

    lab: Lab

    def startWeb(self) -> Daemon:
        site = Path(self.lab.directory, "site")
        site.mkdir()
        (site / "index.html").write_text(PAGE)
        description = f"natpmp:gateway={ROUTER_LAN}:tcp:{PORT}"
        argv = self.lab.twistd("web", "--listen", description, "--path", str(site))
        return self.lab.spawn(self.lab.lans[0], argv, "twistd-web")

    async def waitForGrant(self, daemon: Daemon, timeout: float) -> tuple[str, int]:
        """
        The public address and port twistd's log tells, once it does.
        """
        found: list[re.Match[str]] = []

        def granted() -> bool:
            if daemon.ended:
                raise AssertionError(f"twistd web exited:\n{daemon.output()}")
            found[:] = list(_GRANTED.finditer(daemon.output()))
            return bool(found)

        await waitUntil(granted, "the public address in twistd web's log", timeout)
        return found[-1]["address"], int(found[-1]["port"])

    async def terminate(self, daemon: Daemon) -> None:
        """
        SIGTERM twistd web, which shuts down cleanly within 10 s.  (twistd
        ends by the signal that stopped it: after its shutdown it kills
        itself with it again, C{twisted.application.app}'s
        C{_exitSignal}, so that its parent sees why it ended.  It never
        exits with a code.)
        """
        daemon.signal(signal.SIGTERM)
        ended = await daemon.waitEnded(10.0)
        self.assertTrue(  # type: ignore[attr-defined]
            ended, f"twistd web still runs:\n{daemon.output()}"
        )
        self.assertEqual(  # type: ignore[attr-defined]
            (daemon.code, daemon.endedBy), (None, signal.SIGTERM), daemon.output()
        )
        self.assertIn(  # type: ignore[attr-defined]
            "Server Shut Down.", daemon.output()
        )


class TwistdWebMixin(TwistdWeb):
    """
    C{twistd web} behind a C{natpmp:} endpoint, against L{router}, which
    forwards.
    """

    router: Router[Any]
    routerDaemon: Daemon

    async def setUp(self) -> None:
        self.lab = self.router.build(self)  # type: ignore[arg-type]
        self.routerDaemon = await self.router.start(self.lab)

    async def waitForRemap(self, daemon: Daemon, timeout: float) -> int:
        """
        Wait until the router, restarted, holds the rule again.

        @return: the rule's external port.
        """

        def remapped() -> bool:
            # (The restart checked that the router's rules were gone before
            # it started the router again: a rule seen now was made again,
            # whatever the log calls it.)
            if daemon.ended:
                raise AssertionError(f"twistd web exited:\n{daemon.output()}")
            return ("TCP", PORT) in self.router.rules(self.lab)

        await waitUntil(remapped, f"the mapping back on {self.router.name}", timeout)
        return self.router.rules(self.lab)[("TCP", PORT)]

    async def test_servesThroughTheRouter(self) -> None:
        """
        The page is fetched from the WAN host at the public address twistd
        logs; after a router restart the rule is back and the page fetched
        again; after SIGTERM twistd exits and the rule is gone.
        """
        daemon = self.startWeb()
        address, port = await self.waitForGrant(daemon, 15.0)
        assertEqual = self.assertEqual  # type: ignore[attr-defined]
        assertEqual(address, ROUTER_WAN)
        assertEqual(await fetch(self.lab, f"http://{address}:{port}/"), PAGE)
        assertEqual(self.router.rules(self.lab), {("TCP", PORT): port})

        self.routerDaemon = await self.router.restart(self.lab, self.routerDaemon)
        port = await self.waitForRemap(daemon, RECOVERY_WINDOW)
        assertEqual(await fetch(self.lab, f"http://{ROUTER_WAN}:{port}/"), PAGE)

        await self.terminate(daemon)
        assertEqual(self.router.rules(self.lab), {})
        gone = await probe(self.lab.wan, "tcp", ROUTER_WAN, port, 1.0)
        self.assertIn(gone, self.router.gone)  # type: ignore[attr-defined]


class TwistdWebMiniupnpdTests(TwistdWebMixin, TestCase):  # type: ignore[misc]
    router = MINIUPNPD


class TwistdWebOurGatewayForwardingTests(TwistdWebMixin, TestCase):  # type: ignore[misc]
    router = OUR_GATEWAY_FORWARDING


class TwistdWebOurGatewayTests(TwistdWeb, TestCase):
    """
    C{twistd web} behind a C{natpmp:} endpoint, against our gateway with
    its memory backend (it grants and deletes, forwarding nothing).
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        self.gateway = await self.lab.startOurGateway()

    async def test_grantedAndDeleted(self) -> None:
        """
        twistd logs the public address the gateway granted, which the
        gateway logs as created for LAN host 1's port 8080; after SIGTERM
        twistd exits cleanly and the gateway logs the mapping deleted.
        """
        daemon = self.startWeb()
        address, port = await self.waitForGrant(daemon, 15.0)
        self.assertEqual(address, ROUTER_WAN)
        mapping = f"tcp external port {port} -> {LAN_HOSTS[0]}:{PORT}"
        await waitUntil(
            lambda: f"mapping created: {mapping}" in self.gateway.output(),
            "the gateway's line for the mapping created",
            5.0,
        )
        await self.terminate(daemon)
        # (twistd waited for the deletion's answer before it exited; the
        # gateway's line may still be on its way through the pipe.)
        await waitUntil(
            lambda: f"mapping deleted: {mapping}" in self.gateway.output(),
            "the gateway's line for the mapping deleted",
            2.0,
        )
        self.assertIn("stopping: deleted 1 mapping(s)", daemon.output())
