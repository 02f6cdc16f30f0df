"""
Processes and waits in the lab: every wait polls through the reactor a
bounded number of times; every process the lab starts is kept with its
output, and ended by its pid.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from ._namespaces import LabError, namespacePath, theReactor


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
        await deferLater(theReactor(), interval)
    if not predicate():
        raise LabError(f"{what}: not seen within {timeout:g} s")


async def sleep(seconds: float) -> None:
    """
    Let the reactor run for C{seconds} (a bounded wait; no wall-clock sleep).
    """
    await deferLater(theReactor(), seconds)


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
    memory and in a log file in the lab's directory.

    @ivar pid: the process id (that of the program itself: C{ip netns exec}
        execs it).
    @ivar namespace: the network namespace it runs in.
    """

    def __init__(self, name: str, argv: Sequence[str], cwd: Path, env: dict[str, str]):
        self.name = name
        self.argv = tuple(argv)
        self.log = cwd / f"{name}.log"
        self._collector = _Collector(self.log)
        transport = theReactor().spawnProcess(
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


def listensOn(pid: int, port: int, namespace: str) -> bool:
    """
    Whether process C{pid}, already inside network namespace C{namespace},
    holds a UDP socket bound to C{port}.

    Both checks matter: until C{ip netns exec} has switched namespaces, the
    process is a fork of this process and its /proc/PID/net shows the
    root namespace, where another program may well use the port.
    """
    try:
        if (
            os.stat(f"/proc/{pid}/ns/net").st_ino
            != os.stat(namespacePath(namespace)).st_ino
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
