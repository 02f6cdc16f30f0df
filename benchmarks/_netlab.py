"""
The network-namespace lab (L{tools.netlab}, shared with the interop suite),
for the benchmarks that need a real router (miniupnpd) or multicast:
network namespaces the lab creates and deletes itself, so that no packet
leaves them.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tools.netlab import (
    ROUTER_LAN,
    ROUTER_WAN,
    Daemon,
    Lab,
    LabError,
    LabUnavailable,
    insideNamespace,
    miniupnpdConfig,
    missingPrerequisites,
    openLab,
    waitUntil,
)

from . import _cpus, _udp

__all__ = [
    "Lab",
    "LabUnavailable",
    "Miniupnpd",
    "OurGateway",
    "lanSocket",
    "netLab",
    "waitAnswering",
]

#: How long a gateway may take to answer its first request after starting.
START_TIMEOUT = 20.0


@asynccontextmanager
async def netLab(directory: Path) -> AsyncIterator[Lab]:
    """
    A lab (namespaces, no daemons yet), deleted with everything it started
    when the block ends.

    @raise LabUnavailable: this machine lacks what the lab needs (root, ip,
        miniupnpd, ...), whatever C{NATPMP_INTEROP_REQUIRED} says: a
        benchmark that cannot run is left out, not failed.
    """
    missing = missingPrerequisites()
    if missing:
        raise LabUnavailable("the lab needs " + ", ".join(missing))
    async with openLab(directory / "lab") as lab:
        yield lab


def lanSocket(
    lab: Lab, address: str | None = None, timeout: float = _udp.TIMEOUT
) -> socket.socket:
    """
    A UDP socket on the first LAN host, connected to port 5351 of the
    router's C{address} (by default its LAN address, L{ROUTER_LAN}); it
    lives in that namespace for its whole life.
    """
    with insideNamespace(lab.lans[0]):
        return _udp.connect(address or ROUTER_LAN, 5351, timeout)


async def waitAnswering(
    lab: Lab, address: str, ended: Callable[[], bool], what: str
) -> None:
    """
    Wait until the router answers an external-address request from the
    first LAN host (a bounded number of tries), unless C{ended()} says the
    server has gone.
    """

    def answers() -> bool:
        if ended():
            raise LabUnavailable(f"{what} ended before answering")
        with lanSocket(lab, address, 0.02) as sock:
            try:
                _udp.oneAtATime(sock, [_udp.EXTERNAL_ADDRESS], 1)
            except (_udp.NoReply, OSError):
                return False
        return True

    await waitUntil(answers, f"{what} answering", START_TIMEOUT, 0.05)


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
        self.address = address or ROUTER_LAN
        self.daemon: Daemon | None = None

    async def start(self) -> None:
        if self.address != ROUTER_LAN:
            self.lab.check(
                self.lab.router,
                ["ip", "address", "replace", f"{self.address}/24", "dev", "br0"],
            )
        daemon = self.daemon = self.lab.spawn(
            self.lab.router,
            self.lab.twistd(
                "natpmp-gateway",
                f"--listen={self.address}/24",
                f"--external-address={ROUTER_WAN}",
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
        self.address = ROUTER_LAN
        self.pid: int | None = None
        self._pidfile = lab.directory / "miniupnpd-bench.pid"

    async def start(self) -> None:
        conf = self.lab.directory / "miniupnpd-bench.conf"
        conf.write_text(miniupnpdConfig())
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
        await waitUntil(
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
        pid, self.pid = self.pid, None
        if pid is not None:
            for number in (signal.SIGTERM, signal.SIGKILL):
                if _alive(pid):
                    os.kill(pid, number)
                    try:
                        await waitUntil(
                            lambda: not _alive(pid), "miniupnpd exit", 5.0, 0.02
                        )
                    except LabError:
                        continue
                break
        self.lab.flushMiniupnpdChains()


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
