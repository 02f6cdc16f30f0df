"""
Start and drive our gateway in a process of its own (L{_gatewayrun}), on a
loopback address, so that the clients under test do not share its Python
thread.

It listens on UDP port 5351 (py-natpmp and natpmpc talk to no other
port) of the first free address among L{ADDRESSES}, which are all in
127.0.0.0/8: nothing leaves the host.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from twisted_natpmp.natpmp._wire import SERVER_PORT

from . import _cpus

#: Where the gateway may listen, tried in order (one may be taken by a test
#: running at the same time).
ADDRESSES = ("127.0.86.1", "127.0.86.2", "127.0.86.3", "127.0.86.4")
#: How long any answer from the gateway process may take, in seconds.
ANSWER_TIMEOUT = 30.0
_ROOT = Path(__file__).resolve().parent.parent


class GatewayError(Exception):
    """
    The gateway process failed to start or to answer.
    """


class GatewayProcess:
    """
    A running L{_gatewayrun} process.

    @ivar address: the loopback address it serves on.
    @ivar port: its UDP port.
    @ivar log: its log file.
    """

    def __init__(self, directory: Path, *, pcp: bool = False) -> None:
        self.address = ""
        self._pcp = pcp
        self.port = SERVER_PORT
        self.log = directory / "gateway.log"
        self._process: subprocess.Popen[str] | None = None
        errors = []
        for address in ADDRESSES:
            try:
                self._start(address)
            except GatewayError as e:
                errors.append(str(e))
                self.stop()
                continue
            return
        raise GatewayError("; ".join(errors))

    def _start(self, address: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._gatewayrun",
                f"--listen={address}/8",
                f"--port={SERVER_PORT}",
                f"--log={self.log}",
                *(["--pcp"] if self._pcp else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=_ROOT,
            env=env,
        )
        _cpus.pinServer(self._process.pid)
        words = self._answer().split()
        if words[:1] != ["ready"]:
            raise GatewayError(f"gateway on {address}: {' '.join(words)}")
        self.address, self.port = words[1], int(words[2])

    def _answer(self) -> str:
        process = self._process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], ANSWER_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise GatewayError(
                f"gateway process gave no answer (exit code {process.poll()})"
            )
        return line.strip()

    def command(self, line: str) -> str:
        """
        Send one command; return its one-line answer.
        """
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()
        return self._answer()

    def fill(self, count: int) -> None:
        """
        Give the table exactly C{count} mappings of other clients.
        """
        answer = self.command(f"fill {count}")
        if answer != f"filled {count}":
            raise GatewayError(f"fill {count}: {answer}")

    def count(self) -> int:
        return int(self.command("count"))

    def stop(self) -> None:
        """
        Ask it to quit; kill it (by its pid) if it has not within a few
        seconds.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.write("quit\n")
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
