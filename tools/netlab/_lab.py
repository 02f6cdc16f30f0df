"""
The lab with its router's programs: miniupnpd (Debian's, the iptables
build), our own gateway (C{twistd natpmp-gateway}), and the impairment relay
(L{tools.impair.relay}) in front of a LAN host.
"""

from __future__ import annotations

import json
import re
import signal
import uuid

from tools.impair.relay import PERFECT, RELAY_MARK, RELAY_PORT, Impairment
from twisted_natpmp._types import Transport

from ._core import LabCore
from ._namespaces import ROUTER_LAN, ROUTER_WAN, LabError
from ._process import Daemon, waitUntil

#: miniupnpd's firewall chains, by table (PROTOCOL.md Part B).
_CHAINS = {
    "nat": ("MINIUPNPD", "MINIUPNPD-POSTROUTING"),
    "mangle": ("MINIUPNPD",),
    "filter": ("MINIUPNPD",),
}

#: An C{iptables-legacy-restore --noflush} script that empties them.
_FLUSH = "".join(
    f"*{table}\n" + "".join(f"-F {chain}\n" for chain in chains) + "COMMIT\n"
    for table, chains in _CHAINS.items()
)

_MINIUPNPD_CONF = """\
ext_ifname=wan0
listening_ip=br0
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
system_uptime=no
uuid={uuid}
allow 1024-65535 10.77.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def miniupnpdConfig() -> str:
    """
    A miniupnpd configuration for the lab's router (NAT-PMP and PCP on the
    LAN bridge, a fresh uuid; PROTOCOL.md Part B).
    """
    return _MINIUPNPD_CONF.format(uuid=uuid.uuid4())


class RunningRelay:
    """
    A running impairment relay (L{Lab.startRelay}).
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def stop(self) -> dict[str, dict[str, int]]:
        """
        Stop the relay; return its counts for each direction (C{"up"},
        C{"down"}), each a mapping of L{tools.impair.relay.Counts}' fields.

        @raise LabError: it did not report them.
        """
        await self.daemon.stop()
        for line in reversed(self.daemon.completed().out.splitlines()):
            if line.startswith('{"relay"'):
                counts: dict[str, dict[str, int]] = json.loads(line)["relay"]
                return counts
        raise LabError(f"the relay reported no counts:\n{self.daemon.output()}")


_DPORT = re.compile(r"-p (tcp|udp) .*--dport (\d+)\b")
_SNAT = re.compile(r"-s ([\d.]+)/32 -p (tcp|udp) .*--sport (\d+) .*--to-ports (\d+)\b")


class Lab(LabCore):
    """
    One lab: its namespaces (L{LabCore}) and the router's programs.  Build
    it with L{Lab.build}; L{tools.netlab.openLab} also destroys it.
    """

    # Our gateway

    async def startOurGateway(self, external: str = ROUTER_WAN) -> Daemon:
        """
        Start our gateway, C{twistd -n natpmp-gateway}, in the router
        namespace on the LAN address, reporting C{external}; wait until it
        listens on port 5351.  (Not together with miniupnpd: both want the
        port.)
        """
        daemon = self.spawn(
            self.router,
            self.twistd(
                "natpmp-gateway",
                "--listen",
                f"{ROUTER_LAN}/24",
                "--external-address",
                external,
            ),
            "natpmp-gateway",
        )
        await self.waitListening(daemon, 5351)
        return daemon

    # The impairment relay and the flooder

    def impair(self, *args: str) -> list[str]:
        """
        A command line for C{python -m tools.impair ARGS}: the impairment
        relay (C{relay ...}) or the flooder (C{flood ...}).
        """
        return self.python("-m", "tools.impair", *args)

    async def startRelay(
        self,
        lan: int = 0,
        up: Impairment = PERFECT,
        down: Impairment = PERFECT,
        seed: int = 0,
        gateway: str = ROUTER_LAN,
        maxSeconds: float = 300.0,
        maxPackets: int = 1_000_000,
        redirect: bool = True,
    ) -> RunningRelay:
        """
        Put the impairment relay (L{tools.impair.relay}) in front of
        everything on LAN host C{lan} that talks to C{gateway}'s port 5351:
        packets to it are redirected to the relay, which passes them on with
        C{up}'s impairment, and passes the replies back with C{down}'s.  The
        gateway still sees the LAN host's address, the programs still see
        replies from C{gateway}:5351.  Start it before the programs: a flow
        that began before the redirect is not redirected.  It exits by
        itself after C{maxSeconds} or C{maxPackets}.  To change a relay's
        impairments, stop it and start another with C{redirect=False}: the
        redirect is in place, and the flows it redirected go to the new one.
        """
        namespace = self.lans[lan]
        if redirect:
            self.firewall(
                namespace,
                f"-t nat -A OUTPUT -p udp -d {gateway} --dport 5351"
                f" -m mark ! --mark {RELAY_MARK} -j REDIRECT"
                f" --to-ports {RELAY_PORT}",
            )
        daemon = self.spawn(
            namespace,
            self.impair(
                "relay",
                "--upstream",
                f"{gateway}:5351",
                "--up",
                up.argument(),
                "--down",
                down.argument(),
                "--seed",
                str(seed),
                "--max-seconds",
                f"{maxSeconds:g}",
                "--max-packets",
                str(maxPackets),
            ),
            "relay",
        )
        await self.waitListening(daemon, RELAY_PORT, 10.0)
        return RunningRelay(daemon)

    # miniupnpd

    async def startMiniupnpd(self) -> Daemon:
        """
        Start miniupnpd in the router namespace (foreground, logging to its
        log file) with the lab's configuration and L{miniupnpdOptions}, and
        wait until it listens on port 5351.

        It runs in a private mount namespace where /dev/console is /dev/null:
        with no /dev/log its syslog lines would otherwise go to the console,
        slowly (PROTOCOL.md Part B).
        """
        if self.miniupnpd is not None and not self.miniupnpd.ended:
            raise LabError("miniupnpd is already running")
        conf = self.directory / "miniupnpd.conf"
        conf.write_text(
            miniupnpdConfig() + "".join(f"{o}\n" for o in self.miniupnpdOptions)
        )
        pidfile = self.directory / "miniupnpd.pid"
        pidfile.unlink(missing_ok=True)
        # (A machine without /dev/console has nothing to flood.)
        script = (
            "if [ -e /dev/console ]; then"
            " mount --bind /dev/null /dev/console || exit 97; fi;"
            f" exec miniupnpd -d -f {conf} -P {pidfile}"
        )
        daemon = self.spawn(
            self.router,
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            "miniupnpd",
        )
        self.miniupnpd = daemon

        await self.waitListening(daemon, 5351, 10.0)
        await waitUntil(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            "miniupnpd's pid file",
            5.0,
            0.02,
        )
        written = int(pidfile.read_text().strip())
        if written != daemon.pid:
            raise LabError(f"miniupnpd pid file says {written}, not {daemon.pid}")
        return daemon

    async def stopMiniupnpd(self) -> None:
        """
        Stop miniupnpd by its pid (SIGTERM, then SIGKILL).
        """
        if self.miniupnpd is not None:
            await self.miniupnpd.stop()

    async def killMiniupnpd(self) -> None:
        """
        Kill miniupnpd (SIGKILL: it cleans nothing up) and flush its chains,
        as when the router loses power.
        """
        if self.miniupnpd is not None:
            self.miniupnpd.signal(signal.SIGKILL)
            if not await self.miniupnpd.waitEnded(5.0):
                raise LabError("miniupnpd survived SIGKILL")
        self.flushMiniupnpdChains()

    async def restartMiniupnpd(self) -> Daemon:
        """
        Simulate a router reboot: stop miniupnpd, flush its chains (a reboot
        loses the rules; L{flushMiniupnpdChains} checks that they are
        empty), start it again; its epoch starts again at 0.

        The chains are empty only until the new miniupnpd runs: it announces
        itself as it starts (one PCP ANNOUNCE), and a client that hears it
        may map again before this returns (the RFC 6886 s3.7 hold-off may be
        0 s).  A test that looked at the rules after this returns would race
        that client: the check belongs here, before the new miniupnpd starts.
        """
        await self.stopMiniupnpd()
        self.flushMiniupnpdChains()
        return await self.startMiniupnpd()

    def flushMiniupnpdChains(self) -> None:
        """
        Empty miniupnpd's firewall chains, as a reboot does (miniupnpd does
        not delete its rules when it stops), and check that they are empty.
        Call it while miniupnpd is stopped: a running one may add rules at
        any time.

        @raise LabError: a rule is left in one of them.
        """
        self.check(
            self.router, ["iptables-legacy-restore", "-w", "5", "--noflush"], _FLUSH
        )
        left = self.miniupnpdRules()
        if left:
            raise LabError(
                "rules left in miniupnpd's chains after the flush:\n" + "\n".join(left)
            )

    def miniupnpdRules(self) -> list[str]:
        """
        Every rule in miniupnpd's firewall chains on the router (nat
        C{MINIUPNPD} and C{MINIUPNPD-POSTROUTING}, mangle and filter
        C{MINIUPNPD}), each as C{TABLE: -A CHAIN ...} from
        C{iptables-legacy -S}.
        """
        found = []
        for table, chains in _CHAINS.items():
            for chain in chains:
                listed = self.check(
                    self.router,
                    ["iptables-legacy", "-w", "5", "-t", table, "-S", chain],
                )
                found += [
                    f"{table}: {line}"
                    for line in listed.splitlines()
                    if line.startswith("-A ")
                ]
        return found

    def changeExternalAddress(self, address: str) -> None:
        """
        Give the router's WAN interface C{address} (a /24) instead of its
        current one, and tell miniupnpd (SIGUSR1), which then sends one
        NAT-PMP announcement and one PCP ANNOUNCE and resets its epoch
        (PROTOCOL.md Part B).
        """
        self._ipBatch(
            self.router,
            ["address flush dev wan0", f"address add {address}/24 dev wan0"],
        )
        if self.miniupnpd is not None:
            self.miniupnpd.signal(signal.SIGUSR1)

    def rules(self, protocol: Transport) -> dict[int, tuple[str, int] | None]:
        """
        The router's port forwards for C{protocol}, read from its firewall:
        each external port in C{iptables-legacy -t nat -S MINIUPNPD}, with the
        internal address and port its C{MINIUPNPD-POSTROUTING} rule names
        (L{None} when there is no such rule).
        """
        name = protocol.label
        nat = self.check(
            self.router, ["iptables-legacy", "-w", "5", "-t", "nat", "-S", "MINIUPNPD"]
        )
        post = self.check(
            self.router,
            ["iptables-legacy", "-w", "5", "-t", "nat", "-S", "MINIUPNPD-POSTROUTING"],
        )
        internal: dict[int, tuple[str, int]] = {}
        for match in _SNAT.finditer(post):
            if match.group(2) == name:
                internal[int(match.group(4))] = (match.group(1), int(match.group(3)))
        result: dict[int, tuple[str, int] | None] = {}
        for match in _DPORT.finditer(nat):
            if match.group(1) == name:
                port = int(match.group(2))
                result[port] = internal.get(port)
        return result

    def rulesFor(self, host: str) -> dict[tuple[str, int], int]:
        """
        The router's port forwards to C{host}, from L{rules}: each
        (C{"TCP"} or C{"UDP"}, internal port) with its external port.
        """
        found = {}
        for protocol in (Transport.TCP, Transport.UDP):
            for external, target in self.rules(protocol).items():
                if target is not None and target[0] == host:
                    found[(protocol.label.upper(), target[1])] = external
        return found
