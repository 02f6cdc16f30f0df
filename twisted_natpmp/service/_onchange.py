# -*- test-case-name: tests.service.test_onchange -*-
"""
L{ChangeCommand}: the C{--on-change} command, run when the forwarded port
changes, with the port in its environment.

It runs through C{/bin/sh -c} with L{reactor.spawnProcess
<twisted.internet.interfaces.IReactorProcess.spawnProcess>}, never blocking
the reactor; it is killed (SIGKILL) when it outlives its timeout; its
failure (an exit status other than 0, a signal, the timeout) is logged with
the start of its output, and is never fatal.  The environment is this
process's, plus:

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
from collections.abc import Mapping as MappingType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["DEFAULT_TIMEOUT", "OUTPUT_LIMIT", "ChangeCommand", "portEnvironment"]

log = Logger()

#: Seconds the command may run before it is killed.
DEFAULT_TIMEOUT = 30.0
#: Bytes of the command's output kept for the log.
OUTPUT_LIMIT = 2048


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

    def __init__(self, command: str, timeout: float, clock: Any) -> None:
        self.command = command
        self.timeout = timeout
        self.output = bytearray()
        self.ended: Deferred[None] = Deferred()
        self.timedOut = False
        self._timer: IDelayedCall = clock.callLater(timeout, self._kill)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        room = OUTPUT_LIMIT - len(self.output)
        if room > 0:
            self.output += data[:room]

    def _kill(self) -> None:
        self.timedOut = True
        log.warn(
            "--on-change command {command!r} still running after {timeout:g} s:"
            " killing it",
            command=self.command,
            timeout=self.timeout,
        )
        assert self.transport is not None
        try:
            self.transport.signalProcess("KILL")
        except Exception as e:  # it ended meanwhile
            log.debug("could not kill: {error}", error=str(e))

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        output = self.output.decode("utf-8", "replace").strip()
        if reason.check(ProcessDone) and not self.timedOut:
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
    A shell command run on every change of the forwarded port.

    @ivar command: the command line, run by C{/bin/sh -c}.
    @ivar timeout: seconds before a run is killed.
    """

    def __init__(
        self,
        reactor: Any,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        environ: MappingType[str, str] | None = None,
        shell: str = "/bin/sh",
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess} and C{IReactorTime}.
        @param environ: the environment the variables are added to (by
            default this process's, read at each run).
        """
        self._reactor = reactor
        self.command = command
        self.timeout = timeout
        self._environ = environ
        self._shell = shell

    def run(self, variables: dict[str, str]) -> Deferred[None]:
        """
        Start the command with C{variables} added to its environment.

        @return: fires with L{None} when it ended, however it ended; it
            never fails (a command that cannot be started is logged).
        """
        environ = dict(os.environ if self._environ is None else self._environ)
        environ.update(variables)
        protocol = _CommandProtocol(self.command, self.timeout, self._reactor)
        try:
            self._reactor.spawnProcess(
                protocol,
                self._shell,
                [self._shell, "-c", self.command],
                env=environ,
            )
        except Exception as e:
            protocol.processEnded(Failure(e))
        return protocol.ended
