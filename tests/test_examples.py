"""
The files in C{examples/} are the README's examples: their code is the
README's, with the gateway address (and the echo server's port) read from
the command line or the environment where the README writes a value in, and
each runs against our own gateway over loopback UDP.

Every gateway here serves a random address of 127.0.0.0/8 (so that test
runs side by side do not share one), and its announcements leave by that
address's interface, the loopback one: no packet goes anywhere else.  The
examples run as subprocesses, each wait bounded by L{TIMEOUT}.
"""

from __future__ import annotations

import ast
import difflib
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._wire import (
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


#: A value the README writes in where an example reads an argument.
Value = str | int | None


def readmeBlock(heading: str) -> str:
    """
    The first Python code block in the README section whose heading starts
    with C{heading}.

    @param heading: the start of a C{## } heading's text.
    @return: the code, without the fences.
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    opening = lines.index("```python", start)
    closing = lines.index("```", opening)
    return "\n".join(lines[opening + 1 : closing]) + "\n"


class _WriteValuesIn(ast.NodeTransformer):
    """
    Turn an example's syntax tree into the README's: drop the docstring, the
    imports and assignments that read the example's arguments, write in the
    README's value for each argument, and drop a keyword argument whose
    value becomes L{None} (the README leaves it at its default).
    """

    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = values

    def _readsArguments(self, statement: ast.stmt) -> bool:
        if isinstance(statement, ast.Import):
            return all(alias.name in ("os", "sys") for alias in statement.names)
        if isinstance(statement, ast.Assign):
            return all(
                isinstance(target, ast.Name) and target.id in self.values
                for target in statement.targets
            )
        return isinstance(statement, ast.Expr) and isinstance(
            statement.value, ast.Constant
        )

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = [s for s in node.body if not self._readsArguments(s)]
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return ast.copy_location(ast.Constant(self.values[node.id]), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        node.keywords = [
            keyword
            for keyword in node.keywords
            if not (
                keyword.arg in self.values
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is None
            )
        ]
        return node


def readmeForm(source: str, values: Mapping[str, Value]) -> ast.Module:
    """
    An example's code as the README gives it.

    @param source: the example's source.
    @param values: the README's value for each name that holds an argument.
    """
    tree = _WriteValuesIn(values).visit(ast.parse(source))
    assert isinstance(tree, ast.Module)
    return ast.fix_missing_locations(tree)


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


class ReadmeTests(SynchronousTestCase):
    """
    The README's code is the examples' code.
    """

    def assertReadmeForm(
        self, example: str, heading: str, values: Mapping[str, Value]
    ) -> None:
        source = (EXAMPLES / example).read_text(encoding="utf-8")
        readme = ast.parse(readmeBlock(heading))
        ours = readmeForm(source, values)
        if ast.dump(ours) != ast.dump(readme):
            diff = difflib.unified_diff(
                ast.unparse(readme).splitlines(),
                ast.unparse(ours).splitlines(),
                f"README.md, {heading}",
                f"examples/{example}, the README's values written in",
                lineterm="",
            )
            self.fail("\n".join(diff))

    def test_client(self) -> None:
        """
        C{examples/client.py} is the client of "The client", with the
        gateway from the command line.
        """
        self.assertReadmeForm("client.py", "The client", {"gateway": "192.168.1.1"})

    def test_echo(self) -> None:
        """
        C{examples/echo.tac} is the echo server of "Keeping ports mapped",
        with the gateway and port from the environment.
        """
        self.assertReadmeForm(
            "echo.tac", "Keeping ports mapped", {"gateway": None, "port": 8080}
        )

    def test_differenceShown(self) -> None:
        """
        A change to either side is a difference, not hidden by the values
        written in.
        """
        source = (EXAMPLES / "client.py").read_text(encoding="utf-8")
        changed = source.replace("lifetime=3600", "lifetime=7200")
        readme = ast.dump(ast.parse(readmeBlock("The client")))
        values = {"gateway": "192.168.1.1"}
        self.assertEqual(ast.dump(readmeForm(source, values)), readme)
        self.assertNotEqual(ast.dump(readmeForm(changed, values)), readme)
        self.assertNotEqual(
            ast.dump(readmeForm(source, {"gateway": "10.0.0.1"})), readme
        )


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

    def test_gatewayArguments(self) -> None:
        """
        C{examples/gateway.py} reports 203.0.113.1 unless given another
        external address.
        """
        self.startGateway(
            [sys.executable, str(EXAMPLES / "gateway.py"), f"{self.address}/8"]
        )
        self.assertEqual(askExternalAddress(self.address), "203.0.113.1")
