"""
Tests for L{twisted_natpmp.service._onchange}: the C{--on-change} command,
spawned without blocking, the port in its environment, killed at its
timeout, its failure logged and never fatal.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_natpmp.service._onchange import (
    _SETSID,
    OUTPUT_LIMIT,
    STOP_WAIT,
    ChangeCommand,
    portEnvironment,
)

from ._processes import ProcessRecorder


class ProcessClock(Clock, ProcessRecorder):
    def __init__(self) -> None:
        Clock.__init__(self)
        ProcessRecorder.__init__(self, pids=True)


class LoggedMixin:
    def setUp(self) -> None:
        self.events = self.enterContext(capturedLogs())  # type: ignore[attr-defined]

    events: Any

    def logged(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e["log_level"] == level]


class ChangeCommandTests(LoggedMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.reactor = ProcessClock()
        self.command = ChangeCommand(
            self.reactor,
            "notify $NATPMP_PUBLIC_PORT",
            timeout=30,
            environ={"PATH": "/x"},
            killGroup=self.reactor.killGroup,
            python="/py",
        )

    def test_environment(self) -> None:
        # The port, the previous one and the address are in the environment,
        # beside the process's own.
        d = self.command.run(
            portEnvironment(38534, 38535, 1234, "203.0.113.7", "10.2.0.1", 60)
        )
        [run] = self.reactor.runs
        # Through the setsid wrapper, then /bin/sh -c.
        self.assertEqual(run.executable, "/py")
        self.assertEqual(
            run.args,
            [
                "/py",
                "-c",
                _SETSID,
                "/bin/sh",
                "-c",
                "notify $NATPMP_PUBLIC_PORT",
            ],
        )
        self.assertEqual(
            run.env,
            {
                "PATH": "/x",
                "NATPMP_PUBLIC_PORT": "38534",
                "NATPMP_UDP_PORT": "38534",
                "NATPMP_TCP_PORT": "38535",
                "NATPMP_PREVIOUS_PORT": "1234",
                "NATPMP_PUBLIC_ADDRESS": "203.0.113.7",
                "NATPMP_GATEWAY": "10.2.0.1",
                "NATPMP_LIFETIME": "60",
            },
        )
        self.assertNoResult(d)
        run.end(0)
        self.successResultOf(d)
        self.assertEqual(self.logged(LogLevel.warn), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        # Still running at its timeout: killed, and the kill logged.
        d = self.command.run({})
        [run] = self.reactor.runs
        self.reactor.advance(29.9)
        self.assertEqual(self.reactor.killed, [])
        self.reactor.advance(0.1)
        # The whole process group, and the pipes closed so the run ends
        # even if a child kept them open.
        self.assertEqual(self.reactor.killed, [(run.pid, signal.SIGKILL)])
        self.assertEqual(run.signals, [])
        self.assertTrue(run.closed)
        self.assertNoResult(d)
        run.end(signal=9)
        self.successResultOf(d)
        [killing, failed] = self.logged(LogLevel.warn)
        self.assertIn("still running after 30 s: killing it", killing)
        self.assertIn("failed: killed after its 30 s timeout", failed)

    def test_noInterpreter(self) -> None:
        # Without an interpreter for the wrapper (an embedded Python), the
        # shell is run directly.
        command = ChangeCommand(self.reactor, "notify", python="")
        command.run({})
        [run] = self.reactor.runs
        self.assertEqual(
            (run.executable, run.args), ("/bin/sh", ["/bin/sh", "-c", "notify"])
        )

    def test_timeoutBeforeSetsid(self) -> None:
        # The group does not exist yet (the wrapper has not called setsid):
        # the process alone is killed.
        self.command.run({})
        [run] = self.reactor.runs
        self.reactor.groupMissing = True
        self.reactor.advance(30)
        self.assertEqual(run.signals, ["KILL"])
        self.assertTrue(run.closed)

    def test_oneAtATime(self) -> None:
        # Changes while a run is in progress wait; only the latest runs,
        # after the first ended, so runs never overlap.
        first = self.command.run({"NATPMP_PUBLIC_PORT": "1"})
        second = self.command.run({"NATPMP_PUBLIC_PORT": "2"})
        third = self.command.run({"NATPMP_PUBLIC_PORT": "3"})
        self.assertEqual(len(self.reactor.runs), 1)
        self.successResultOf(second)  # replaced, never run
        self.assertNoResult(third)
        self.reactor.runs[0].end(0)
        self.successResultOf(first)
        self.assertEqual(
            [r.env["NATPMP_PUBLIC_PORT"] for r in self.reactor.runs], ["1", "3"]
        )
        self.assertNoResult(third)
        self.reactor.runs[1].end(0)
        self.successResultOf(third)
        self.assertIsNone(self.command.running)
        self.command.run({"NATPMP_PUBLIC_PORT": "4"})
        self.assertEqual(len(self.reactor.runs), 3)

    def test_stopKillsAndWaits(self) -> None:
        # Stop kills the run's group, drops the waiting change and waits
        # for the run to end.
        self.command.run({"NATPMP_PUBLIC_PORT": "1"})
        waiting = self.command.run({"NATPMP_PUBLIC_PORT": "2"})
        [run] = self.reactor.runs
        stopped = self.command.stop()
        self.successResultOf(waiting)
        self.assertEqual(self.reactor.killed, [(run.pid, signal.SIGKILL)])
        self.assertNoResult(stopped)
        run.end(signal=9)
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.runs), 1)
        self.assertEqual(self.logged(LogLevel.warn), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # Nothing runs after stop.
        self.successResultOf(self.command.run({}))
        self.assertEqual(len(self.reactor.runs), 1)

    def test_stopBounded(self) -> None:
        # A run that does not end after the kill is not waited for longer
        # than STOP_WAIT.
        self.command.run({})
        stopped = self.command.stop()
        self.reactor.advance(STOP_WAIT - 0.1)
        self.assertNoResult(stopped)
        self.reactor.advance(0.1)
        self.successResultOf(stopped)
        self.assertIn("still not ended", self.logged(LogLevel.warn)[0])

    def test_stopIdle(self) -> None:
        self.successResultOf(self.command.stop())

    def test_exitStatus(self) -> None:
        # A failing command: its status and the start of its output logged.
        d = self.command.run({})
        [run] = self.reactor.runs
        run.protocol.childDataReceived(2, b"no such client\n" + b"x" * 5000)
        run.end(3)
        self.successResultOf(d)
        [failed] = self.logged(LogLevel.warn)
        self.assertIn("failed: exited with status 3; output: no such client", failed)
        self.assertLess(len(failed), OUTPUT_LIMIT + 200)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_signal(self) -> None:
        d = self.command.run({})
        self.reactor.runs[0].end(signal=15)
        self.successResultOf(d)
        self.assertIn("killed by signal 15", self.logged(LogLevel.warn)[0])

    def test_cannotStart(self) -> None:
        # A command that cannot be spawned is logged; the Deferred fires.
        self.reactor.failWith = OSError("no process table slot")
        d = self.command.run({})
        self.successResultOf(d)
        self.assertIn("no process table slot", self.logged(LogLevel.warn)[0])
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class RealProcessTests(LoggedMixin, TestCase):
    """
    The command run by the real reactor, with a real shell.
    """

    def test_runs(self) -> Any:
        from twisted.internet import reactor

        out = Path(self.mktemp())
        command = ChangeCommand(
            reactor, f"echo $NATPMP_PUBLIC_PORT $NATPMP_PREVIOUS_PORT > {out}", 10
        )
        d = command.run(portEnvironment(40000, 40000, 38534, None, "10.2.0.1", 60))
        d.addCallback(lambda _: self.assertEqual(out.read_text(), "40000 38534\n"))
        return d

    def test_timeoutKills(self) -> Any:
        from twisted.internet import reactor

        command = ChangeCommand(
            reactor, f"exec {sys.executable} -c 'import time; time.sleep(60)'", 0.5
        )
        d = command.run({})

        def check(_: object) -> None:
            self.assertIn(
                "killed after its 0.5 s timeout", " ".join(self.logged(LogLevel.warn))
            )

        return d.addCallback(check)

    def test_timeoutKillsCompound(self) -> Any:
        # A compound command: the shell forks sleep and waits for it.  The
        # timeout kills the whole group, so the run ends at once (long
        # before the 30 s sleep: the bound below is the reactor's) and no
        # process of it is left.
        from twisted.internet import reactor

        pidFile = Path(self.mktemp())
        command = ChangeCommand(
            reactor, f"echo $$ > {pidFile}; sleep 30; echo done", 0.5
        )
        d = command.run({})
        d.addTimeout(10, reactor)

        async def check(_: object) -> None:
            warnings = " ".join(self.logged(LogLevel.warn))
            self.assertIn("killed after its 0.5 s timeout", warnings)
            self.assertNotIn("output: done", warnings)
            pgid = int(pidFile.read_text())
            # SIGKILL reaches the shell's children asynchronously: give the
            # kernel a moment (at most 5 s of the reactor's time), however
            # long the sleep was to run.
            for _ in range(100):
                if not _liveInGroup(pgid):
                    break
                await deferLater(reactor, 0.05)
            self.assertEqual(_liveInGroup(pgid), [])

        return d.addCallback(lambda _: Deferred.fromCoroutine(check(_)))


def _liveInGroup(pgid: int) -> list[int]:
    """
    The processes of group C{pgid} that are alive (not zombies): from
    C{/proc}, or by C{os.killpg} where there is none.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    live = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(entry.name))
    return live
