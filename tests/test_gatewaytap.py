"""
Tests for L{twisted_natpmp._gatewaytap}: the options and service of
C{twistd natpmp-gateway}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import twisted_natpmp.server
from twisted_natpmp import _gatewaytap
from twisted_natpmp._gatewaytap import Options, interfaceNetwork, makeService
from twisted_natpmp.server import GatewayService
from twisted_natpmp.server._ratelimit import (
    DEFAULT_REQUEST_BURST,
    DEFAULT_REQUEST_RATE,
)
from twisted_natpmp.server.table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
)

from ._imports import modulesLoadedBy


def fakeNetworks(address: IPv4Address) -> IPv4Network | None:
    """
    A host with one interface, 10.77.0.1/24.
    """
    if address == IPv4Address("10.77.0.1"):
        return IPv4Network("10.77.0.0/24")
    return None


def parsed(argv: list[str]) -> Options:
    """
    The options of C{twistd natpmp-gateway} with C{argv} parsed.
    """
    options = Options()
    options.parseOptions(argv)  # type: ignore[no-untyped-call]
    return options


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(Options, "lookupNetwork", staticmethod(fakeNetworks))

    def parse(self, *argv: str) -> Options:
        return parsed(list(argv))

    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        """
        Parsing C{argv} fails with a one-line message naming each fragment.
        """
        error = self.assertRaises(usage.UsageError, self.parse, *argv)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_internalNetworkTooWide(self) -> None:
        # RFC 6886 s3.3: only internal clients are served; a /0 (or any
        # network wider than /8) would make every source internal.
        self.assertUsageError(
            ["--listen", "127.0.0.1/0", "--external-address", "192.0.3.1"],
            "'127.0.0.1/0'",
            "/8",
        )

    def test_externalInsideInternal(self) -> None:
        # RFC 6886 s3.3: the external address is never on an internal network.
        self.assertUsageError(
            ["--listen", "10.77.0.1/16", "--external-address", "10.77.3.3"],
            "'10.77.3.3'",
            "10.77.0.0/16",
        )

    def test_defaults(self) -> None:
        """
        Only --listen and --external-address are needed; the limits have
        defaults.
        """
        options = self.parse("--listen", "10.77.0.1", "--external-address", "192.0.3.1")
        self.assertEqual(options["listen"], [IPv4Interface("10.77.0.1/24")])
        self.assertEqual(options["external-address"], IPv4Address("192.0.3.1"))
        self.assertEqual(options["min-port"], DEFAULT_MIN_PORT)
        self.assertEqual(options["max-port"], DEFAULT_MAX_PORT)
        self.assertEqual(options["max-lifetime"], DEFAULT_MAX_LIFETIME)
        self.assertEqual(
            options["max-mappings-per-client"], DEFAULT_MAX_MAPPINGS_PER_CLIENT
        )
        self.assertEqual(options["max-mappings"], DEFAULT_MAX_MAPPINGS)
        self.assertEqual(options["rate-limit"], DEFAULT_REQUEST_RATE)
        self.assertEqual(options["rate-burst"], DEFAULT_REQUEST_BURST)

    def test_everything(self) -> None:
        """
        Every option of the issue, --listen repeated, with or without a
        prefix.
        """
        options = self.parse(
            "--listen=10.77.0.1",
            "--listen",
            "10.88.0.1/16",
            "--external-address=192.0.3.1",
            "--min-port=2000",
            "--max-port",
            "3000",
            "--max-lifetime=600",
            "--max-mappings-per-client=7",
        )
        self.assertEqual(
            options["listen"],
            [IPv4Interface("10.77.0.1/24"), IPv4Interface("10.88.0.1/16")],
        )
        self.assertEqual(
            [options[k] for k in ("min-port", "max-port", "max-lifetime")],
            [2000, 3000, 600],
        )
        self.assertEqual(options["max-mappings-per-client"], 7)

    def test_required(self) -> None:
        """
        --listen is required.
        """
        self.assertUsageError(["--external-address", "192.0.3.1"], "--listen")

    def test_noExternalAddress(self) -> None:
        """
        The gateway may start without an external address, or with 0.0.0.0,
        which means the same (RFC 6886 s3.2, s3.5: it answers result 3 until
        one arrives).
        """
        self.assertIsNone(self.parse("--listen", "10.77.0.1")["external-address"])
        options = self.parse("--listen", "10.77.0.1", "--external-address", "0.0.0.0")
        self.assertIsNone(options["external-address"])
        self.assertIsNone(makeService(options).externalAddress)  # type: ignore[attr-defined]

    def test_badListen(self) -> None:
        """
        A --listen value that is not a usable local IPv4 address is named in
        a one-line error.
        """
        external = ["--external-address", "192.0.3.1"]
        for value in ("10.77.0.300", "eth0", "10.77.0.1/33", "::1"):
            self.assertUsageError(["--listen", value, *external], repr(value))
        for value in ("0.0.0.0", "224.0.0.1/4"):
            self.assertUsageError(["--listen", value, *external], repr(value))
        self.assertUsageError(
            ["--listen", "10.9.9.9", *external], "no network interface", "10.9.9.9"
        )
        self.assertUsageError(
            ["--listen", "10.77.0.1", "--listen", "10.77.0.1/24", *external],
            "twice",
        )

    def test_badExternalAddress(self) -> None:
        """
        The external address must be a unicast IPv4 address, and not an
        internal one (RFC 6886 s3.3: requests sent to the external address
        must not be served).
        """
        for value in ("192.0.3", "example.com", "239.1.1.1", "10.77.0.1"):
            self.assertUsageError(
                ["--listen", "10.77.0.1", "--external-address", value],
                "--external-address",
                repr(value),
            )

    def test_badNumbers(self) -> None:
        """
        Each number option names itself and the bad value in a one-line
        error.
        """
        base = ["--listen", "10.77.0.1", "--external-address", "192.0.3.1"]
        cases = [
            ("min-port", "0"),
            ("min-port", "65536"),
            ("max-port", "http"),
            ("max-lifetime", "0"),
            ("max-lifetime", "4294967296"),
            ("max-lifetime", "1.5"),
            ("max-mappings-per-client", "0"),
            ("max-mappings-per-client", "-3"),
            ("max-mappings", "0"),
            ("max-mappings", "many"),
            ("rate-limit", "-1"),
            ("rate-limit", "2.5"),
            ("rate-burst", "0"),
        ]
        for option, value in cases:
            self.assertUsageError(
                [*base, f"--{option}={value}"], f"--{option}", repr(value)
            )
        self.assertUsageError(
            [*base, "--min-port=5000", "--max-port=4000"], "5000", "4000"
        )


class MakeServiceTests(SynchronousTestCase):
    def build(self, options: Options) -> tuple[GatewayService, dict[str, Any]]:
        """
        L{makeService}'s service for C{options}, and the keyword arguments
        it was made with (its public constructor's, not its insides).
        """
        made: list[dict[str, Any]] = []

        class Recording(GatewayService):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                made.append(kwargs)
                super().__init__(*args, **kwargs)

        self.patch(twisted_natpmp.server, "GatewayService", Recording)
        service = makeService(options)
        assert isinstance(service, GatewayService)
        (arguments,) = made
        return service, arguments

    def test_service(self) -> None:
        """
        L{makeService} builds a L{GatewayService} with the options' values,
        serving on port 5351, without starting it.
        """
        self.patch(Options, "lookupNetwork", staticmethod(fakeNetworks))
        options = parsed(
            [
                "--listen=10.77.0.1",
                "--external-address=192.0.3.1",
                "--min-port=2000",
                "--max-port=3000",
                "--max-lifetime=600",
                "--max-mappings-per-client=7",
                "--max-mappings=100",
                "--rate-limit=5",
                "--rate-burst=9",
            ]
        )
        service, arguments = self.build(options)
        self.assertFalse(service.running)
        self.assertEqual(service.listen, (IPv4Interface("10.77.0.1/24"),))
        self.assertEqual(service.externalAddress, IPv4Address("192.0.3.1"))
        self.assertEqual(service.port, 5351)
        self.assertEqual(
            arguments,
            {
                "minPort": 2000,
                "maxPort": 3000,
                "maxLifetime": 600,
                "maxMappingsPerClient": 7,
                "maxMappings": 100,
                "requestRate": 5,
                "requestBurst": 9,
                "pcp": True,
                "minLifetime": 120,
                "allowThirdParty": [],
            },
        )

    def test_defaultLimits(self) -> None:
        """
        By default the command line limits the gateway's mappings and each
        source's request rate; --rate-limit 0 turns the rate limit off.
        """
        self.patch(Options, "lookupNetwork", staticmethod(fakeNetworks))
        _, arguments = self.build(parsed(["--listen=10.77.0.1"]))
        self.assertEqual(arguments["maxMappings"], DEFAULT_MAX_MAPPINGS)
        self.assertEqual(
            (arguments["requestRate"], arguments["requestBurst"]),
            (DEFAULT_REQUEST_RATE, DEFAULT_REQUEST_BURST),
        )
        _, arguments = self.build(parsed(["--listen=10.77.0.1", "--rate-limit=0"]))
        self.assertIsNone(arguments["requestRate"])


class CannotListenTests(SynchronousTestCase):
    def test_oneLine(self) -> None:
        """
        An address the host does not have ends C{twistd natpmp-gateway} with
        one line naming it, not a traceback.  (Binding fails before anything
        is sent.)
        """
        options = parsed(["--listen=10.250.0.1/24", "--external-address=192.0.3.1"])
        service = makeService(options)
        error = self.assertRaises(SystemExit, service.startService)
        message = str(error.code)
        self.assertNotIn("\n", message)
        self.assertIn("cannot listen on 10.250.0.1:5351", message)
        self.assertFalse(service.running)


class InterfaceNetworkTests(SynchronousTestCase):
    def test_loopback(self) -> None:
        """
        The network of an address comes from its interface's netmask: the
        loopback interface has 127.0.0.1/8.
        """
        self.assertEqual(
            interfaceNetwork(IPv4Address("127.0.0.1")), IPv4Network("127.0.0.0/8")
        )

    def test_missing(self) -> None:
        """
        An address no interface has has no network.
        """
        self.assertIsNone(interfaceNetwork(IPv4Address("203.0.113.254")))

    def test_defaultLookup(self) -> None:
        """
        Without a patch, --listen without a prefix asks the interfaces.
        """
        options = parsed(["--listen=127.0.0.1", "--external-address=192.0.3.1"])
        self.assertEqual(options["listen"], [IPv4Interface("127.0.0.1/8")])


class ImportTests(SynchronousTestCase):
    def test_cheapImport(self) -> None:
        """
        twistd imports every plugin to list them: importing the options
        module does not import the reactor, the server (beyond the table's
        defaults) or netifaces.
        """
        loaded = modulesLoadedBy("twisted_natpmp._gatewaytap")
        heavy = {
            "twisted.internet.reactor",
            "netifaces",
            "twisted_natpmp.server._service",
            "twisted_natpmp.server._protocol",
            "twisted_natpmp.server.gateway",
            "twisted_natpmp.server.dispatch",
            "twisted_natpmp.server._internalport",
        }
        self.assertEqual(loaded & heavy, set())
        self.assertTrue(callable(_gatewaytap.makeService))
