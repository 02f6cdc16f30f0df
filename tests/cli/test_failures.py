"""
Tests for L{twisted_natpmp._cli.run} when things go wrong: refusals, no
answer, C{--timeout}, no gateway, a public address, sockets that fail, and
the progress said while waiting.
"""

from __future__ import annotations

from io import StringIO
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.error import CannotListenError

from twisted_natpmp.errors import NoGatewayError
from twisted_natpmp.natpmp.client import NATPMPClient
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY

from ._helpers import RunCase, Terminal, refuse


class FailureTests(RunCase):
    """
    L{twisted_natpmp._cli.run}: each failure is one line and exit 1.
    """

    def test_refused(self) -> None:
        """
        A non-zero result code (RFC 6886 s3.5) exits 1 with one line naming
        the code and its meaning.
        """
        self.gateway.reply = refuse(2)
        self.assertEqual(self.runCommand(["map", "tcp", "8080"]), 1)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: gateway {GATEWAY} refused: result code 2"
            " (not authorized/refused)",
        )
        self.assertEqual(self.stdout.getvalue(), "")
        self.assertStopped()

    def test_refusedJSON(self) -> None:
        """
        With C{--json}, a refusal is also one JSON object on standard output.
        """
        self.gateway.reply = refuse(4)
        self.assertEqual(self.runCommand(["--json", "unmap", "tcp", "8080"]), 1)
        self.assertIn("result code 4 (out of resources)", self.errorLine())
        output = self.jsonOutput()
        self.assertEqual(output["resultCode"], 4)
        self.assertEqual(output["gateway"], GATEWAY)
        self.assertIn("out of resources", output["error"])

    def test_unknownResultCode(self) -> None:
        """
        An unknown result code fails the request (RFC 6886 s3.5).
        """
        self.gateway.reply = refuse(17)
        self.assertEqual(self.runCommand(["external"]), 1)
        self.assertIn("result code 17 (unknown result code 17)", self.errorLine())

    def test_noAnswer(self) -> None:
        """
        Unanswered, the command gives up after the RFC 6886 s3.1 schedule:
        nine sends, 127.75 s; then one line and exit 1.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["external"])
        self.advance(127.734375)
        self.assertNoResult(d)
        self.advance(0.015625)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(len(self.network.sentTo((GATEWAY, 5351))), 9)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: no response from gateway {GATEWAY} after 9 attempt(s)"
            " in 127.75 s",
        )
        self.assertStopped()

    def test_timeout(self) -> None:
        """
        C{--timeout} caps the whole request: the s3.1 schedule is cut there.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["--timeout", "3", "--json", "unmap", "tcp", "80"])
        self.advance(2.875)
        self.assertNoResult(d)
        self.advance(0.125)
        self.assertEqual(self.successResultOf(d), 1)
        sends = [d.time for d in self.network.sentTo((GATEWAY, 5351))]
        self.assertEqual(sends, [0, 0.25, 0.75, 1.75])
        self.assertEqual(
            self.errorLine(),
            f"natpmp: no response from gateway {GATEWAY} after 4 attempt(s)"
            " in 3 s (--timeout 3)",
        )
        self.assertIn("no response", self.jsonOutput()["error"])

    def test_timeoutCoversFollowUp(self) -> None:
        """
        C{--timeout} covers the external address query after a mapping too.
        """
        self.network.drop = lambda datagram: datagram.data == b"\x00\x00"
        self.network.delay = 0.125
        d = self.start(["--timeout", "1.5", "map", "tcp", "8080"])
        self.advance(1.4375)
        self.assertNoResult(d)
        self.advance(0.0625)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn("mapped tcp external port 8080", self.stdout.getvalue())

    def test_noGateway(self) -> None:
        """
        No default gateway: one line, exit 1, nothing sent.
        """

        def findGateway() -> IPv4Address:
            raise NoGatewayError("no default IPv4 gateway found; name one")

        self.assertEqual(
            self.runCommand(["--json", "external"], findGateway=findGateway), 1
        )
        # The command, not the library, advises its own flag.
        message = "no default IPv4 gateway found; name one (--gateway IP)"
        self.assertEqual(self.errorLine(), f"natpmp: {message}")
        self.assertEqual(
            self.jsonOutput(),
            {"command": "external", "gateway": None, "error": message},
        )
        self.assertEqual(self.network.log, [])

    def test_publicAddressRefused(self) -> None:
        """
        RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
        address is private; with a public one the command says so, sends
        nothing, and exits 1.
        """
        public = IPv4Address("203.0.113.5")
        code = self.runCommand(
            ["--json", "external"], findLocalAddress=lambda g: public
        )
        self.assertEqual(code, 1)
        self.assertEqual(self.network.log, [])
        self.assertIn("203.0.113.5", self.errorLine())
        self.assertIn("--allow-public", self.errorLine())
        self.assertIn("is public", self.jsonOutput()["error"])

    def test_publicAddressAllowed(self) -> None:
        """
        C{--allow-public} asks anyway, with a warning on standard error and
        in the JSON object.
        """
        looked: list[IPv4Address] = []

        def findLocalAddress(gateway: IPv4Address) -> IPv4Address:
            looked.append(gateway)
            return IPv4Address("203.0.113.5")

        argv = ["--json", "--allow-public", "external"]
        self.assertEqual(self.runCommand(argv, findLocalAddress=findLocalAddress), 0)
        self.assertEqual(looked, [IPv4Address(GATEWAY)])
        self.assertIn("warning", self.errorLine())
        self.assertIn("203.0.113.5", self.jsonOutput()["warnings"][0])
        self.assertEqual(self.jsonOutput()["externalAddress"], str(EXTERNAL))

    def test_localAddressUnknown(self) -> None:
        """
        No route to find the local address by: the request itself goes out
        (and would fail on its own).
        """

        def findLocalAddress(gateway: IPv4Address) -> IPv4Address:
            raise OSError(101, "Network is unreachable")

        self.assertEqual(
            self.runCommand(["external"], findLocalAddress=findLocalAddress), 0
        )

    def test_progressAtTerminal(self) -> None:
        """
        While the gateway does not answer, a person at a terminal reads on
        standard error that the command is still trying, from the 4th
        attempt (1.75 s) on; standard output stays clean.
        """
        self.stderr = Terminal()
        self.network.drop = lambda datagram: True
        d = self.start(["--json", "--timeout", "10", "external"])
        self.advance(1.5)
        self.assertEqual(self.stderr.getvalue(), "")
        self.advance(8.5)
        self.assertEqual(self.successResultOf(d), 1)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(
            lines[:2],
            [
                f"natpmp: no answer from gateway {GATEWAY} yet; still trying"
                " (attempt 4, 1.75 s)",
                f"natpmp: no answer from gateway {GATEWAY} yet; still trying"
                " (attempt 5, 3.75 s)",
            ],
        )
        self.assertEqual(len(lines), 4)  # attempts 4, 5, 6 and the failure
        self.assertIn("no response", self.jsonOutput()["error"])

    def test_noProgressElsewhere(self) -> None:
        """
        When standard error is no terminal (a script, a log), the wait is
        silent: only the outcome's line.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["--timeout", "10", "external"])
        self.advance(10)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertIn("no response", self.errorLine())

    def test_socketErrors(self) -> None:
        """
        A socket that cannot be opened or connected (no route to the
        gateway) is one line and exit 1, not a traceback.
        """
        errors: list[Exception] = [
            CannotListenError(  # type: ignore[no-untyped-call]
                "", 0, OSError(98, "Address already in use")
            ),
            OSError(101, "Network is unreachable"),
        ]
        for error in errors:

            def clientFactory(*args: Any, error: Exception = error) -> NATPMPClient:
                raise error

            self.stderr = StringIO()
            self.assertEqual(
                self.runCommand(["external"], clientFactory=clientFactory), 1
            )
            self.assertIn(str(getattr(error, "socketError", error)), self.errorLine())

    def test_sendError(self) -> None:
        """
        A send that fails (an L{OSError} from the socket) ends the command
        with one line.
        """

        def write(packet: bytes, addr: Any = None) -> None:
            raise OSError(101, "Network is unreachable")

        def clientFactory(*args: Any) -> NATPMPClient:
            client = self.clientFactory(*args)
            client.protocol.transport.write = write  # type: ignore[union-attr,method-assign]
            return client

        self.assertEqual(self.runCommand(["external"], clientFactory=clientFactory), 1)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: cannot reach gateway {GATEWAY}:"
            " [Errno 101] Network is unreachable",
        )
        self.assertStopped()
