"""
Tests for the IPv6 side of L{twisted_natpmp.discovery}: the default IPv6
gateway (where PCP goes for IPv6) and the global addresses a pinhole can
be opened for.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.discovery import defaultGateway, defaultGateway6, globalAddresses6
from twisted_natpmp.errors import NoGatewayError

AF_INET = 2
AF_INET6 = 10


class FakeNetifaces:
    """
    A stand-in for the C{netifaces} module.
    """

    AF_INET = AF_INET
    AF_INET6 = AF_INET6

    def __init__(
        self,
        gateways: Mapping[Any, Any] | OSError,
        addresses: Mapping[str, Mapping[int, Any]] | None = None,
    ) -> None:
        self._gateways = gateways
        self._addresses = addresses or {}

    def gateways(self) -> Mapping[Any, Any]:
        if isinstance(self._gateways, OSError):
            raise self._gateways
        return self._gateways

    def interfaces(self) -> list[str]:
        return list(self._addresses)

    def ifaddresses(self, interface: str) -> Mapping[int, Any]:
        return self._addresses[interface]


class DefaultGateway6Tests(SynchronousTestCase):
    def test_global(self) -> None:
        # RFC 6887 s8.1: the client talks to its default router.
        fake = FakeNetifaces({"default": {AF_INET6: ("2001:db8::1", "eth0")}})
        self.assertEqual(defaultGateway6(fake), IPv6Address("2001:db8::1"))

    def test_linkLocalScoped(self) -> None:
        # A link-local gateway is reachable only through its interface.
        fake = FakeNetifaces({"default": {AF_INET6: ("fe80::1", "eth0")}})
        gateway = defaultGateway6(fake)
        self.assertEqual(gateway, IPv6Address("fe80::1%eth0"))
        self.assertEqual(gateway.scope_id, "eth0")
        scoped = FakeNetifaces({"default": {AF_INET6: ("fe80::1%wlan0", "eth0")}})
        self.assertEqual(defaultGateway6(scoped).scope_id, "wlan0")

    def test_none(self) -> None:
        tables: list[dict[Any, Any]] = [
            {},
            {"default": {}},
            {"default": {AF_INET: ("10.0.0.1", "e")}},
        ]
        for table in tables:
            self.assertRaises(NoGatewayError, defaultGateway6, FakeNetifaces(table))
        for bad in ("10.0.0.1", "::", "nonsense"):
            fake = FakeNetifaces({"default": {AF_INET6: (bad, "eth0")}})
            self.assertRaises(NoGatewayError, defaultGateway6, fake)
        self.assertRaises(
            NoGatewayError, defaultGateway6, FakeNetifaces(OSError("no table"))
        )

    def test_ipv4Unchanged(self) -> None:
        # The IPv4 discovery keeps its behaviour beside the IPv6 one.
        table = {
            "default": {
                AF_INET: ("10.0.0.1", "eth0"),
                AF_INET6: ("fe80::1", "eth0"),
            }
        }
        self.assertEqual(defaultGateway(FakeNetifaces(table)), IPv4Address("10.0.0.1"))


class GlobalAddressesTests(SynchronousTestCase):
    def test_global(self) -> None:
        # One pinhole per global address: link-local, loopback and
        # unique-local addresses are left out, and each address once.
        fake = FakeNetifaces(
            {},
            {
                "lo": {AF_INET6: [{"addr": "::1"}]},
                "eth0": {
                    AF_INET6: [
                        {"addr": "fe80::2%eth0"},
                        {"addr": "2a00:1450:4001::2"},
                        {"addr": "fd00::2"},
                        {"addr": "bogus"},
                    ],
                    AF_INET: [{"addr": "10.0.0.2"}],
                },
                "eth1": {AF_INET6: [{"addr": "2a00:1450:4001::2"}]},
                "eth2": {},
            },
        )
        self.assertEqual(globalAddresses6(fake), [IPv6Address("2a00:1450:4001::2")])
