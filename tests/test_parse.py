"""
Tests for L{twisted_natpmp._parse}: the one parser of numbers, ports,
lifetimes, seconds and gateways that all three front ends use, and its
one-line messages.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._parse import (
    MAX_PORT,
    MAX_UINT32,
    ParseError,
    commandMessage,
    optionMessage,
    optionValue,
    parseGateway,
    parseGateway46,
    parseInteger,
    parseLifetime,
    parseMappingProtocol,
    parseNumber,
    parsePort,
    parseSeconds,
)

from ._imports import modulesLoadedBy


class ParseIntegerTests(SynchronousTestCase):
    def test_inRange(self) -> None:
        """
        A decimal whole number within the bounds, bounds included.
        """
        self.assertEqual(parseInteger("1", 1, 5), 1)
        self.assertEqual(parseInteger("5", 1, 5), 5)
        self.assertEqual(parseInteger(" +3 ", 1, 5), 3)

    def test_notANumber(self) -> None:
        """
        Text that is no decimal whole number has no C{value}.
        """
        for text in ("abc", "1.5", "0x10", "", "5 000"):
            error = self.assertRaises(ParseError, parseInteger, text, 1, 5)
            self.assertIsNone(error.value)
            self.assertFalse(error.isNumber)
            self.assertEqual(error.text, text)
            self.assertTrue(error.whole)

    def test_outOfRange(self) -> None:
        """
        A number beyond the bounds keeps its value and the bounds.
        """
        error = self.assertRaises(ParseError, parseInteger, "7", 1, 5)
        self.assertEqual((error.value, error.low, error.high), (7, 1, 5))
        self.assertTrue(error.isNumber)
        self.assertEqual(str(error), "'7' is not a whole number from 1 to 5")


class ParseNumberTests(SynchronousTestCase):
    def test_number(self) -> None:
        self.assertEqual(parseNumber("2.5", 1, 86400), 2.5)
        self.assertEqual(parseNumber("86400", 1, 86400), 86400)

    def test_bad(self) -> None:
        """
        Not a number, or beyond the bounds; NaN and infinity are beyond any.
        """
        for text in ("soon", "0", "86400.5", "nan", "inf", "-inf"):
            error = self.assertRaises(ParseError, parseNumber, text, 1, 86400)
            self.assertFalse(error.whole)


class PortTests(SynchronousTestCase):
    def test_ports(self) -> None:
        """
        Ports are 1-65535 (16 bits, RFC 6886 s3.3); a suggested external
        port may be 0, letting the gateway choose.
        """
        self.assertEqual(MAX_PORT, 65535)
        self.assertEqual(parsePort("65535"), 65535)
        self.assertRaises(ParseError, parsePort, "0")
        self.assertRaises(ParseError, parsePort, "65536")
        self.assertEqual(parsePort("0", zero=True), 0)
        self.assertRaises(ParseError, parsePort, "-1", zero=True)


class LifetimeTests(SynchronousTestCase):
    def test_range(self) -> None:
        """
        A lifetime is 1 to 2^32-1 s (RFC 6886 s3.3: 32 bits); 0 is refused,
        as it would delete (RFC 6886 s3.4), and reads as value 0.
        """
        self.assertEqual(MAX_UINT32, 2**32 - 1)
        self.assertEqual(parseLifetime("4294967295"), 4294967295)
        self.assertRaises(ParseError, parseLifetime, "4294967296")
        error = self.assertRaises(ParseError, parseLifetime, "0")
        self.assertEqual(error.value, 0)


class SecondsTests(SynchronousTestCase):
    def test_seconds(self) -> None:
        """
        A positive, finite number of seconds, without upper bound.
        """
        self.assertEqual(parseSeconds("0.25"), 0.25)
        self.assertEqual(parseSeconds("1e6"), 1e6)
        for text in ("0", "-1", "nan", "inf", "soon"):
            error = self.assertRaises(ParseError, parseSeconds, text)
            self.assertIsNone(error.high)


class GatewayTests(SynchronousTestCase):
    def test_gateway(self) -> None:
        self.assertEqual(
            parseGateway("gateway", "192.168.1.1"), IPv4Address("192.168.1.1")
        )

    def test_bad(self) -> None:
        """
        Requests go to one host, the gateway (RFC 6886 s3): not an IPv4
        address, or the unspecified, a multicast or the broadcast address,
        is refused in one line beginning with the name given.
        """
        error = self.assertRaises(ValueError, parseGateway, "--gateway", "fe80::1")
        self.assertEqual(str(error), "--gateway 'fe80::1' is not an IPv4 address")
        for text, why in [
            ("0.0.0.0", "the unspecified address"),
            ("224.0.0.1", "a multicast address"),
            ("255.255.255.255", "the broadcast address"),
        ]:
            error = self.assertRaises(ValueError, parseGateway, "gateway", text)
            self.assertEqual(
                str(error), f"gateway {text!r} cannot be a gateway's address ({why})"
            )


class Gateway46Tests(SynchronousTestCase):
    def test_both(self) -> None:
        """
        An IPv4 gateway as L{parseGateway} takes it; an IPv6 one for PCP
        (RFC 6887 s8.1), a link-local one with its scope.
        """
        self.assertEqual(parseGateway46("g", "10.0.0.1"), IPv4Address("10.0.0.1"))
        self.assertEqual(parseGateway46("g", "2001:db8::1"), IPv6Address("2001:db8::1"))
        self.assertEqual(str(parseGateway46("g", "fe80::1%eth0")), "fe80::1%eth0")

    def test_bad(self) -> None:
        """
        Each refusal is one line naming the value.
        """
        for text, message in [
            ("nonsense:", "--gateway 'nonsense:' is not an IPv4 or IPv6 address"),
            ("bogus", "--gateway 'bogus' is not an IPv4 or IPv6 address"),
            (
                "fe80::1",
                "--gateway 'fe80::1' is link-local: name its interface too, as in"
                " fe80::1%eth0",
            ),
            (
                "::",
                "--gateway '::' cannot be a gateway's address (the unspecified"
                " address)",
            ),
            (
                "ff02::1",
                "--gateway 'ff02::1' cannot be a gateway's address (the"
                " multicast address)",
            ),
            (
                "0.0.0.0",
                "--gateway '0.0.0.0' cannot be a gateway's address (the"
                " unspecified address)",
            ),
        ]:
            error = self.assertRaises(ValueError, parseGateway46, "--gateway", text)
            self.assertEqual(str(error), message)


class MappingProtocolTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertEqual(
            [parseMappingProtocol("p", t) for t in ("auto", "PCP", "NatPmp")],
            ["auto", "pcp", "natpmp"],
        )

    def test_bad(self) -> None:
        error = self.assertRaises(ValueError, parseMappingProtocol, "--protocol", "x")
        self.assertEqual(str(error), "--protocol 'x' is not auto, pcp or natpmp")


class MessageTests(SynchronousTestCase):
    """
    Each front end's wording of the same errors.
    """

    def error(self, text: str, low: int, high: int) -> ParseError:
        error: ParseError = self.assertRaises(ParseError, parseInteger, text, low, high)
        return error

    def test_command(self) -> None:
        """
        C{natpmp}: the value's name, then the value as read and the range.
        """
        self.assertEqual(
            commandMessage("port", self.error("+70000", 1, MAX_PORT)),
            "port 70000 is out of range 1-65535",
        )
        self.assertEqual(
            commandMessage("external port", self.error("abc", 0, MAX_PORT)),
            "external port 'abc' is not a number",
        )

    def test_commandSeconds(self) -> None:
        error = self.assertRaises(ParseError, parseSeconds, "soon")
        self.assertEqual(
            commandMessage("timeout", error),
            "timeout 'soon' is not a number of seconds",
        )
        error = self.assertRaises(ParseError, parseSeconds, "-1")
        self.assertEqual(
            commandMessage("timeout", error),
            "timeout '-1' is not a positive number of seconds",
        )

    def test_option(self) -> None:
        """
        The twistd plugins: the option, the value as typed and the range,
        with the separator the plugin uses.
        """
        self.assertEqual(
            optionMessage("lifetime", self.error("0", 1, MAX_UINT32)),
            "--lifetime '0' is not a whole number from 1 to 4294967295",
        )
        self.assertEqual(
            optionMessage("max-port", self.error("http", 1, MAX_PORT), ":"),
            "--max-port: 'http' is not a whole number from 1 to 65535",
        )
        error = self.assertRaises(ParseError, parseNumber, "soon", 1, 86400)
        self.assertEqual(
            optionMessage("health-interval", error),
            "--health-interval 'soon' is not a number from 1 to 86400",
        )

    def test_optionValue(self) -> None:
        """
        L{optionValue} parses, or raises a L{UsageError} with the option's
        message.
        """
        self.assertEqual(optionValue("n", "3", lambda t: parseInteger(t, 1, 5)), 3)
        error = self.assertRaises(
            UsageError, optionValue, "n", "9", lambda t: parseInteger(t, 1, 5), ":"
        )
        self.assertEqual(str(error), "--n: '9' is not a whole number from 1 to 5")


class ImportTests(SynchronousTestCase):
    def test_cheapImport(self) -> None:
        """
        The twistd plugins' options import this module: it imports neither
        the reactor nor the gateway check's module (nor netifaces).
        """
        loaded = modulesLoadedBy("twisted_natpmp._parse")
        heavy = {"twisted.internet.reactor", "twisted_natpmp.discovery", "netifaces"}
        self.assertEqual(loaded & heavy, set())
