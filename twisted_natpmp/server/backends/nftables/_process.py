# -*- test-case-name: tests.server.nftables.test_process -*-
"""
L{ProcessRunner}: run one program (C{nft}, C{conntrack}) with some
arguments and a standard input, through C{reactor.spawnProcess}, one run at
a time, each within a deadline.  The reactor is never blocked: the program
runs while the gateway answers other requests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = ["DEFAULT_RUN_TIMEOUT", "IProcessRunner", "ProcessFailed", "ProcessRunner"]

#: How long one run may take, in seconds, before it is killed and fails.
DEFAULT_RUN_TIMEOUT = 10.0


class ProcessFailed(Exception):
    """
    A run failed: the program exited with another status than 0, was
    killed, could not be started, or took too long.

    @ivar program: the program's path.
    @ivar status: its exit status, or L{None} (killed, never started).
    @ivar stderr: what it wrote to standard error, decoded.
    @ivar timedOut: whether it was killed for taking too long: what it did
        before is not known (C{nft} may have committed).
    """

    def __init__(
        self, program: str, status: int | None, stderr: str, timedOut: bool = False
    ) -> None:
        super().__init__(program, status, stderr)
        self.program = program
        self.status = status
        self.stderr = stderr
        self.timedOut = timedOut

    def __str__(self) -> str:
        how = "was killed" if self.status is None else f"exited {self.status}"
        first = self.stderr.strip().splitlines()[:1]
        return f"{self.program} {how}" + (f": {first[0]}" if first else "")


class IProcessRunner(Interface):
    """
    Runs one program, one run at a time.
    """

    def run(arguments: Sequence[str], stdin: bytes) -> Deferred[bytes]:
        """
        Run the program with C{arguments}, C{stdin} on its standard input,
        after the runs asked for before it.

        @return: fires with its standard output when it exits 0, or fails
            with L{ProcessFailed}.
        """


@dataclass(slots=True)
class _Run:
    arguments: tuple[str, ...]
    stdin: bytes
    done: Deferred[bytes] = field(default_factory=Deferred)


class _Collector(ProcessProtocol):
    """
    Feeds one run's standard input and collects its output.
    """

    def __init__(self, run: _Run, ended: Deferred[tuple[int | None, bytes, bytes]]):
        self._run = run
        self._ended = ended
        self._out: list[bytes] = []
        self._err: list[bytes] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._run.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._out.append(data)

    def errReceived(self, data: bytes) -> None:
        self._err.append(data)

    def processEnded(self, reason: Failure) -> None:
        status: int | None = 0
        if not reason.check(ProcessDone):
            status = getattr(reason.value, "exitCode", None)
        self._ended.callback((status, b"".join(self._out), b"".join(self._err)))


@implementer(IProcessRunner)
class ProcessRunner:
    """
    Runs C{program} through C{reactor.spawnProcess}, one run at a time in
    the order asked, each killed (and failed) after C{timeout} seconds.

    @ivar program: the path (or name, looked up in C{PATH}) of the program.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        clock: IReactorTime,
        program: str,
        *,
        timeout: float = DEFAULT_RUN_TIMEOUT,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        self.program = program
        self._timeout = timeout
        self._environment = dict(environment) if environment is not None else None
        self._queue: deque[_Run] = deque()
        self._running: _Run | None = None

    def run(self, arguments: Sequence[str], stdin: bytes) -> Deferred[bytes]:
        run = _Run(tuple(arguments), stdin)
        self._queue.append(run)
        if self._running is None:
            self._next()
        return run.done

    def _next(self) -> None:
        if not self._queue:
            self._running = None
            return
        run = self._running = self._queue.popleft()
        ended: Deferred[tuple[int | None, bytes, bytes]] = Deferred()
        try:
            transport = self._reactor.spawnProcess(
                _Collector(run, ended),
                self.program,
                [self.program, *run.arguments],
                env=self._environment,
            )
        except OSError as e:
            self._finish(run, None, (None, b"", str(e).encode()))
            return
        timer = self._clock.callLater(self._timeout, _kill, transport)
        ended.addCallback(lambda result: self._finish(run, timer, result))

    def _finish(
        self,
        run: _Run,
        timer: IDelayedCall | None,
        result: tuple[int | None, bytes, bytes],
    ) -> None:
        status, out, err = result
        timedOut = timer is not None and not timer.active()
        if timer is not None and timer.active():
            timer.cancel()
        stderr = err.decode("utf-8", "replace")
        if timedOut:
            stderr = f"no answer within {self._timeout:g} s\n{stderr}"
            status = None
        # Runs asked for by the callbacks queue behind the next one.
        if status == 0:
            run.done.callback(out)
        else:
            run.done.errback(ProcessFailed(self.program, status, stderr, timedOut))
        self._next()


def _kill(transport: IProcessTransport) -> None:
    with suppress(ProcessExitedAlready):
        transport.signalProcess("KILL")
