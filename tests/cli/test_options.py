"""
Tests for L{twisted_natpmp._cli.parseArguments}: the C{natpmp} command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._cli import Options, parseArguments
from twisted_natpmp._types import Transport


class ParseTests(SynchronousTestCase):
    """
    L{parseArguments} turns a command line into L{Options}, and wrong values
    into a L{UsageError} whose one line names the value.
    """

    def assertUsageError(self, argv: Sequence[str], *fragments: str) -> str:
        error = self.assertRaises(UsageError, parseArguments, argv)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_external(self) -> None:
        """
        C{external} alone: the default gateway, port 5351, the RFC schedule,
        text output.
        """
        self.assertEqual(parseArguments(["external"]), Options("external"))

    def test_map(self) -> None:
        """
        C{map} takes a protocol, an internal port, and optionally the
        external port to suggest and the lifetime to ask for.
        """
        self.assertEqual(
            parseArguments(["map", "tcp", "8080"]),
            Options("map", protocol=Transport.TCP, internalPort=8080, lifetime=7200),
        )
        self.assertEqual(
            parseArguments(
                ["map", "UDP", "5000", "--external", "0", "--lifetime", "60"]
            ),
            Options(
                "map",
                protocol=Transport.UDP,
                internalPort=5000,
                externalPort=0,
                lifetime=60,
            ),
        )

    def test_unmap(self) -> None:
        self.assertEqual(
            parseArguments(["unmap", "udp", "5000"]),
            Options("unmap", protocol=Transport.UDP, internalPort=5000),
        )
        self.assertEqual(
            parseArguments(["unmap-all", "tcp"]),
            Options("unmap-all", protocol=Transport.TCP),
        )

    def test_commonOptions(self) -> None:
        """
        The common options may come before or after the command; given
        before, they are not reset by the command's copies.
        """
        expected = Options(
            "external",
            gateway=IPv4Address("192.168.1.1"),
            gatewayPort=15351,
            timeout=2.5,
            json=True,
        )
        before = "--gateway 192.168.1.1 --gateway-port 15351 --timeout 2.5 --json"
        after = "--json --timeout 2.5 --gateway-port 15351 --gateway 192.168.1.1"
        self.assertEqual(parseArguments([*before.split(), "external"]), expected)
        self.assertEqual(parseArguments(["external", *after.split()]), expected)
        self.assertEqual(
            parseArguments(["--gateway", "192.168.1.1", "--json", "external"]),
            Options("external", gateway=IPv4Address("192.168.1.1"), json=True),
        )

    def test_badPorts(self) -> None:
        """
        Ports out of range or not numbers are named.
        """
        self.assertUsageError(["map", "tcp", "70000"], "70000", "1-65535")
        self.assertUsageError(["map", "tcp", "abc"], "'abc'", "not a number")
        self.assertUsageError(["unmap", "udp", "0"], "port 0")
        self.assertUsageError(["map", "tcp", "80", "--external", "70000"], "70000")
        self.assertUsageError(["map", "tcp", "80", "--external", "-1"], "-1")
        self.assertUsageError(["--gateway-port", "0", "external"], "gateway port 0")

    def test_lifetimeZero(self) -> None:
        """
        A lifetime of 0 is refused: deleting is C{unmap} (RFC 6886 s3.4
        gives lifetime 0 that meaning, so C{map} cannot ask for it).
        """
        self.assertUsageError(
            ["map", "tcp", "80", "--lifetime", "0"], "lifetime 0", "unmap"
        )
        # The range named is the one allowed: 0 is refused, so it starts at 1.
        message = self.assertUsageError(
            ["map", "tcp", "80", "--lifetime", "-5"], "lifetime -5", "1-4294967295"
        )
        self.assertNotIn("0-", message)
        self.assertUsageError(
            ["map", "tcp", "80", "--lifetime", "4294967296"], "4294967296"
        )
        self.assertUsageError(["map", "tcp", "80", "--lifetime", "1h"], "'1h'")

    def test_allowPublic(self) -> None:
        self.assertFalse(parseArguments(["external"]).allowPublic)
        self.assertTrue(parseArguments(["--allow-public", "external"]).allowPublic)
        self.assertTrue(
            parseArguments(["unmap-all", "tcp", "--allow-public"]).allowPublic
        )

    def test_badGateway(self) -> None:
        bad = ("1.2.3", "256.1.1.1", "fe80::1", "router", "0.0.0.0", "224.0.0.1")
        for text in (*bad, "255.255.255.255"):
            self.assertUsageError(["--gateway", text, "external"], repr(text))

    def test_badTimeout(self) -> None:
        for text in ("-1", "0", "nan", "inf", "soon"):
            self.assertUsageError(["--timeout", text, "external"], repr(text))

    def test_badCommand(self) -> None:
        self.assertUsageError([], "required")
        self.assertUsageError(["mapp"], "'mapp'")
        self.assertUsageError(["map", "sctp", "80"], "'sctp'")
        self.assertUsageError(["unmap", "tcp"], "INTERNAL")
        self.assertUsageError(["external", "extra"], "extra")
        self.assertUsageError(["external", "--frobnicate"], "--frobnicate")
