"""
Tests for the PCP options of C{twistd natpmp-gateway}
(L{twisted_natpmp._gatewaytap}): --pcp/--no-pcp, --min-lifetime,
--allow-third-party and IPv6 --listen addresses.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import twisted_natpmp.server
from twisted_natpmp._gatewaytap import Options, makeService
from twisted_natpmp.server import GatewayService

from .test_gatewaytap import fakeNetworks, parsed


class PCPOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(Options, "lookupNetwork", staticmethod(fakeNetworks))

    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        error = self.assertRaises(usage.UsageError, parsed, argv)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_defaults(self) -> None:
        """
        PCP is on by default, with lifetimes from 120 s (RFC 6887 s15) and
        no third parties allowed (RFC 6887 s13.1).
        """
        # RFC 6887 s15
        options = parsed(["--listen=10.77.0.1"])
        self.assertEqual(
            (options["pcp"], options["min-lifetime"], options["allow-third-party"]),
            (True, 120, []),
        )

    def test_noPCP(self) -> None:
        """
        --no-pcp turns PCP off; --pcp with --no-pcp is refused.
        """
        self.assertFalse(parsed(["--listen=10.77.0.1", "--no-pcp"])["pcp"])
        self.assertTrue(parsed(["--listen=10.77.0.1", "--pcp"])["pcp"])
        self.assertUsageError(
            ["--listen=10.77.0.1", "--pcp", "--no-pcp"], "--pcp", "--no-pcp"
        )

    def test_lifetimes(self) -> None:
        """
        --min-lifetime is a whole number of seconds, at most --max-lifetime.
        """
        options = parsed(["--listen=10.77.0.1", "--min-lifetime=300"])
        self.assertEqual(options["min-lifetime"], 300)
        self.assertUsageError(
            ["--listen=10.77.0.1", "--min-lifetime=0"], "--min-lifetime", "'0'"
        )
        self.assertUsageError(
            ["--listen=10.77.0.1", "--min-lifetime=600", "--max-lifetime=300"],
            "--min-lifetime 600",
            "--max-lifetime 300",
        )
        # Without PCP the minimum does not apply.
        parsed(["--listen=10.77.0.1", "--no-pcp", "--max-lifetime=60"])

    def test_allowThirdParty(self) -> None:
        """
        --allow-third-party takes networks, repeatedly; a bad one, or one
        without PCP, is refused (RFC 6887 s13.1).
        """
        # RFC 6887 s13.1
        options = parsed(
            [
                "--listen=10.77.0.1",
                "--allow-third-party=10.77.0.5/32",
                "--allow-third-party=2001:db8::/64",
            ]
        )
        self.assertEqual(
            options["allow-third-party"],
            [IPv4Network("10.77.0.5/32"), IPv6Network("2001:db8::/64")],
        )
        self.assertUsageError(
            ["--listen=10.77.0.1", "--allow-third-party=10.77.0.5/24"],
            "--allow-third-party",
            "10.77.0.5/24",
        )
        self.assertUsageError(
            ["--listen=10.77.0.1", "--no-pcp", "--allow-third-party=10.77.0.5/32"],
            "--allow-third-party",
        )

    def test_ipv6Listen(self) -> None:
        """
        An IPv6 --listen address serves PCP (RFC 6887 s1); it is refused
        with --no-pcp, and when wider than /32.
        """
        # RFC 6887 s1
        options = parsed(["--listen=10.77.0.1", "--listen=2001:db8:77::1/64"])
        self.assertIn(IPv6Interface("2001:db8:77::1/64"), options["listen"])
        self.assertUsageError(
            ["--listen=2001:db8:77::1/64", "--no-pcp"], "2001:db8:77::1/64", "IPv6"
        )
        self.assertUsageError(["--listen=2001:db8::1/16"], "wider than /32")

    def test_service(self) -> None:
        """
        L{makeService} passes the PCP options on.
        """
        options = parsed(
            [
                "--listen=10.77.0.1",
                "--listen=2001:db8:77::1/64",
                "--min-lifetime=200",
                "--allow-third-party=10.77.0.5/32",
            ]
        )
        made: list[dict[str, Any]] = []

        class Recording(GatewayService):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                made.append(kwargs)
                super().__init__(*args, **kwargs)

        self.patch(twisted_natpmp.server, "GatewayService", Recording)
        service = makeService(options)
        assert isinstance(service, GatewayService)
        self.assertEqual(service.listen[1], IPv6Interface("2001:db8:77::1/64"))
        (arguments,) = made
        self.assertEqual(
            (
                arguments["pcp"],
                arguments["minLifetime"],
                arguments["allowThirdParty"],
            ),
            (True, 200, [IPv4Network("10.77.0.5/32")]),
        )
