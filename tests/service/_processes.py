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
    signals: list[str] = field(default_factory=list)

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)

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

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.failWith: Exception | None = None

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
        run = Run(protocol, executable, list(args), dict(env or {}))
        self.runs.append(run)
        protocol.makeConnection(run)  # type: ignore[arg-type,no-untyped-call]
        return run
