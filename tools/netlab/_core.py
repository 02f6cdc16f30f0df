"""
The lab's network: the namespaces of one lab, joined by veth pairs and a
bridge, with helpers to run commands and programs in them and to open the
lab user's own sockets inside them.  L{tools.netlab.Lab} adds the router's
programs (miniupnpd, our gateway, the impairment relay).

Topology (every address exists only inside the lab's own namespaces)::

    lan1 (10.77.0.2) --+
                       +-- br0 (10.77.0.1) router wan0 (192.0.3.1) -- wan (192.0.3.2)
    lan2 (10.77.0.3) --+
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

import twisted_natpmp

from ._namespaces import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    SECOND_GATEWAY,
    WAN_HOST,
    LabError,
    NamespacedReactor,
    check,
    deleteNamespace,
    liveNamespaces,
    newBase,
    requirePrerequisites,
    sweepStale,
    theReactor,
)
from ._process import Completed, Daemon, listensOn, waitUntil

#: What the lab's programs must import: the package under test, and this
#: checkout's tools (C{python -m tools.impair}).
_PATHS = tuple(
    dict.fromkeys(
        (
            str(Path(twisted_natpmp.__file__).resolve().parent.parent),
            str(Path(__file__).resolve().parent.parent.parent),
        )
    )
)

_CHAINS = """\
*nat
:MINIUPNPD - [0:0]
:MINIUPNPD-POSTROUTING - [0:0]
-A PREROUTING -i wan0 -j MINIUPNPD
-A POSTROUTING -o wan0 -j MINIUPNPD-POSTROUTING
COMMIT
*mangle
:MINIUPNPD - [0:0]
-A PREROUTING -i wan0 -j MINIUPNPD
COMMIT
*filter
:MINIUPNPD - [0:0]
-A FORWARD -i wan0 ! -o wan0 -j MINIUPNPD
COMMIT
"""

_Lab = TypeVar("_Lab", bound="LabCore")


class LabCore:
    """
    One lab's namespaces and the programs started in them.  Build it with
    L{build}; end it with L{destroy}, which ends every program (by pid) and
    deletes the namespaces.

    @ivar router: the router's namespace.
    @ivar lans: the two LAN hosts' namespaces (addresses L{LAN_HOSTS}).
    @ivar wan: the WAN host's namespace.
    @ivar directory: the lab's own directory for configs, pid files, logs.
    @ivar miniupnpd: miniupnpd, once started (L{tools.netlab.Lab}).
    @ivar miniupnpdOptions: lines added to miniupnpd's configuration
        (L{tools.netlab.miniupnpdConfig}) at each of its starts, restarts
        included, e.g. C{lease_file=...}.
    """

    def __init__(self, directory: Path) -> None:
        base = newBase()
        self.router = f"{base}-router"
        self.lans = (f"{base}-lan1", f"{base}-lan2")
        self.wan = f"{base}-wan"
        self.extra: list[str] = []
        self._base = base
        self.directory = directory
        self.miniupnpd: Daemon | None = None
        self.miniupnpdOptions: list[str] = []
        self._daemons: list[Daemon] = []
        self._count = 0

    @classmethod
    def build(cls: type[_Lab], directory: Path) -> _Lab:
        """
        Build a lab (namespaces, no programs running yet) whose files go in
        C{directory} (created if need be).  Its caller must C{await
        lab.destroy()}, whatever happens; L{tools.netlab.openLab} does.

        @raise LabUnavailable: this machine cannot run the lab.
        @raise LabError: it can, but setting the network up failed (the
            namespaces made so far are deleted).
        """
        requirePrerequisites()
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        lab = cls(directory)
        sweepStale()
        try:
            lab._create()
        except BaseException:
            for namespace in lab.namespaces:
                deleteNamespace(namespace)
            raise
        return lab

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.router, *self.lans, self.wan, *self.extra)

    def addSecondGateway(self) -> str:
        """
        Add a namespace for a second router on the LAN bridge, at
        L{SECOND_GATEWAY} (nothing runs there yet); return its name.  It is
        deleted with the lab.
        """
        namespace = f"{self._base}-gw2"
        self.extra.append(namespace)
        liveNamespaces.add(namespace)
        check(["ip", "netns", "add", namespace])
        self._ipBatch(
            self.router,
            [
                f"link add l3 type veth peer name eth0 netns {namespace}",
                "link set l3 master br0",
                "link set l3 up",
            ],
        )
        self._ipBatch(
            namespace,
            [
                "link set lo up",
                "link set eth0 up",
                f"address add {SECOND_GATEWAY}/24 dev eth0",
            ],
        )
        return namespace

    def setDefaultRoute(self, lan: int, gateway: str) -> None:
        """
        Make C{gateway} LAN host C{lan}'s default route.
        """
        self._ipBatch(self.lans[lan], [f"route replace default via {gateway}"])

    def setLanLink(self, lan: int, up: bool) -> None:
        """
        Take LAN host C{lan}'s link down or up at the router's end (its
        bridge port): the host keeps its address and routes, and loses its
        carrier, as when its cable is pulled.
        """
        self._ipBatch(self.router, [f"link set l{lan + 1} {'up' if up else 'down'}"])

    def _create(self) -> None:
        for namespace in self.namespaces:
            liveNamespaces.add(namespace)
            check(["ip", "netns", "add", namespace])
        router = [
            "link add br0 type bridge",
            f"link add wan0 type veth peer name eth0 netns {self.wan}",
            f"link add l1 type veth peer name eth0 netns {self.lans[0]}",
            f"link add l2 type veth peer name eth0 netns {self.lans[1]}",
            "link set l1 master br0",
            "link set l2 master br0",
            "link set lo up",
            "link set br0 up",
            "link set l1 up",
            "link set l2 up",
            "link set wan0 up",
            f"address add {ROUTER_LAN}/24 dev br0",
            f"address add {ROUTER_WAN}/24 dev wan0",
        ]
        self._ipBatch(self.router, router)
        for namespace, address in zip(self.lans, LAN_HOSTS, strict=True):
            self._ipBatch(
                namespace,
                [
                    "link set lo up",
                    "link set eth0 up",
                    f"address add {address}/24 dev eth0",
                    f"route add default via {ROUTER_LAN}",
                    # RFC 6886 s3.2.1: announcements go to 224.0.0.1.
                    "route add 224.0.0.0/4 dev eth0",
                ],
            )
        self._ipBatch(
            self.wan,
            [
                "link set lo up",
                "link set eth0 up",
                f"address add {WAN_HOST}/24 dev eth0",
                # So that the WAN host can try the router's LAN side too.
                f"route add 10.77.0.0/24 via {ROUTER_WAN}",
            ],
        )
        self.check(self.router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.check(
            self.router, ["iptables-legacy-restore", "-w", "5", "--noflush"], _CHAINS
        )

    def _ipBatch(self, namespace: str, commands: list[str]) -> None:
        check(["ip", "-n", namespace, "-batch", "-"], "\n".join(commands) + "\n")

    def check(
        self, namespace: str, argv: Sequence[str], stdin: str | None = None
    ) -> str:
        """
        Run a short command in C{namespace} synchronously (set-up and
        inspection only); return its output, raise L{LabError} if it fails.
        """
        return check(["ip", "netns", "exec", namespace, *argv], stdin)

    def firewall(self, namespace: str, rule: str) -> None:
        """
        Add a filter rule (C{iptables-legacy} arguments, e.g. C{"-I INPUT -p
        udp --dport 5351 -j DROP"}) in C{namespace}; it goes with the
        namespace.
        """
        self.check(namespace, ["iptables-legacy", "-w", "5", *rule.split()])

    # Processes

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join((*_PATHS, *([path] if path else [])))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn(self, namespace: str, argv: Sequence[str], name: str = "") -> Daemon:
        """
        Start C{argv} in C{namespace}; the lab ends it at teardown.
        """
        self._count += 1
        label = f"{self._count:02d}-{name or Path(argv[0]).name}"
        daemon = Daemon(
            label,
            ["ip", "netns", "exec", namespace, *argv],
            self.directory,
            self._env(),
        )
        daemon.namespace = namespace
        self._daemons.append(daemon)
        return daemon

    async def run(
        self, namespace: str, argv: Sequence[str], timeout: float = 20.0
    ) -> Completed:
        """
        Run C{argv} in C{namespace} to its end, without blocking the reactor.
        If it runs longer than C{timeout} seconds it is killed and
        L{LabError} is raised with its output.
        """
        daemon = self.spawn(namespace, argv)
        if not await daemon.waitEnded(timeout):
            await daemon.stop(0.5)
            raise LabError(
                f"{' '.join(argv)} still running after {timeout:g} s;"
                f" output:\n{daemon.output()}"
            )
        return daemon.completed()

    def python(self, *args: str) -> list[str]:
        """
        A command line that runs this interpreter (the one running the lab,
        with this checkout's code) with C{args}.
        """
        return [sys.executable, *args]

    def twistd(self, *args: str) -> list[str]:
        """
        A command line for C{twistd -n ARGS} with this interpreter, its pid
        file in the lab's directory.
        """
        self._count += 1
        pidfile = self.directory / f"twistd-{self._count}.pid"
        return self.python(
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            f"--pidfile={pidfile}",
            *args,
        )

    async def waitListening(
        self, daemon: Daemon, port: int, timeout: float = 15.0
    ) -> None:
        """
        Wait until a UDP socket in C{daemon}'s namespace is bound to C{port};
        raise L{LabError} with its output if it exits first or never does.
        """

        def ready() -> bool:
            if daemon.ended:
                raise LabError(
                    f"{daemon.name} exited {daemon.code}:\n{daemon.output()}"
                )
            return listensOn(daemon.pid, port, daemon.namespace)

        await waitUntil(ready, f"{daemon.name} listening on UDP {port}", timeout, 0.02)

    # Sockets in this process

    def reactorIn(self, namespace: str) -> NamespacedReactor:
        """
        The global reactor, opening its UDP ports in C{namespace}.
        """
        return NamespacedReactor(theReactor(), namespace)

    def listenUDP(
        self, namespace: str, port: int, protocol: DatagramProtocol, interface: str = ""
    ) -> IListeningPort:
        """
        Open a UDP port of the global reactor inside C{namespace}.
        """
        listening: IListeningPort = self.reactorIn(namespace).listenUDP(
            port, protocol, interface=interface
        )
        return listening

    # Teardown

    async def destroy(self) -> None:
        """
        End every process the lab started (by pid), then delete the
        namespaces (killing, by pid, anything still inside them).
        """
        try:
            for daemon in reversed(self._daemons):
                if not daemon.ended:
                    daemon.signal(signal.SIGKILL)
            for daemon in self._daemons:
                await daemon.waitEnded(5.0)
        finally:
            for namespace in self.namespaces:
                deleteNamespace(namespace)
