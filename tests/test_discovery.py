"""
Tests for L{twisted_natpmp.discovery}.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

import netifaces
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.discovery import defaultGateway, isPrivateAddress, localAddress
from twisted_natpmp.errors import NATPMPError, NoGatewayError

AF_INET = 2
AF_INET6 = 10


class FakeNetifaces:
    """
    A stand-in for the C{netifaces} module with a given routing table.
    """

    AF_INET = AF_INET

    def __init__(self, gateways: Mapping[Any, Any] | OSError) -> None:
        self._gateways = gateways

    def gateways(self) -> Mapping[Any, Any]:
        if isinstance(self._gateways, OSError):
            raise self._gateways
        return self._gateways


class DefaultGatewayTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        RFC 6886 s3: the client talks to its default gateway, which
        L{defaultGateway} returns as an L{IPv4Address}.
        """
        module = FakeNetifaces(
            {
                "default": {
                    AF_INET: ("192.168.1.1", "eth0"),
                    AF_INET6: ("fe80::1", "eth0"),
                },
                AF_INET: [("10.9.0.1", "tun0", False), ("192.168.1.1", "eth0", True)],
            }
        )
        self.assertEqual(defaultGateway(module), IPv4Address("192.168.1.1"))

    def test_onlyIPv6Default(self) -> None:
        """
        An IPv6 default route is no IPv4 gateway: L{NoGatewayError}, whose
        message says how to name one.
        """
        module = FakeNetifaces(
            {
                "default": {AF_INET6: ("fe80::1", "eth0")},
                AF_INET6: [("fe80::1", "eth0", True)],
            }
        )
        error = self.assertRaises(NoGatewayError, defaultGateway, module)
        self.assertIn("no default IPv4 gateway", str(error))
        self.assertIn("name the gateway explicitly", str(error))
        # A library message advises no command-line flag.
        self.assertNotIn("--", str(error))

    def test_noRoutes(self) -> None:
        """
        A host with no routes at all (netifaces gives an empty default
        table, or none) has no gateway.
        """
        tables: tuple[dict[str, Any], ...] = ({}, {"default": {}})
        for table in tables:
            error = self.assertRaises(
                NoGatewayError, defaultGateway, FakeNetifaces(table)
            )
            self.assertIn("no default IPv4 gateway", str(error))

    def test_nonDefaultGatewaysIgnored(self) -> None:
        """
        Gateways of other routes are not the default gateway.
        """
        module = FakeNetifaces({"default": {}, AF_INET: [("10.9.0.1", "tun0", False)]})
        self.assertRaises(NoGatewayError, defaultGateway, module)

    def test_unspecifiedGateway(self) -> None:
        """
        A default route with no gateway address (0.0.0.0, a point-to-point
        link) names no gateway to ask.
        """
        module = FakeNetifaces({"default": {AF_INET: ("0.0.0.0", "wg0")}})
        error = self.assertRaises(NoGatewayError, defaultGateway, module)
        self.assertIn("names no gateway", str(error))

    def test_garbledGateway(self) -> None:
        """
        An entry that is not an IPv4 address is reported, not raised as a
        C{ValueError}.
        """
        module = FakeNetifaces({"default": {AF_INET: ("eth0", "eth0")}})
        error = self.assertRaises(NoGatewayError, defaultGateway, module)
        self.assertIn("'eth0'", str(error))

    def test_unreadableRoutingTable(self) -> None:
        """
        An L{OSError} while reading the routing table becomes a
        L{NoGatewayError} naming the cause.
        """
        module = FakeNetifaces(PermissionError(13, "Permission denied"))
        error = self.assertRaises(NoGatewayError, defaultGateway, module)
        self.assertIn("Permission denied", str(error))
        self.assertIsInstance(error, NATPMPError)

    def test_realModule(self) -> None:
        """
        Without an argument, L{defaultGateway} reads the real C{netifaces}
        module: it agrees with the module's own default IPv4 route, or says
        there is none.
        """
        default = netifaces.gateways().get("default", {})
        assert isinstance(default, dict)
        if netifaces.AF_INET in default:
            expected = IPv4Address(default[netifaces.AF_INET][0])
            self.assertEqual(defaultGateway(), expected)
        else:
            self.assertRaises(NoGatewayError, defaultGateway)


class FakeSocket:
    """
    A stand-in for a UDP socket: connect() records the address,
    getsockname() returns C{source}, or connect() raises C{error}.
    """

    def __init__(self, source: str, error: OSError | None = None) -> None:
        self.source = source
        self.error = error
        self.connected: tuple[str, int] | None = None
        self.closed = False

    def connect(self, address: tuple[str, int], /) -> None:
        if self.error is not None:
            raise self.error
        self.connected = address

    def getsockname(self) -> tuple[str, int]:
        return (self.source, 40000)

    def close(self) -> None:
        self.closed = True


class LocalAddressTests(SynchronousTestCase):
    """
    RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
    address is private; L{localAddress} finds the address used towards the
    gateway and L{isPrivateAddress} judges it.
    """

    def test_kernelChoice(self) -> None:
        # The source address the kernel picks for a socket connected to the
        # gateway (connecting a UDP socket sends nothing).
        sock = FakeSocket("192.168.1.20")
        address = localAddress(IPv4Address("192.168.1.1"), socketFactory=lambda: sock)
        self.assertEqual(address, IPv4Address("192.168.1.20"))
        self.assertEqual(sock.connected, ("192.168.1.1", 5351))
        self.assertTrue(sock.closed)

    def test_noRoute(self) -> None:
        sock = FakeSocket("0.0.0.0", OSError(101, "Network is unreachable"))
        self.assertRaises(OSError, localAddress, "10.1.1.1", socketFactory=lambda: sock)
        self.assertTrue(sock.closed)

    def test_realSocket(self) -> None:
        # Loopback only: the real kernel's answer for a gateway on this host.
        self.assertEqual(localAddress("127.0.0.1"), IPv4Address("127.0.0.1"))

    def test_private(self) -> None:
        # RFC 1918 (RFC 6886 s3); RFC 6598 shared space, behind a carrier
        # NAT; loopback, a gateway on this host.
        for address in (
            "10.0.0.2",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.20",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
        ):
            self.assertTrue(isPrivateAddress(address), address)

    def test_public(self) -> None:
        for address in (
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "169.254.1.1",
            IPv4Address("11.0.0.1"),
        ):
            self.assertFalse(isPrivateAddress(address), address)
