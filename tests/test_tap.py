"""
Tests for L{twisted_natpmp._tap}, the options of C{twistd natpmp}.
"""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import twisted_natpmp.service
from twisted_natpmp._tap import Options, makeService, parseMap
from twisted_natpmp._types import Transport
from twisted_natpmp.service import MappingDeclaration, PortMapperService

from ._imports import modulesLoadedBy

ROOT = Path(__file__).resolve().parent.parent


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse("--map", "udp:5000")
        self.assertEqual(options["maps"], [(Transport.UDP, 5000, None)])
        self.assertEqual(options["lifetime"], 7200)  # RFC 6886 s3.3
        self.assertEqual(options["health-interval"], 60.0)
        self.assertIsNone(options["gateway"])

    def test_everything(self) -> None:
        options = parse(
            "--map",
            "udp:5000",
            "-m",
            "TCP:8080:80",
            "--gateway",
            "10.77.0.1",
            "--lifetime",
            "600",
            "--health-interval",
            "2.5",
        )
        self.assertEqual(
            options["maps"], [(Transport.UDP, 5000, None), (Transport.TCP, 8080, 80)]
        )
        self.assertEqual(options["gateway"], IPv4Address("10.77.0.1"))
        self.assertEqual(options["lifetime"], 600)
        self.assertEqual(options["health-interval"], 2.5)

    def test_badMap(self) -> None:
        """
        A bad --map gives a one-line error naming the value.
        """
        for value in [
            "udp",
            "udp:",
            "sctp:5000",
            "udp:0",
            "udp:65536",
            "udp:0:5000",
            "udp:5000:65536",
            "udp:5000:x",
            "udp:5000:80:1",
            "udp:-1",
            "5000",
            "udp:5 000",
        ]:
            with self.assertRaises(usage.UsageError, msg=value) as caught:
                parse("--map", value)
            message = str(caught.exception)
            self.assertIn(repr(value), message)
            self.assertNotIn("\n", message)

    def test_duplicateMap(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            parse("--map", "udp:5000", "--map", "UDP:5000:6000")
        self.assertIn("'UDP:5000:6000'", str(caught.exception))
        # The same port of the other protocol is another mapping.
        self.assertEqual(
            len(parse("--map", "udp:5000", "--map", "tcp:5000")["maps"]), 2
        )

    def test_noMap(self) -> None:
        self.assertRaises(usage.UsageError, parse)
        self.assertRaises(usage.UsageError, parse, "--gateway", "10.0.0.1")

    def test_badValues(self) -> None:
        """
        Each bad value is named in a one-line error.
        """
        for option, value in [
            ("--gateway", "10.0.0"),
            ("--gateway", "fe80::1"),
            # Requests go to one host, the gateway (RFC 6886 s3): as natpmp.
            ("--gateway", "0.0.0.0"),
            ("--gateway", "224.0.0.1"),
            ("--gateway", "255.255.255.255"),
            ("--lifetime", "0"),
            ("--lifetime", "1.5"),
            ("--lifetime", "4294967296"),
            ("--health-interval", "0"),
            ("--health-interval", "soon"),
        ]:
            with self.assertRaises(usage.UsageError, msg=value) as caught:
                parse("--map", "udp:5000", option, value)
            message = str(caught.exception)
            self.assertIn(option, message)
            self.assertIn(repr(value), message)
            self.assertNotIn("\n", message)

    def test_parseMap(self) -> None:
        self.assertEqual(parseMap("tcp:22:2222"), (Transport.TCP, 22, 2222))
        self.assertEqual(parseMap("Udp:65535"), (Transport.UDP, 65535, None))

    def test_externalZero(self) -> None:
        """
        Issue 10, item 17: external port 0 lets the gateway choose (RFC 6886
        s3.3), as C{natpmp map --external 0} does; the service suggests 0.
        """
        options = parse("--map", "tcp:8080:0")
        self.assertEqual(options["maps"], [(Transport.TCP, 8080, 0)])
        service = makeService(options)
        assert isinstance(service, PortMapperService)
        (state,) = service.states()
        self.assertEqual(state.declaration.externalPort, 0)
        self.assertEqual(str(state.declaration), "tcp:8080:0")

    def test_positionalSuggestsMap(self) -> None:
        """
        Issue 10, item 17: a bare C{tcp:8080} is answered with a one-line
        hint to use C{--map}.
        """
        with self.assertRaises(usage.UsageError) as caught:
            parse("tcp:8080")
        message = str(caught.exception)
        self.assertIn("'tcp:8080'", message)
        self.assertIn("--map tcp:8080", message)
        self.assertNotIn("\n", message)

    def test_lifetimeRange(self) -> None:
        """
        The lifetime's range, as the error states it, starts at 1: 0 would
        delete (RFC 6886 s3.4) and is refused.
        """
        for value in ("-5", "0"):
            with self.assertRaises(usage.UsageError) as caught:
                parse("--map", "udp:5000", "--lifetime", value)
            self.assertIn("from 1 to 4294967295", str(caught.exception))


def built(
    case: SynchronousTestCase, options: Options
) -> tuple[PortMapperService, dict[str, Any]]:
    """
    L{makeService}'s service for C{options}, and the keyword arguments it
    was made with (its public constructor's, not its insides).
    """
    made: list[dict[str, Any]] = []

    class Recording(PortMapperService):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    case.patch(twisted_natpmp.service, "PortMapperService", Recording)
    service = makeService(options)
    assert isinstance(service, PortMapperService)
    (arguments,) = made
    return service, arguments


class MakeServiceTests(SynchronousTestCase):
    def build(self, options: Options) -> tuple[PortMapperService, dict[str, Any]]:
        return built(self, options)

    def test_makeService(self) -> None:
        """
        The service keeps the --map ports mapped with the --lifetime asked,
        on the --gateway given, and is not started yet.
        """
        options = parse(
            "--map",
            "udp:5000",
            "--map",
            "tcp:8080:80",
            "--gateway",
            "10.77.0.1",
            "--lifetime",
            "600",
            "--health-interval",
            "30",
        )
        service, arguments = self.build(options)
        self.assertFalse(service.running)
        self.assertEqual(
            [s.declaration for s in service.states()],
            [
                MappingDeclaration(Transport.UDP, 5000, None, 600),
                MappingDeclaration(Transport.TCP, 8080, 80, 600),
            ],
        )
        self.assertEqual(arguments["gateway"], IPv4Address("10.77.0.1"))
        self.assertEqual(arguments["healthInterval"], 30.0)

    def test_allowPublicAddress(self) -> None:
        """
        Issue 10, item 13: C{--allow-public} lets the service map
        from an address that is not private (RFC 6886 s3 SHOULD); by
        default it does not.
        """
        _, default = self.build(parse("--map", "udp:5000"))
        _, allowed = self.build(parse("--map", "udp:5000", "--allow-public"))
        self.assertIs(default["allowPublicAddress"], False)
        self.assertIs(allowed["allowPublicAddress"], True)

    def test_discoversByDefault(self) -> None:
        """
        Without --gateway, the service follows the default gateway.
        """
        _, arguments = self.build(parse("--map", "udp:5000"))
        self.assertIsNone(arguments["gateway"])


class ProtocolTests(SynchronousTestCase):
    """
    C{--protocol} and C{--nonce-file}: the service maps in the protocol
    chosen (auto by default: PCP first, RFC 6887 s9), its PCP nonces in
    the file named.
    """

    def build(self, options: Options) -> tuple[PortMapperService, dict[str, Any]]:
        return built(self, options)

    def test_defaultAuto(self) -> None:
        """
        By default the service negotiates, its nonces in the per-user file.
        """
        # RFC 6887 s9
        options = parse("--map", "udp:5000")
        self.assertEqual((options["protocol"], options["nonce-file"]), ("auto", None))
        _, arguments = self.build(options)
        self.assertEqual(arguments["protocol"], "auto")
        self.assertIsNone(arguments["nonces"])

    def test_given(self) -> None:
        """
        C{--protocol} in any case; C{--nonce-file} made a nonce store.
        """
        _, arguments = self.build(
            parse("--map", "udp:5000", "--protocol", "PCP", "--nonce-file", "n.json")
        )
        self.assertEqual(arguments["protocol"], "pcp")
        self.assertEqual(arguments["nonces"].path, Path("n.json"))

    def test_internalAddress(self) -> None:
        """
        C{--internal-address} is the address PCP maps for (RFC 6887 s8.2);
        a bad one is refused in one line naming it.
        """
        # RFC 6887 s8.2
        _, arguments = self.build(
            parse("--map", "tcp:8443", "--internal-address", "2001:db8::2")
        )
        self.assertEqual(str(arguments["internalAddress"]), "2001:db8::2")
        _, default = self.build(parse("--map", "tcp:8443"))
        self.assertIsNone(default["internalAddress"])
        e = self.assertRaises(
            usage.UsageError, parse, "--map", "tcp:8443", "--internal-address", "x"
        )
        self.assertEqual(
            str(e), "--internal-address 'x' is not an IPv4 or IPv6 address"
        )

    def test_badProtocol(self) -> None:
        """
        An unknown protocol is refused in one line naming it.
        """
        e = self.assertRaises(
            usage.UsageError, parse, "--map", "udp:5000", "--protocol", "upnp"
        )
        self.assertEqual(str(e), "--protocol 'upnp' is not auto, pcp or natpmp")

    def test_ipv6Gateway(self) -> None:
        """
        An IPv6 gateway is taken for PCP, refused in one line for NAT-PMP.
        """
        options = parse("--map", "udp:5000", "--gateway", "2001:db8::1")
        self.assertEqual(str(options["gateway"]), "2001:db8::1")
        e = self.assertRaises(
            usage.UsageError,
            parse,
            "--map",
            "udp:5000",
            "--gateway",
            "2001:db8::1",
            "--protocol",
            "natpmp",
        )
        self.assertEqual(str(e), "--gateway '2001:db8::1': NAT-PMP speaks only IPv4")


class TwistdTests(SynchronousTestCase):
    def twistd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        code = (
            "import sys; from twisted.scripts.twistd import run;"
            " sys.argv[0] = 'twistd'; run()"
        )
        return subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            env=environment,
            cwd=ROOT,
            timeout=60,
        )

    def test_badMapOneLine(self) -> None:
        """
        C{twistd natpmp} with a bad --map ends with one line naming it, and
        no traceback.
        """
        result = self.twistd("-n", "natpmp", "--map", "udp:99999")
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertIn("--map 'udp:99999' is not", output.strip().splitlines()[-1])


class ImportTests(SynchronousTestCase):
    def test_cheapImport(self) -> None:
        """
        twistd imports every plugin's options to list them: importing
        C{twisted_natpmp._tap} imports neither the reactor, the service, the
        client nor netifaces.
        """
        loaded = modulesLoadedBy("twisted_natpmp._tap")
        heavy = {
            "twisted.internet.reactor",
            "netifaces",
            "twisted_natpmp.discovery",
            "twisted_natpmp.service",
            "twisted_natpmp.natpmp.client",
        }
        self.assertEqual(loaded & heavy, set())
