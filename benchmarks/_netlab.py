"""
The interop suite's namespace lab (C{tests/interop/_lab.py}), borrowed for
the benchmarks that need a real router (miniupnpd) or multicast: network
namespaces the lab creates and deletes itself, so that no packet leaves
them.

The lab is built for trial test cases; L{netLab} hands it a small stand-in
that gives it a directory and runs its cleanups.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from twisted.internet.defer import maybeDeferred

from . import _cpus, _udp

#: The lab's classes (L{tests.interop._lab.Lab}, L{tests.interop._lab.Daemon}),
#: imported only when a lab is built.
Lab = Any
Daemon = Any

#: How long a gateway may take to answer its first request after starting.
START_TIMEOUT = 20.0


class LabUnavailable(Exception):
    """
    The lab cannot run here; the message says why.
    """


class _Scope:
    """
    What L{Lab.build} needs of a test case: a directory and cleanups.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cleanups: list[Callable[[], object]] = []

    def mktemp(self) -> str:
        return str(self.directory / "lab")

    def addCleanup(self, f: Callable[[], object]) -> None:
        self.cleanups.append(f)

    async def close(self) -> None:
        while self.cleanups:
            await maybeDeferred(self.cleanups.pop())


def labModule() -> Any:
    """
    The interop lab module.

    @raise LabUnavailable: it cannot be imported, or this machine lacks what
        it needs (root, ip, miniupnpd, ...).
    """
    try:
        # Imported by name: a type checker need not read the test suite.
        _lab = importlib.import_module("tests.interop._lab")
    except ImportError as e:
        raise LabUnavailable(
            f"the interop lab (tests/interop/_lab.py) is not importable: {e}"
        ) from None
    missing = _lab.missingPrerequisites()
    if missing:
        raise LabUnavailable("the lab needs " + ", ".join(missing))
    return _lab


@asynccontextmanager
async def netLab(directory: Path) -> AsyncIterator[Lab]:
    """
    A lab (namespaces, no daemons yet), deleted with everything it started
    when the block ends.
    """
    _lab = labModule()
    scope = _Scope(directory)
    try:
        yield _lab.Lab.build(scope)
    finally:
        await scope.close()


def lanSocket(
    lab: Lab, address: str | None = None, timeout: float = _udp.TIMEOUT
) -> socket.socket:
    """
    A UDP socket on the first LAN host, connected to port 5351 of the
    router's C{address} (by default its LAN address, L{ROUTER_LAN}); it
    lives in that namespace for its whole life.
    """
    _lab = labModule()
    with _lab.insideNamespace(lab.lans[0]):
        return _udp.connect(address or _lab.ROUTER_LAN, 5351, timeout)


async def waitAnswering(
    lab: Lab, address: str, ended: Callable[[], bool], what: str
) -> None:
    """
    Wait until the router answers an external-address request from the
    first LAN host (a bounded number of tries), unless C{ended()} says the
    server has gone.
    """
    _lab = labModule()

    def answers() -> bool:
        if ended():
            raise LabUnavailable(f"{what} ended before answering")
        with lanSocket(lab, address, 0.02) as sock:
            try:
                _udp.oneAtATime(sock, [_udp.EXTERNAL_ADDRESS], 1)
            except (_udp.NoReply, OSError):
                return False
        return True

    await _lab.waitUntil(answers, f"{what} answering", START_TIMEOUT, 0.05)


class OurGateway:
    """
    C{twistd -n natpmp-gateway} in the router's namespace, as a user runs
    it (logging to its standard output, which the lab keeps).
    """

    name = "our gateway (twistd natpmp-gateway)"

    def __init__(self, lab: Lab, address: str | None = None) -> None:
        """
        @param address: where it serves, on the router's LAN bridge; by
            default the router's LAN address (L{ROUTER_LAN}).  Another
            address is added to the bridge.
        """
        self.lab = lab
        self.address = address or labModule().ROUTER_LAN
        self.daemon: Daemon | None = None

    async def start(self) -> None:
        _lab = labModule()
        if self.address != _lab.ROUTER_LAN:
            self.lab.check(
                self.lab.router,
                ["ip", "address", "replace", f"{self.address}/24", "dev", "br0"],
            )
        daemon = self.daemon = self.lab.spawn(
            self.lab.router,
            self.lab.twistd(
                "natpmp-gateway",
                f"--listen={self.address}/24",
                f"--external-address={_lab.ROUTER_WAN}",
            ),
            "natpmp-gateway",
        )
        _cpus.pinServer(daemon.pid)
        await waitAnswering(
            self.lab, self.address, lambda: daemon.ended, "twistd natpmp-gateway"
        )

    async def stop(self) -> None:
        """
        Stop it; its table is gone with it, as after a reboot.
        """
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None


class Miniupnpd:
    """
    Debian's miniupnpd in the router's namespace, run as in production: as
    a daemon, logging only notices, to a syslog that goes nowhere (a
    private mount namespace where /dev/console is /dev/null; PROTOCOL.md
    Part B).  The lab's own L{Lab.startMiniupnpd} runs it in the foreground
    with debug logging, a line per request to a pipe, which is slower, and
    blocks it when the pipe is not read.
    """

    name = "miniupnpd 2.3.1"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.address = labModule().ROUTER_LAN
        self.pid: int | None = None
        self._pidfile = lab.directory / "miniupnpd-bench.pid"

    async def start(self) -> None:
        _lab = labModule()
        conf = self.lab.directory / "miniupnpd-bench.conf"
        conf.write_text(_lab._MINIUPNPD_CONF.format(uuid=uuid.uuid4()))
        self._pidfile.unlink(missing_ok=True)
        script = (
            "mount --bind /dev/null /dev/console &&"
            f" exec miniupnpd -f {conf} -P {self._pidfile}"
        )
        daemon = self.lab.spawn(
            self.lab.router,
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            "miniupnpd",
        )
        # It forks: the process started ends, the daemon writes its pid.
        await _lab.waitUntil(
            lambda: daemon.ended and self._pidfile.exists(),
            "miniupnpd's pid file",
            START_TIMEOUT,
            0.02,
        )
        if daemon.code != 0:
            raise LabUnavailable(f"miniupnpd exited {daemon.code}: {daemon.output()}")
        self.pid = int(self._pidfile.read_text().strip())
        _cpus.pinServer(self.pid)
        await waitAnswering(
            self.lab, self.address, lambda: not _alive(self.pid), "miniupnpd"
        )

    async def stop(self) -> None:
        """
        Stop it by its pid and flush its firewall chains, as a reboot
        would (it does not delete its rules when it stops).
        """
        _lab = labModule()
        pid, self.pid = self.pid, None
        if pid is not None:
            for number in (signal.SIGTERM, signal.SIGKILL):
                if _alive(pid):
                    os.kill(pid, number)
                    try:
                        await _lab.waitUntil(
                            lambda: not _alive(pid), "miniupnpd exit", 5.0, 0.02
                        )
                    except _lab.LabError:
                        continue
                break
        self.lab.check(
            self.lab.router,
            ["iptables-legacy-restore", "-w", "5", "--noflush"],
            _lab._FLUSH,
        )


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive; the lab reaps only what it spawned.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
