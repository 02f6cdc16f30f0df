"""
Tests for L{twisted_natpmp.server.backends.nftables._process}: one run at a
time, through a fake C{spawnProcess}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp.server.backends.nftables import (
    IProcessRunner,
    ProcessFailed,
    ProcessRunner,
)
from twisted_natpmp.server.backends.nftables.testing import RecordingRunner


class FakeProcess:
    """
    A spawned process: what it was given, and its end, under the test's
    control.
    """

    def __init__(self, protocol: ProcessProtocol, executable: str, args: list[str]):
        self.protocol = protocol
        self.executable = executable
        self.args = args
        self.stdin = b""
        self.stdinClosed = False
        self.signals: list[str] = []
        self.ended = False
        protocol.makeConnection(self)  # type: ignore[arg-type,no-untyped-call]

    def write(self, data: bytes) -> None:
        self.stdin += data

    def closeStdin(self) -> None:
        self.stdinClosed = True

    def signalProcess(self, signal: str) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(signal)

    def exit(self, status: int, out: bytes = b"", err: bytes = b"") -> None:
        self.ended = True
        if out:
            self.protocol.outReceived(out)
        if err:
            self.protocol.errReceived(err)
        reason = (
            ProcessDone(0)  # type: ignore[no-untyped-call]
            if status == 0
            else ProcessTerminated(status)  # type: ignore[no-untyped-call]
        )
        self.protocol.processEnded(Failure(reason))


class FakeReactor:
    def __init__(self) -> None:
        self.spawned: list[FakeProcess] = []
        self.refuse: OSError | None = None

    def spawnProcess(
        self,
        protocol: ProcessProtocol,
        executable: str,
        args: list[str],
        env: Any = None,
        **kwargs: Any,
    ) -> FakeProcess:
        if self.refuse is not None:
            raise self.refuse
        process = FakeProcess(protocol, executable, args)
        self.spawned.append(process)
        return process


class ProcessRunnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.clock = Clock()
        self.runner = ProcessRunner(
            self.reactor,  # type: ignore[arg-type]
            self.clock,
            "/usr/sbin/nft",
            timeout=5,
        )

    def test_interface(self) -> None:
        """
        The runner and its recording fake provide L{IProcessRunner}.
        """
        self.assertTrue(verifyObject(IProcessRunner, self.runner))
        self.assertTrue(verifyObject(IProcessRunner, RecordingRunner()))

    def test_runsOneAtATime(self) -> None:
        """
        A run starts when the one before it has ended; each gets its
        arguments and standard input, and fires with its output.
        """
        first = self.runner.run(["-f", "-"], b"batch 1\n")
        second = self.runner.run(["-f", "-"], b"batch 2\n")
        [process] = self.reactor.spawned
        self.assertEqual(process.args, ["/usr/sbin/nft", "-f", "-"])
        self.assertEqual((process.stdin, process.stdinClosed), (b"batch 1\n", True))
        process.exit(0, b"done")
        self.assertEqual(self.successResultOf(first), b"done")
        self.assertEqual(self.reactor.spawned[1].stdin, b"batch 2\n")
        self.assertNoResult(second)

    def test_failure(self) -> None:
        """
        A run that exits with another status than 0 fails with
        L{ProcessFailed}, carrying its status and standard error.
        """
        running = self.runner.run([], b"")
        self.reactor.spawned[0].exit(
            1, err=b"Error: Could not process rule: File exists\n"
        )
        error = self.failureResultOf(running, ProcessFailed).value
        self.assertEqual(error.status, 1)
        self.assertEqual(
            str(error),
            "/usr/sbin/nft exited 1: Error: Could not process rule: File exists",
        )

    def test_timeout(self) -> None:
        """
        A run that takes longer than the deadline is killed and fails; the
        next one starts.
        """
        running = self.runner.run([], b"")
        after = self.runner.run([], b"")
        self.clock.advance(5)
        process = self.reactor.spawned[0]
        self.assertEqual(process.signals, ["KILL"])
        process.exit(9)
        error = self.failureResultOf(running, ProcessFailed).value
        self.assertIsNone(error.status)
        self.assertIn("no answer within 5 s", error.stderr)
        self.assertTrue(error.timedOut)
        self.reactor.spawned[1].exit(0)
        self.successResultOf(after)

    def test_cannotStart(self) -> None:
        """
        A program that cannot be started fails the run, and the runner goes
        on.
        """
        self.reactor.refuse = OSError("no such program")
        self.failureResultOf(self.runner.run([], b""), ProcessFailed)
        self.reactor.refuse = None
        later = self.runner.run([], b"")
        self.reactor.spawned[0].exit(0)
        self.successResultOf(later)


class RecordingRunnerTests(SynchronousTestCase):
    def test_records(self) -> None:
        """
        The fake records each run and starts the next only when the test
        ends the one in flight.
        """
        runner = RecordingRunner()
        first = runner.run(["-f", "-"], b"a\n")
        second = runner.run(["-f", "-"], b"b\n")
        self.assertEqual([r.stdin for r in runner.runs], ["a\n"])
        runner.succeed(b"out")
        self.assertEqual(self.successResultOf(first), b"out")
        runner.fail("Error: nope")
        self.assertEqual(
            self.failureResultOf(second, ProcessFailed).value.stderr, "Error: nope"
        )
        self.assertRaises(AssertionError, runner.succeed)
