"""
The lab's namespaces: prerequisites, short set-up commands, creating and
deleting namespaces (per pid, swept when their process is gone), and
running code or opening sockets inside one.

Nothing here touches the root namespace's network.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from twisted.internet.interfaces import (
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
)
from zope.interface import implementer

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

_sequence = 0
#: The lab's namespaces that exist now (deleted at exit if still there).
liveNamespaces: set[str] = set()


def namespacePath(namespace: str) -> str:
    """
    Where C{ip netns} keeps namespace C{namespace}.
    """
    return f"/var/run/netns/{namespace}"


def newBase() -> str:
    """
    A fresh prefix for one lab's namespace names: this process's pid and a
    sequence number, so that parallel runs and labs never clash.
    """
    global _sequence
    _sequence += 1
    return f"{_PREFIX}{os.getpid()}x{_sequence}"


class LabError(Exception):
    """
    The lab could not do what it was asked (a command failed, a daemon did
    not start, a wait ran out).
    """


class LabUnavailable(Exception):
    """
    The lab cannot run on this machine; the message says what is missing.
    A test suite turns it into a skip.
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


def requirePrerequisites(also: Sequence[str] = ()) -> None:
    """
    Say what is missing when the lab cannot run here.

    @param also: more that is missing, for a use of the lab that needs
        more than the lab itself (one phrase each).
    @raise LabUnavailable: something is missing (a test suite skips).
    @raise LabError: something is missing and C{NATPMP_INTEROP_REQUIRED=1}
        is in the environment (as on CI), so that a skip never hides a
        suite that should run.
    """
    missing = missingPrerequisites() + list(also)
    if not missing:
        return
    reason = "interop suite needs " + ", ".join(missing)
    if os.environ.get(_REQUIRED_ENV, "") not in ("", "0"):
        raise LabError(f"{reason} (and {_REQUIRED_ENV} is set)")
    raise LabUnavailable(reason)


def check(argv: Sequence[str], stdin: str | None = None) -> str:
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
        out = check(["ip", "netns", "pids", namespace])
    except LabError:
        return []
    return [int(p) for p in out.split()]


def deleteNamespace(namespace: str) -> None:
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
    liveNamespaces.discard(namespace)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweepStale() -> None:
    """
    Delete namespaces left by earlier labs whose process is gone.
    """
    try:
        names = os.listdir("/var/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        match = _NAME.match(name)
        if match is not None and not _alive(int(match.group(1))):
            deleteNamespace(name)


@atexit.register
def _deleteLeftovers() -> None:
    # Last resort when a run is interrupted before its labs were destroyed.
    for namespace in sorted(liveNamespaces):
        deleteNamespace(namespace)


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def insideNamespace(namespace: str) -> Iterator[None]:
    """
    Run the body with the calling thread in network namespace C{namespace},
    then switch back.  A socket created in the body stays in C{namespace}
    for its whole life, so this process (a test run, the benchmarks) can
    hold sockets on a LAN host.
    """
    with (
        open("/proc/thread-self/ns/net") as home,
        open(namespacePath(namespace)) as target,
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
    A reactor, except that every UDP or multicast port it opens is
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


def theReactor() -> Any:
    from twisted.internet import reactor

    return reactor
