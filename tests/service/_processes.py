"""
A recorder of spawned processes for the tests of the C{--on-change}
command: C{spawnProcess} as C{IReactorProcess} has it, the process's end
played by the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure


@dataclass
class Run:
    """
    One spawned process: what was asked, and the signals sent to it.
    """

    protocol: ProcessProtocol
    executable: str
    args: list[str]
    env: dict[str, str]
    pid: int | None = None
    signals: list[str] = field(default_factory=list)
    closed: bool = False

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)

    def loseConnection(self) -> None:
        self.closed = True

    def end(self, exitCode: int = 0, signal: int | None = None) -> None:
        """
        The process ends with C{exitCode}, or killed by C{signal}.
        """
        if exitCode == 0 and signal is None:
            reason = Failure(ProcessDone(0))  # type: ignore[no-untyped-call]
        else:
            reason = Failure(
                ProcessTerminated(exitCode or None, signal)  # type: ignore[no-untyped-call]
            )
        self.protocol.processEnded(reason)


class ProcessRecorder:
    """
    Records every C{spawnProcess}; C{failWith} makes the next spawn raise.
    """

    def __init__(self, pids: bool = False) -> None:
        """
        @param pids: give each run a made-up process id (only with
            L{killGroup} standing for C{os.killpg}).
        """
        self.pids = pids
        self.runs: list[Run] = []
        self.failWith: Exception | None = None
        #: Every C{killGroup(pgid, signal)}.
        self.killed: list[tuple[int, int]] = []
        #: Makes the next C{killGroup} raise (no such group yet).
        self.groupMissing = False

    def killGroup(self, pgid: int, signal: int) -> None:
        """
        Stands for C{os.killpg}.
        """
        if self.groupMissing:
            raise ProcessLookupError(pgid)
        self.killed.append((pgid, signal))

    def spawnProcess(
        self,
        protocol: ProcessProtocol,
        executable: str,
        args: list[str],
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Run:
        if self.failWith is not None:
            raise self.failWith
        # A process id only where the test kills groups with killGroup,
        # so that os.killpg never gets a made-up one.
        pid = 4242 + len(self.runs) if self.pids else None
        run = Run(protocol, executable, list(args), dict(env or {}), pid=pid)
        self.runs.append(run)
        protocol.makeConnection(run)  # type: ignore[arg-type,no-untyped-call]
        return run
