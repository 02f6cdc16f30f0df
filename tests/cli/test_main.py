"""
Tests for L{twisted_natpmp._cli.main}: exit codes and one-line errors,
C{--help}, C{--version}, Ctrl-C and bugs.
"""

from __future__ import annotations

import json
import sys
from io import StringIO
from ipaddress import IPv4Address
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import twisted_natpmp
from twisted_natpmp._cli import _main, _run, main
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST

from ._helpers import refuse


class MainTests(SynchronousTestCase):
    """
    L{main}: exit codes and one-line errors, with L{react} replaced by one
    that runs on the in-memory network.
    """

    def setUp(self) -> None:
        self.stdout = StringIO()
        self.stderr = StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)
        self.network = MemoryUDPNetwork()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.patch(_main, "react", self.react)
        self.patch(_run, "localAddress", lambda gateway: IPv4Address(HOST))
        self.reacted = 0

    def react(self, start: Any) -> None:
        """
        Like L{react}: call C{start(reactor)}, run until done or stopped (as
        by Ctrl-C: the network goes quiet), then C{sys.exit}.
        """
        self.reacted += 1
        start(self.network.host(HOST))
        self.network.flush()
        raise SystemExit(0)

    def test_success(self) -> None:
        self.assertEqual(
            main(["--protocol", "natpmp", "--gateway", GATEWAY, "external"]), 0
        )
        self.assertIn(str(EXTERNAL), self.stdout.getvalue())

    def test_refused(self) -> None:
        self.gateway.reply = refuse(2)
        self.assertEqual(
            main(["--protocol", "natpmp", "--gateway", GATEWAY, "external"]), 1
        )
        self.assertIn("result code 2", self.stderr.getvalue())

    def test_usageError(self) -> None:
        """
        Bad arguments: exit 2, one line naming the value, no traceback, and
        nothing run.
        """
        self.assertEqual(main(["map", "tcp", "70000"]), 2)
        self.assertEqual(
            self.stderr.getvalue(),
            "natpmp map: error: argument INTERNAL: port 70000 is out of range"
            " 1-65535\n",
        )
        self.assertEqual(self.reacted, 0)

    def test_argvDefault(self) -> None:
        """
        Without arguments, L{main} reads C{sys.argv}.
        """
        self.patch(sys, "argv", ["natpmp", "map", "tcp", "abc"])
        self.assertEqual(main(), 2)
        self.assertIn("'abc'", self.stderr.getvalue())

    def test_help(self) -> None:
        """
        C{--help} prints the usage, including the exit codes, and exits 0.
        """
        self.assertEqual(main(["--help"]), 0)
        self.assertIn("exit codes: 0 success", self.stdout.getvalue())

    def test_interrupted(self) -> None:
        """
        If the reactor stops before the command is done (Ctrl-C), the exit
        code is 130 and the reason one line.
        """
        self.network.drop = lambda datagram: True
        self.assertEqual(
            main(["--protocol", "natpmp", "--gateway", GATEWAY, "external"]), 130
        )
        self.assertEqual(self.stderr.getvalue(), "natpmp: interrupted\n")
        self.assertEqual(self.stdout.getvalue(), "")

    def jsonOutput(self) -> Any:
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return json.loads(lines[0])

    def test_interruptedJSON(self) -> None:
        """
        With C{--json}, Ctrl-C too leaves exactly one JSON object.
        """
        self.network.drop = lambda datagram: True
        self.assertEqual(main(["--json", "--gateway", GATEWAY, "external"]), 130)
        self.assertEqual(
            self.jsonOutput(),
            {"command": "external", "gateway": GATEWAY, "error": "interrupted"},
        )

    def test_usageErrorJSON(self) -> None:
        """
        With C{--json}, bad arguments too give exactly one JSON object,
        naming the command when there is one.
        """
        self.assertEqual(main(["--json", "map", "tcp", "70000"]), 2)
        record = self.jsonOutput()
        self.assertEqual((record["command"], record["gateway"]), ("map", None))
        self.assertIn("port 70000 is out of range 1-65535", record["error"])
        self.assertEqual(len(self.stderr.getvalue().splitlines()), 1)
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(main(["--json", "--frobnicate"]), 2)
        self.assertIsNone(self.jsonOutput()["command"])
        self.assertEqual(self.reacted, 0)

    def test_usageErrorJSONGateway(self) -> None:
        """
        With C{--json}, bad arguments that name a usable gateway name it in
        the JSON object (the last one given, as the parser takes); a bad
        gateway is not named.
        """
        cases = [
            (["--json", "--gateway", GATEWAY, "map", "tcp", "70000"], GATEWAY),
            (["--json", "map", "tcp", "0", f"--gateway={GATEWAY}"], GATEWAY),
            (
                ["--gateway", "10.9.9.9", "--json", "--gateway", GATEWAY, "mapp"],
                GATEWAY,
            ),
            (["--json", "--gateway", "0.0.0.0", "external"], None),
            (
                ["--json", "--gateway", GATEWAY, "--gateway", "fe80::1", "external"],
                None,
            ),
            (["--json", "external", "--gateway"], None),
        ]
        for argv, gateway in cases:
            self.stdout.truncate(0)
            self.stdout.seek(0)
            self.assertEqual(main(argv), 2, argv)
            self.assertEqual(self.jsonOutput()["gateway"], gateway, argv)
        self.assertEqual(self.reacted, 0)

    def test_bugJSON(self) -> None:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("a bug")

        self.patch(_run, "perform", broken)
        self.assertEqual(main(["--json", "--gateway", GATEWAY, "external"]), 1)
        self.assertIn("a bug", self.jsonOutput()["error"])

    def test_version(self) -> None:
        """
        C{--version} prints the version of twisted-natpmp and of Twisted.
        """
        from twisted import __version__ as twistedVersion

        self.assertEqual(main(["--version"]), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            f"natpmp {twisted_natpmp.__version__} (Twisted {twistedVersion})\n",
        )
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(main(["--json", "--version"]), 0)
        self.assertEqual(
            self.jsonOutput(),
            {"version": twisted_natpmp.__version__, "twisted": twistedVersion},
        )
        self.assertEqual(self.reacted, 0)

    def test_bug(self) -> None:
        """
        An unexpected exception (a bug) is shown with its traceback, exit 1.
        """

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("a bug")

        self.patch(_run, "perform", broken)
        self.assertEqual(
            main(["--protocol", "natpmp", "--gateway", GATEWAY, "external"]), 1
        )
        self.assertIn("Traceback", self.stderr.getvalue())
        self.assertIn("ZeroDivisionError", self.stderr.getvalue())
