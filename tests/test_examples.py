"""
The files in C{examples/} are the README's examples: their code is the
README's (C{tests/test_examples_readme.py} checks it), with the gateway
address (and the echo server's port) read from the command line or the
environment where the README writes a value in, and each runs against our
own gateway over loopback UDP.  A missing or bad
argument ends an example with one usage line naming it, not a traceback.

Every gateway here serves a random address of 127.0.0.0/8 (so that test
runs side by side do not share one), and its announcements leave by that
address's interface, the loopback one: no packet goes anywhere else.  The
examples run as subprocesses, each wait bounded by L{TIMEOUT}.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    decodeResponse,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"

#: The external address our gateways report (RFC 5737 TEST-NET-3); only
#: reported, never sent to.
EXTERNAL = "203.0.113.7"

#: The longest wait for one line of output or one exit, in seconds: a bound
#: for a broken run, not a measurement.
TIMEOUT = 60.0

#: twistd in a subprocess, with the interpreter running these tests.
TWISTD = [
    sys.executable,
    "-c",
    "from twisted.scripts.twistd import run; run()",
    "--nodaemon",
    "--pidfile=",
    "--logfile=-",
]


def loopbackAddress() -> str:
    """
    A random address of 127.0.0.0/8 other than 127.0.0.1, for one gateway.
    """
    octets = (random.randint(64, 127), random.randint(0, 255), random.randint(1, 254))
    return "127.{}.{}.{}".format(*octets)


def freeTCPPort() -> int:
    """
    A TCP port that nothing listens on just now.
    """
    with socket.socket() as probe:
        probe.bind(("", 0))
        port: int = probe.getsockname()[1]
        return port


def askExternalAddress(gateway: str) -> str:
    """
    Ask the NAT-PMP gateway at C{gateway} for its external address, once.

    @return: the address it reports.
    @raise TimeoutError: if it does not answer within L{TIMEOUT}.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.connect((gateway, 5351))
        client.send(ExternalAddressRequest().encode())
        response = decodeResponse(client.recv(1100))
    assert isinstance(response, ExternalAddressResponse), response
    return str(response.externalAddress)


class Running:
    """
    A subprocess whose output (standard output and error together) is read
    line by line as it comes.

    @ivar output: every line read so far.
    """

    def __init__(
        self, argv: Sequence[str], cwd: str, env: Mapping[str, str] = {}
    ) -> None:
        environment = dict(os.environ)
        environment.update(env)
        # This checkout's package and plugins, whatever else is installed.
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        environment["PYTHONUNBUFFERED"] = "1"
        # The PCP nonce file goes to the test's directory, not the user's.
        if "XDG_STATE_HOME" not in env:
            environment["XDG_STATE_HOME"] = os.path.join(cwd, "state")
        self.argv = list(argv)
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def transcript(self) -> str:
        return f"$ {' '.join(self.argv)}\n" + "".join(self.output)

    def waitFor(self, text: str) -> str:
        """
        Read output until a line holds C{text}.

        @return: that line.
        @raise AssertionError: if the process ends first, or L{TIMEOUT}
            passes without such a line.
        """
        while True:
            try:
                line = self._lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(
                    f"no {text!r} within {TIMEOUT} s:\n{self.transcript()}"
                ) from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(
                    f"ended before printing {text!r}:\n{self.transcript()}"
                )
            self.output.append(line)
            if text in line:
                return line

    def wait(self) -> int:
        """
        Wait for the process to end (kill it if it takes longer than
        L{TIMEOUT}) and read the rest of its output.

        @return: its exit status.
        """
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        while (line := self._lines.get(timeout=TIMEOUT)) is not None:
            self.output.append(line)
        self._lines.put(None)
        return self.process.returncode

    def stop(self) -> int:
        """
        Interrupt the process as Ctrl-C would, and L{wait} for it.

        @return: its exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.wait()


class RunTests(SynchronousTestCase):
    """
    Each example works against our own gateway over loopback UDP.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.address = loopbackAddress()

    def start(self, argv: Sequence[str], env: Mapping[str, str] = {}) -> Running:
        running = Running(argv, self.directory, env)
        self.addCleanup(running.stop)
        return running

    def assertInterrupted(self, running: Running) -> None:
        """
        Interrupt C{running} and check that it ends as a program does on
        Ctrl-C: with status 0, or killed by the SIGINT it passes on after
        stopping cleanly (as twistd and C{task.react} do since Twisted 23.8).
        """
        status = running.stop()
        self.assertIn(status, (0, -signal.SIGINT), running.transcript())

    def startGateway(self, argv: Sequence[str]) -> Running:
        gateway = self.start(argv)
        gateway.waitFor(f"on {self.address}:5351")
        return gateway

    def test_client(self) -> None:
        """
        C{examples/client.py} gets the external address of
        C{examples/gateway.py}, maps TCP port 8080, and deletes the mapping.
        """
        gateway = self.startGateway(
            [
                sys.executable,
                str(EXAMPLES / "gateway.py"),
                f"{self.address}/8",
                EXTERNAL,
            ]
        )
        client = self.start([sys.executable, str(EXAMPLES / "client.py"), self.address])
        self.assertEqual(client.wait(), 0, client.transcript())
        self.assertEqual(
            "".join(client.output),
            f"external address: {EXTERNAL}\nmapped {EXTERNAL}:8080 for 3600 s\n",
        )
        gateway.waitFor("mapping created: tcp external port 8080")
        gateway.waitFor("mapping deleted: tcp external port 8080")
        self.assertInterrupted(gateway)

    def test_echo(self) -> None:
        """
        Under twistd, C{examples/echo.tac} maps its port on
        C{twistd natpmp-gateway}, says where it can be reached, echoes, and
        deletes the mapping when interrupted.
        """
        gateway = self.startGateway(
            [
                *TWISTD,
                "natpmp-gateway",
                "--listen",
                f"{self.address}/8",
                "--external-address",
                EXTERNAL,
            ]
        )
        port = freeTCPPort()
        echo = self.start(
            [*TWISTD, "--python", str(EXAMPLES / "echo.tac")],
            {"NATPMP_GATEWAY": self.address, "ECHO_PORT": str(port)},
        )
        echo.waitFor(f"reach me at {EXTERNAL}:{port}")
        gateway.waitFor(f"mapping created: tcp external port {port}")
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as peer:
            peer.sendall(b"anybody there?")
            received = b""
            while len(received) < len(b"anybody there?"):
                chunk = peer.recv(1024)
                if not chunk:
                    break
                received += chunk
        self.assertEqual(received, b"anybody there?")
        self.assertInterrupted(echo)
        gateway.waitFor(f"mapping deleted: tcp external port {port}")
        self.assertInterrupted(gateway)

    def test_website(self) -> None:
        """
        C{examples/website.py} listens behind a C{natpmp:} endpoint, maps its
        port on C{examples/gateway.py}, says where it is reached, serves its
        page, and deletes the mapping when interrupted.
        """
        gateway = self.startGateway(
            [
                sys.executable,
                str(EXAMPLES / "gateway.py"),
                f"{self.address}/8",
                EXTERNAL,
            ]
        )
        port = freeTCPPort()
        description = f"natpmp:gateway={self.address}:tcp:{port}:interface=127.0.0.1"
        website = self.start(
            [sys.executable, str(EXAMPLES / "website.py"), description]
        )
        website.waitFor(f"serving http://{EXTERNAL}:{port}/")
        gateway.waitFor(f"mapping created: tcp external port {port}")
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
            self.assertEqual(reply.read(), b"Hello from behind the NAT.\n")
        self.assertInterrupted(website)
        gateway.waitFor(f"mapping deleted: tcp external port {port}")
        self.assertInterrupted(gateway)

    def test_gatewayArguments(self) -> None:
        """
        C{examples/gateway.py} reports 203.0.113.1 unless given another
        external address.
        """
        self.startGateway(
            [sys.executable, str(EXAMPLES / "gateway.py"), f"{self.address}/8"]
        )
        self.assertEqual(askExternalAddress(self.address), "203.0.113.1")


class BadArgumentTests(SynchronousTestCase):
    """
    A missing or bad argument ends an example at once with status 1 and one
    line on standard error: the usage, naming the value (or how many were
    given), and no traceback.
    """

    def assertUsage(
        self, argv: Sequence[str], said: str, env: Mapping[str, str] = {}
    ) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, **env},
            cwd=ROOT,
            check=False,
        )
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(done.stdout, "")
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertTrue(lines[0].startswith("usage: "), lines[0])
        self.assertIn(said, lines[0])

    def test_client(self) -> None:
        client = [sys.executable, str(EXAMPLES / "client.py")]
        self.assertUsage(client, "(given 0 arguments)")
        self.assertUsage([*client, "1.2.3.4", "5"], "(given 2 arguments)")
        self.assertUsage([*client, "router"], "'router' is not an IP address")

    def test_gateway(self) -> None:
        gateway = [sys.executable, str(EXAMPLES / "gateway.py")]
        self.assertUsage(gateway, "(given 0 arguments)")
        self.assertUsage([*gateway, "127.0.0.1"], "'127.0.0.1' has no /PREFIX")
        self.assertUsage([*gateway, "127.0.0.1/99"], "'127.0.0.1/99' is not")
        self.assertUsage([*gateway, "127.0.0.1/8", "outside"], "'outside' is not")
        self.assertUsage([*gateway, "127.0.0.1/8", "1.2.3.4", "x"], "(given 3")

    def test_website(self) -> None:
        website = [sys.executable, str(EXAMPLES / "website.py")]
        self.assertUsage(website, "(given 0 arguments)")
        self.assertUsage(
            [*website, "natpmp:lifetime=soon:tcp:8080"],
            "natpmp: option lifetime 'soon' is not",
        )

    def test_echo(self) -> None:
        twistd = [*TWISTD[:5], "-y", str(EXAMPLES / "echo.tac")]
        self.assertUsage(
            twistd, "ECHO_PORT='http' is not a port", {"ECHO_PORT": "http"}
        )
        self.assertUsage(twistd, "ECHO_PORT='65536' is not", {"ECHO_PORT": "65536"})
        self.assertUsage(
            twistd, "NATPMP_GATEWAY='router' is not", {"NATPMP_GATEWAY": "router"}
        )
