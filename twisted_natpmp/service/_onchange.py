# -*- test-case-name: tests.service.test_onchange -*-
"""
L{ChangeCommand}: the C{--on-change} command, run when the forwarded port
changes, with the port in its environment.

It runs through C{/bin/sh -c} with L{reactor.spawnProcess
<twisted.internet.interfaces.IReactorProcess.spawnProcess>}, never blocking
the reactor, in a session (and process group) of its own: a small Python
wrapper, this interpreter itself (C{sys.executable}, so present wherever
the service runs, unlike util-linux's C{setsid}), calls C{os.setsid()} and
execs the shell.  When the command outlives its timeout, or the service
stops, the whole group is killed (SIGKILL with C{os.killpg}), so that a
compound command (C{sleep 30; echo done}) goes with its children, and the
pipes are closed, so the run ends even if a child escaped the group.  Its
failure (an exit status other than 0, a signal, the timeout) is logged
with the start of its output, and is never fatal.

One run at a time: a change while the command runs waits for it to end,
and of several such changes only the latest is run (the ports in between
are stale by then), so that runs never overlap nor finish out of order.

The environment is this process's, plus:

  - C{NATPMP_PUBLIC_PORT}: the public port (UDP's);
  - C{NATPMP_UDP_PORT}, C{NATPMP_TCP_PORT}: each transport's public port
    (the same, unless the gateway chose another for TCP);
  - C{NATPMP_PREVIOUS_PORT}: the port before, empty at the first;
  - C{NATPMP_PUBLIC_ADDRESS}: the gateway's public address, empty if
    unknown;
  - C{NATPMP_GATEWAY}, C{NATPMP_LIFETIME}: the gateway and the lease.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from collections.abc import Mapping as MappingType
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "DEFAULT_TIMEOUT",
    "OUTPUT_LIMIT",
    "STOP_WAIT",
    "ChangeCommand",
    "portEnvironment",
]

log = Logger()

#: Seconds the command may run before it is killed.
DEFAULT_TIMEOUT = 30.0
#: Bytes of the command's output kept for the log.
OUTPUT_LIMIT = 2048
#: Seconds L{ChangeCommand.stop} waits for a killed run to end.
STOP_WAIT = 5.0

#: Run by this interpreter: a session of its own, then the shell
#: (C{sys.argv[1:]} is the shell's argv: the shell, C{-c}, the command).
_SETSID = "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])"

#: Kills a process group: C{os.killpg(pgid, signal)}.
KillGroup = Callable[[int, int], None]


def portEnvironment(
    port: int,
    tcpPort: int,
    previous: int | None,
    address: object,
    gateway: object,
    lifetime: int,
) -> dict[str, str]:
    """
    The variables that tell the command of the change (see the module).
    """
    return {
        "NATPMP_PUBLIC_PORT": str(port),
        "NATPMP_UDP_PORT": str(port),
        "NATPMP_TCP_PORT": str(tcpPort),
        "NATPMP_PREVIOUS_PORT": "" if previous is None else str(previous),
        "NATPMP_PUBLIC_ADDRESS": "" if address is None else str(address),
        "NATPMP_GATEWAY": str(gateway),
        "NATPMP_LIFETIME": str(lifetime),
    }


class _CommandProtocol(ProcessProtocol):
    """
    One run of the command: its output kept (up to L{OUTPUT_LIMIT} bytes),
    its timer, its end logged.
    """

    def __init__(
        self, command: str, timeout: float, clock: Any, killGroup: KillGroup
    ) -> None:
        self.command = command
        self.timeout = timeout
        self.output = bytearray()
        self.ended: Deferred[None] = Deferred()
        self.timedOut = False
        self.stopped = False
        self._killGroup = killGroup
        self._timer: IDelayedCall = clock.callLater(timeout, self._timeUp)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        room = OUTPUT_LIMIT - len(self.output)
        if room > 0:
            self.output += data[:room]

    def _timeUp(self) -> None:
        self.timedOut = True
        log.warn(
            "--on-change command {command!r} still running after {timeout:g} s:"
            " killing it",
            command=self.command,
            timeout=self.timeout,
        )
        self.kill()

    def stop(self) -> None:
        """
        Kill the run because the service stops.
        """
        self.stopped = True
        if self._timer.active():
            self._timer.cancel()
        self.kill()

    def kill(self) -> None:
        """
        SIGKILL the command's process group (the shell and its children),
        or the process alone if its group is not made yet, and close the
        pipes so that the run ends.
        """
        transport = self.transport
        assert transport is not None
        pid = getattr(transport, "pid", None)
        try:
            if pid is None:
                raise ProcessLookupError("no process id")
            self._killGroup(pid, signal.SIGKILL)
        except OSError:
            # The wrapper has not called setsid yet, or it ended meanwhile.
            try:
                transport.signalProcess("KILL")
            except Exception as e:
                log.debug("could not kill: {error}", error=str(e))
        transport.loseConnection()

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        output = self.output.decode("utf-8", "replace").strip()
        if self.stopped:
            log.info(
                "--on-change command {command!r} killed: stopping",
                command=self.command,
            )
        elif reason.check(ProcessDone) and not self.timedOut:
            log.info("--on-change command {command!r} done", command=self.command)
        else:
            value = reason.value
            if self.timedOut:
                why = f"killed after its {self.timeout:g} s timeout"
            elif isinstance(value, ProcessTerminated) and value.signal is not None:
                why = f"killed by signal {value.signal}"
            elif isinstance(value, ProcessTerminated):
                why = f"exited with status {value.exitCode}"
            else:
                why = str(value)
            log.warn(
                "--on-change command {command!r} failed: {why}{output}",
                command=self.command,
                why=why,
                output=f"; output: {output}" if output else "",
                exitCode=getattr(value, "exitCode", None),
                timedOut=self.timedOut,
            )
        self.ended.callback(None)


class ChangeCommand:
    """
    A shell command run on every change of the forwarded port, one run at
    a time (see the module).

    @ivar command: the command line, run by C{/bin/sh -c}.
    @ivar timeout: seconds before a run is killed.
    @ivar running: the run in progress, or L{None}.
    """

    def __init__(
        self,
        reactor: Any,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        environ: MappingType[str, str] | None = None,
        shell: str = "/bin/sh",
        *,
        killGroup: KillGroup = os.killpg,
        python: str = sys.executable,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess} and C{IReactorTime}.
        @param environ: the environment the variables are added to (by
            default this process's, read at each run).
        @param killGroup: kills a process group (tests pass a recorder).
        @param python: the interpreter that runs the setsid wrapper; an
            empty one (C{sys.executable} of an embedded interpreter) runs
            the shell directly, in this process's group, and a timeout then
            kills the shell alone.
        """
        self._reactor = reactor
        self.command = command
        self.timeout = timeout
        self._environ = environ
        self._shell = shell
        self._killGroup = killGroup
        self._python = python
        self.running: _CommandProtocol | None = None
        self._pending: tuple[dict[str, str], Deferred[None]] | None = None
        self._stopped = False

    def run(self, variables: dict[str, str]) -> Deferred[None]:
        """
        Run the command with C{variables} added to its environment: now, or
        once the run in progress ended.  A later call while this one waits
        replaces it.

        @return: fires with L{None} when this run ended, however it ended,
            or when it was replaced or dropped at stop before it started;
            it never fails (a command that cannot be started is logged).
        """
        if self._stopped:
            return succeed(None)
        if self.running is None:
            return self._start(variables)
        if self._pending is not None:
            self._pending[1].callback(None)
        waiting: Deferred[None] = Deferred()
        self._pending = (variables, waiting)
        return waiting

    def stop(self) -> Deferred[None]:
        """
        Run nothing more: drop the waiting change, kill the run in progress
        (its whole process group) and wait for it, at most L{STOP_WAIT}
        seconds.

        @return: fires with L{None} when no run is left, or at the bound.
        """
        self._stopped = True
        self._dropPending()
        running = self.running
        if running is None:
            return succeed(None)
        running.stop()
        done: Deferred[None] = Deferred()

        def ended(result: object) -> object:
            if timer.active():
                timer.cancel()
                done.callback(None)
            return result

        def giveUp() -> None:
            log.warn(
                "--on-change command {command!r} still not ended {wait:g} s"
                " after it was killed; not waiting for it",
                command=self.command,
                wait=STOP_WAIT,
            )
            done.callback(None)

        timer = self._reactor.callLater(STOP_WAIT, giveUp)
        running.ended.addBoth(ended)
        return done

    def _dropPending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].callback(None)

    def _start(self, variables: dict[str, str]) -> Deferred[None]:
        environ = dict(os.environ if self._environ is None else self._environ)
        environ.update(variables)
        protocol = _CommandProtocol(
            self.command, self.timeout, self._reactor, self._killGroup
        )
        self.running = protocol
        protocol.ended.addCallback(self._ended, protocol)
        argv = [self._shell, "-c", self.command]
        if self._python:
            argv = [self._python, "-c", _SETSID, *argv]
        try:
            self._reactor.spawnProcess(protocol, argv[0], argv, env=environ)
        except Exception as e:
            protocol.processEnded(Failure(e))
        return protocol.ended

    def _ended(self, result: None, protocol: _CommandProtocol) -> None:
        if self.running is protocol:
            self.running = None
        pending, self._pending = self._pending, None
        if pending is not None and not self._stopped:
            self._start(pending[0]).chainDeferred(pending[1])
        elif pending is not None:
            pending[1].callback(None)
