"""
A network lab for the interop suite: network namespaces, veth pairs, a bridge,
Debian's miniupnpd as the router, and helpers to run programs and open
sockets inside the namespaces.

Topology (every address exists only inside the lab's own namespaces)::

    lan1 (10.77.0.2) --+
                       +-- br0 (10.77.0.1) router wan0 (192.0.3.1) -- wan (192.0.3.2)
    lan2 (10.77.0.3) --+

A test may add a second router on the bridge (L{Lab.addSecondGateway}, at
L{SECOND_GATEWAY}), and put the impairment relay (L{tests.interop._relay})
in front of a LAN host (L{Lab.startRelay}).

Namespace names carry the pid of the test process and a sequence number, so
parallel runs never clash; namespaces left behind by a run that was killed
are swept when the next lab is built.  The lab never touches the root
namespace's network: links are created inside the namespaces, and every
command runs in one of them.

Every wait is bounded: processes are polled through the reactor a fixed
number of times, then killed by their pid.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

import twisted_natpmp
from twisted_natpmp._wire import Protocol

from . import _relay
from ._relay import Impairment

#: The router's address on the LAN bridge (the NAT-PMP gateway).
ROUTER_LAN = "10.77.0.1"
#: The two LAN hosts, in the order of L{Lab.lans}.
LAN_HOSTS = ("10.77.0.2", "10.77.0.3")
#: The router's external (WAN) address; not on miniupnpd's reserved list.
ROUTER_WAN = "192.0.3.1"
#: A host on the WAN side.
WAN_HOST = "192.0.3.2"
#: An address on the LAN where no host exists: nothing ever answers there.
NOBODY = "10.77.0.99"
#: A second gateway's LAN address (L{Lab.addSecondGateway}).
SECOND_GATEWAY = "10.77.0.254"

_PREFIX = "tnpmp"
_NAME = re.compile(rf"^{_PREFIX}(\d+)x\d+-\w+$")
_CLONE_NEWNET = 0x40000000
_TOOLS = ("ip", "iptables-legacy", "iptables-legacy-restore", "unshare", "miniupnpd")
_CLIENT_TOOLS = ("natpmpc",)
_REQUIRED_ENV = "NATPMP_INTEROP_REQUIRED"
_COMMAND_TIMEOUT = 10.0
_REPO = Path(twisted_natpmp.__file__).resolve().parent.parent

_sequence = 0
_liveNamespaces: set[str] = set()


class LabError(Exception):
    """
    The lab could not do what a test asked (a command failed, a daemon did
    not start, a wait ran out).
    """


def missingPrerequisites() -> list[str]:
    """
    What this machine lacks to run the interop suite, one phrase each.
    """
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces need it)")
    for tool in _TOOLS + _CLIENT_TOOLS:
        if shutil.which(tool) is None:
            missing.append(f"the {tool!r} command")
    return missing


def requirePrerequisites() -> None:
    """
    Skip the calling test, saying what is missing, when the suite cannot
    run here; with C{NATPMP_INTEROP_REQUIRED=1} in the environment (as on
    CI), fail instead, so that a skip never hides a suite that should run.
    """
    missing = missingPrerequisites()
    if not missing:
        return
    reason = "interop suite needs " + ", ".join(missing)
    if os.environ.get(_REQUIRED_ENV, "") not in ("", "0"):
        raise LabError(f"{reason} (and {_REQUIRED_ENV} is set)")
    raise SkipTest(reason)


def _check(argv: Sequence[str], stdin: str | None = None) -> str:
    """
    Run a short set-up command synchronously, raising L{LabError} with its
    output when it fails.
    """
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(argv)} took over {_COMMAND_TIMEOUT} s") from e
    if done.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout


def _pidsIn(namespace: str) -> list[int]:
    try:
        out = _check(["ip", "netns", "pids", namespace])
    except LabError:
        return []
    return [int(p) for p in out.split()]


def _deleteNamespace(namespace: str) -> None:
    """
    Kill (by pid) whatever still runs in C{namespace}, then delete it.
    """
    for pid in _pidsIn(namespace):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    subprocess.run(
        ["ip", "netns", "delete", namespace],
        capture_output=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    _liveNamespaces.discard(namespace)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweepStale() -> None:
    """
    Delete namespaces left by earlier labs whose test process is gone.
    """
    try:
        names = os.listdir("/var/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        match = _NAME.match(name)
        if match is not None and not _alive(int(match.group(1))):
            _deleteNamespace(name)


@atexit.register
def _deleteLeftovers() -> None:
    # Last resort when a test run is interrupted before its cleanups ran.
    for namespace in sorted(_liveNamespaces):
        _deleteNamespace(namespace)


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def insideNamespace(namespace: str) -> Iterator[None]:
    """
    Run the body with the calling thread in network namespace C{namespace},
    then switch back.  A socket created in the body stays in C{namespace}
    for its whole life, so the trial process can hold sockets on a LAN host.
    """
    with (
        open("/proc/thread-self/ns/net") as home,
        open(f"/var/run/netns/{namespace}") as target,
    ):
        if _libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {namespace}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                # Carrying on in the wrong namespace would send later tests'
                # traffic into the lab; better to stop the run right here.
                os.write(2, b"FATAL: cannot return to the home network namespace\n")
                os._exit(70)


@implementer(IReactorTime, IReactorUDP, IReactorMulticast)
class NamespacedReactor:
    """
    The trial reactor, except that every UDP or multicast port it opens is
    opened inside one network namespace.  Hand it to code under test (a
    client, a service) so that every socket that code ever opens, even
    long after it started, is on the LAN host and none in the root
    namespace.
    """

    def __init__(self, reactor: Any, namespace: str) -> None:
        self._reactor = reactor
        self.namespace = namespace

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
        with insideNamespace(self.namespace):
            return self._reactor.listenUDP(*args, **kwargs)

    def listenMulticast(self, *args: Any, **kwargs: Any) -> Any:
        with insideNamespace(self.namespace):
            return self._reactor.listenMulticast(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def waitUntil(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 5.0,
    interval: float = 0.05,
) -> None:
    """
    Poll C{predicate} through the reactor every C{interval} seconds, at most
    C{timeout / interval} times; raise L{LabError} naming C{what} if it never
    holds.
    """
    for _ in range(max(1, round(timeout / interval))):
        if predicate():
            return
        await deferLater(_reactor(), interval)
    if not predicate():
        raise LabError(f"{what}: not seen within {timeout:g} s")


async def sleep(seconds: float) -> None:
    """
    Let the reactor run for C{seconds} (a bounded wait; no wall-clock sleep).
    """
    await deferLater(_reactor(), seconds)


class Inbox(DatagramProtocol):
    """
    A UDP protocol that keeps every datagram it receives, with its source.
    """

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.received.append((datagram, addr))


@dataclass(frozen=True)
class Completed:
    """
    A command that ran to its end.

    @ivar code: its exit code, or L{None} if a signal ended it.
    """

    argv: tuple[str, ...]
    code: int | None
    out: str
    err: str

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)} exited {self.code}\n"
            f"--- stdout\n{self.out}--- stderr\n{self.err}"
        )


class _Collector(ProcessProtocol):
    def __init__(self, log: Path) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.code: int | None = None
        self.signal: int | None = None
        self.ended = False
        self._log = log.open("ab")

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._log.write(data)
        self._log.flush()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._log.write(data)
        self._log.flush()

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone | ProcessTerminated):
            self.code = value.exitCode
            self.signal = getattr(value, "signal", None)
        self.ended = True
        self._log.close()


class Daemon:
    """
    A process started in one of the lab's namespaces; its output is kept in
    memory and in a log file in the test's temporary directory.

    @ivar pid: the process id (that of the program itself: C{ip netns exec}
        execs it).
    @ivar namespace: the network namespace it runs in.
    """

    def __init__(self, name: str, argv: Sequence[str], cwd: Path, env: dict[str, str]):
        self.name = name
        self.argv = tuple(argv)
        self.log = cwd / f"{name}.log"
        self._collector = _Collector(self.log)
        transport = _reactor().spawnProcess(
            self._collector, self.argv[0], self.argv, env=env, path=str(cwd)
        )
        self.pid: int = transport.pid
        self.namespace = ""

    @property
    def ended(self) -> bool:
        return self._collector.ended

    @property
    def code(self) -> int | None:
        """
        The exit code, or L{None} while it runs or when a signal ended it.
        """
        return self._collector.code

    @property
    def endedBy(self) -> int | None:
        """
        The signal that ended the process, if one did.
        """
        return self._collector.signal

    def output(self) -> str:
        """
        Everything it wrote so far, stdout then stderr.
        """
        return (self._collector.out + self._collector.err).decode(errors="replace")

    def completed(self) -> Completed:
        return Completed(
            self.argv,
            self._collector.code,
            self._collector.out.decode(errors="replace"),
            self._collector.err.decode(errors="replace"),
        )

    def signal(self, number: int) -> None:
        """
        Send signal C{number} to the process, by its pid, if it still runs.
        """
        if not self.ended:
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:
                pass

    async def waitEnded(self, timeout: float) -> bool:
        """
        Wait up to C{timeout} seconds for the process to end; say whether it
        did.
        """
        try:
            await waitUntil(lambda: self.ended, f"{self.name} exit", timeout, 0.02)
        except LabError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """
        End the process: SIGTERM, then SIGKILL if it has not gone within
        C{timeout} seconds.
        """
        self.signal(signal.SIGTERM)
        if not await self.waitEnded(timeout):
            self.signal(signal.SIGKILL)
            if not await self.waitEnded(5.0):
                raise LabError(f"{self.name} (pid {self.pid}) survived SIGKILL")


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

_FLUSH = """\
*nat
-F MINIUPNPD
-F MINIUPNPD-POSTROUTING
COMMIT
*mangle
-F MINIUPNPD
COMMIT
*filter
-F MINIUPNPD
COMMIT
"""

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


class Relay:
    """
    A running impairment relay (L{Lab.startRelay}).
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def stop(self) -> dict[str, dict[str, int]]:
        """
        Stop the relay; return its counts for each direction (C{"up"},
        C{"down"}), each a mapping of L{tests.interop._relay.Counts}' fields.

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


class Lab:
    """
    One test's namespaces and daemons.  Create it with L{Lab.build}, which
    registers the teardown with the test case, so the namespaces are deleted
    and every process is ended (by pid) even when the test fails.

    @ivar router: the router's namespace.
    @ivar lans: the two LAN hosts' namespaces (addresses L{LAN_HOSTS}).
    @ivar wan: the WAN host's namespace.
    @ivar directory: the test's own directory for configs, pid files, logs.
    """

    def __init__(self, directory: Path) -> None:
        global _sequence
        _sequence += 1
        base = f"{_PREFIX}{os.getpid()}x{_sequence}"
        self.router = f"{base}-router"
        self.lans = (f"{base}-lan1", f"{base}-lan2")
        self.wan = f"{base}-wan"
        self.extra: list[str] = []
        self._base = base
        self.directory = directory
        self.miniupnpd: Daemon | None = None
        self._daemons: list[Daemon] = []
        self._count = 0

    @classmethod
    def build(cls, testCase: TestCase) -> Lab:
        """
        Skip C{testCase} if the suite cannot run here; otherwise build a lab
        (without miniupnpd running) whose teardown is a cleanup of
        C{testCase}.
        """
        requirePrerequisites()
        directory = Path(testCase.mktemp()).resolve()
        directory.mkdir(parents=True)
        lab = cls(directory)
        testCase.addCleanup(lambda: Deferred.fromCoroutine(lab.destroy()))
        _sweepStale()
        lab._create()
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
        _liveNamespaces.add(namespace)
        _check(["ip", "netns", "add", namespace])
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
            _liveNamespaces.add(namespace)
            _check(["ip", "netns", "add", namespace])
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
        _check(["ip", "-n", namespace, "-batch", "-"], "\n".join(commands) + "\n")

    def check(
        self, namespace: str, argv: Sequence[str], stdin: str | None = None
    ) -> str:
        """
        Run a short command in C{namespace} synchronously (set-up and
        inspection only); return its output, raise L{LabError} if it fails.
        """
        return _check(["ip", "netns", "exec", namespace, *argv], stdin)

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
        env["PYTHONPATH"] = str(_REPO) + (os.pathsep + path if path else "")
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
        A command line that runs this interpreter (the one running the tests,
        with this checkout's code) with C{args}.
        """
        return [sys.executable, *args]

    def twistd(self, *args: str) -> list[str]:
        """
        A command line for C{twistd -n ARGS} with this interpreter, its pid
        file in the test's directory.
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
            return _listensOn(daemon.pid, port, daemon.namespace)

        await waitUntil(ready, f"{daemon.name} listening on UDP {port}", timeout, 0.02)

    # Sockets in the trial process

    def reactorIn(self, namespace: str) -> NamespacedReactor:
        """
        The trial reactor, opening its UDP ports in C{namespace}.
        """
        return NamespacedReactor(_reactor(), namespace)

    def listenUDP(
        self, namespace: str, port: int, protocol: DatagramProtocol, interface: str = ""
    ) -> IListeningPort:
        """
        Open a UDP port of the trial reactor inside C{namespace}.
        """
        listening: IListeningPort = self.reactorIn(namespace).listenUDP(
            port, protocol, interface=interface
        )
        return listening

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

    # The impairment relay

    async def startRelay(
        self,
        lan: int = 0,
        up: Impairment = _relay.PERFECT,
        down: Impairment = _relay.PERFECT,
        seed: int = 0,
        gateway: str = ROUTER_LAN,
        maxSeconds: float = 300.0,
        maxPackets: int = 1_000_000,
        redirect: bool = True,
    ) -> Relay:
        """
        Put the impairment relay (L{tests.interop._relay}) in front of
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
                f" -m mark ! --mark {_relay.RELAY_MARK} -j REDIRECT"
                f" --to-ports {_relay.RELAY_PORT}",
            )
        daemon = self.spawn(
            namespace,
            self.python(
                _relay.__file__,
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
        await self.waitListening(daemon, _relay.RELAY_PORT, 10.0)
        return Relay(daemon)

    # miniupnpd

    async def startMiniupnpd(self) -> Daemon:
        """
        Start miniupnpd in the router namespace (foreground, logging to its
        log file) and wait until it listens on port 5351.

        It runs in a private mount namespace where /dev/console is /dev/null:
        with no /dev/log its syslog lines would otherwise go to the console,
        slowly (PROTOCOL.md Part B).
        """
        if self.miniupnpd is not None and not self.miniupnpd.ended:
            raise LabError("miniupnpd is already running")
        conf = self.directory / "miniupnpd.conf"
        conf.write_text(_MINIUPNPD_CONF.format(uuid=uuid.uuid4()))
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
        self.check(
            self.router, ["iptables-legacy-restore", "-w", "5", "--noflush"], _FLUSH
        )

    async def restartMiniupnpd(self) -> Daemon:
        """
        Simulate a router reboot: stop miniupnpd, flush its chains (a reboot
        loses the rules), start it again; its epoch starts again at 0.
        """
        await self.stopMiniupnpd()
        self.check(
            self.router, ["iptables-legacy-restore", "-w", "5", "--noflush"], _FLUSH
        )
        return await self.startMiniupnpd()

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

    def rules(self, protocol: Protocol) -> dict[int, tuple[str, int] | None]:
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
        for protocol in (Protocol.TCP, Protocol.UDP):
            for external, target in self.rules(protocol).items():
                if target is not None and target[0] == host:
                    found[(protocol.label.upper(), target[1])] = external
        return found

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
                _deleteNamespace(namespace)


def _listensOn(pid: int, port: int, namespace: str) -> bool:
    """
    Whether process C{pid}, already inside network namespace C{namespace},
    holds a UDP socket bound to C{port}.

    Both checks matter: until C{ip netns exec} has switched namespaces, the
    process is a fork of the test process and its /proc/PID/net shows the
    root namespace, where another program may well use the port.
    """
    try:
        if (
            os.stat(f"/proc/{pid}/ns/net").st_ino
            != os.stat(f"/var/run/netns/{namespace}").st_ino
        ):
            return False
        table = Path(f"/proc/{pid}/net/udp").read_text()
        inodes = set()
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1].endswith(f":{port:04X}"):
                inodes.add(f"socket:[{fields[9]}]")
        if not inodes:
            return False
        fds = Path(f"/proc/{pid}/fd")
        return any(os.readlink(fd) in inodes for fd in fds.iterdir())
    except OSError:
        return False
