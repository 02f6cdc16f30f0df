"""
Tests for L{twisted_natpmp.service._onchange}: the C{--on-change} command,
spawned without blocking, the port in its environment, killed at its
timeout, its failure logged and never fatal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_natpmp.service._onchange import (
    OUTPUT_LIMIT,
    ChangeCommand,
    portEnvironment,
)

from ._processes import ProcessRecorder


class ProcessClock(Clock, ProcessRecorder):
    def __init__(self) -> None:
        Clock.__init__(self)
        ProcessRecorder.__init__(self)


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
        )

    def test_environment(self) -> None:
        # The port, the previous one and the address are in the environment,
        # beside the process's own.
        d = self.command.run(
            portEnvironment(38534, 38535, 1234, "203.0.113.7", "10.2.0.1", 60)
        )
        [run] = self.reactor.runs
        self.assertEqual(run.executable, "/bin/sh")
        self.assertEqual(run.args, ["/bin/sh", "-c", "notify $NATPMP_PUBLIC_PORT"])
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
        self.assertEqual(run.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(run.signals, ["KILL"])
        self.assertNoResult(d)
        run.end(signal=9)
        self.successResultOf(d)
        [killing, failed] = self.logged(LogLevel.warn)
        self.assertIn("still running after 30 s: killing it", killing)
        self.assertIn("failed: killed after its 30 s timeout", failed)

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
