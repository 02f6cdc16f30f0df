# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
A recording fake of the programs the nftables backend runs, for tests
(ours and yours): L{RecordingRunner} keeps every run it is asked for and
answers each when the test says so, with success or a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from zope.interface import implementer

from ._process import IProcessRunner, ProcessFailed

__all__ = ["RecordedRun", "RecordingRunner"]


@dataclass(slots=True)
class RecordedRun:
    """
    One run asked for.

    @ivar arguments: the program's arguments.
    @ivar stdin: its standard input, decoded.
    @ivar done: fired by L{RecordingRunner.succeed} or
        L{RecordingRunner.fail}.
    """

    arguments: tuple[str, ...]
    stdin: str
    done: Deferred[bytes] = field(default_factory=Deferred)


@implementer(IProcessRunner)
class RecordingRunner:
    """
    An L{IProcessRunner} that runs nothing: it records each run and, as the
    real runner does, starts one only when the one before it has ended.

    @ivar program: the name the runs are recorded for.
    @ivar runs: every run started, in order (the one in flight last).
    @ivar automatic: if not L{None}, the output every run succeeds with at
        once (a firewall that accepts everything).
    """

    def __init__(self, program: str = "nft", automatic: bytes | None = None) -> None:
        self.program = program
        self.runs: list[RecordedRun] = []
        self.automatic = automatic
        self._waiting: list[RecordedRun] = []
        self._inFlight: RecordedRun | None = None

    def run(self, arguments: Sequence[str], stdin: bytes) -> Deferred[bytes]:
        run = RecordedRun(tuple(arguments), stdin.decode("ascii"))
        self._waiting.append(run)
        self._start()
        return run.done

    def _start(self) -> None:
        while self._inFlight is None and self._waiting:
            run = self._inFlight = self._waiting.pop(0)
            self.runs.append(run)
            if self.automatic is not None:
                self._end(run.done.callback, self.automatic)

    @property
    def inFlight(self) -> RecordedRun | None:
        """
        The run started and not yet ended, if any.
        """
        return self._inFlight

    def succeed(self, output: bytes = b"") -> RecordedRun:
        """
        End the run in flight with success and C{output}.

        @return: that run.
        """
        run = self._current()
        self._end(run.done.callback, output)
        return run

    def fail(
        self, stderr: str = "Error: Could not process rule", status: int = 1
    ) -> RecordedRun:
        """
        End the run in flight with a failure, as C{nft} exiting C{status}
        with C{stderr}.

        @return: that run.
        """
        run = self._current()
        self._end(run.done.errback, ProcessFailed(self.program, status, stderr))
        return run

    def timeOut(self) -> RecordedRun:
        """
        End the run in flight as killed for taking too long (what it did
        is not known).

        @return: that run.
        """
        run = self._current()
        failed = ProcessFailed(self.program, None, "no answer within 10 s", True)
        self._end(run.done.errback, failed)
        return run

    def _current(self) -> RecordedRun:
        if self._inFlight is None:
            raise AssertionError(f"no {self.program} run in flight")
        return self._inFlight

    def _end(self, fire: object, value: object) -> None:
        self._inFlight = None
        fire(value)  # type: ignore[operator]
        self._start()
