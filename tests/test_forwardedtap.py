"""
Tests for L{twisted_natpmp._forwardedtap}: C{twistd natpmp --forwarded-port},
a VPN gateway's forwarded port.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._tap import Options, makeService
from twisted_natpmp.service.forwarded import ForwardedPortService

from .test_tap import parse


class ForwardedOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        # ProtonVPN's lease: 60 s; the gateway as given.
        options = parse("--gateway", "10.2.0.1", "--forwarded-port")
        self.assertEqual(options["lifetime"], 60)
        self.assertEqual(options["gateway"], IPv4Address("10.2.0.1"))
        self.assertEqual(options["on-change-timeout"], 30.0)
        self.assertIsNone(options["port-file"])

    def test_service(self) -> None:
        options = parse(
            "--gateway",
            "10.2.0.1",
            "--forwarded-port",
            "--port-file",
            "/run/port",
            "--on-change",
            "rebind",
            "--on-change-timeout",
            "5",
            "--lifetime",
            "120",
            "--internal-address",
            "10.2.0.2",
        )
        service = makeService(options)
        assert isinstance(service, ForwardedPortService)
        self.assertEqual(service.gateway, IPv4Address("10.2.0.1"))
        self.assertEqual(service.lifetime, 120)
        self.assertEqual(service.portFile, Path("/run/port"))
        assert service.command is not None
        self.assertEqual(
            (service.command.command, service.command.timeout), ("rebind", 5.0)
        )
        self.assertEqual(service._interface, "10.2.0.2")

    def test_allowPublic(self) -> None:
        # RFC 6886 s3: refused from a public address unless --allow-public.
        service = makeService(parse("--gateway", "10.2.0.1", "--forwarded-port"))
        assert isinstance(service, ForwardedPortService)
        self.assertFalse(service._allowPublic)
        service = makeService(
            parse("--gateway", "10.2.0.1", "--forwarded-port", "--allow-public")
        )
        assert isinstance(service, ForwardedPortService)
        self.assertTrue(service._allowPublic)

    def test_mapsKeepLifetimeDefault(self) -> None:
        # RFC 6886 s3.3: the ordinary mode keeps its 7200 s.
        self.assertEqual(parse("--map", "udp:5000")["lifetime"], 7200)

    def assertRefused(self, message: str, *argv: str) -> None:
        error = self.assertRaises(usage.UsageError, parse, *argv)
        self.assertEqual(str(error), message)

    def test_needsGateway(self) -> None:
        # Discovery is not consulted: a VPN's gateway is behind the tunnel.
        self.assertRefused(
            "--forwarded-port needs --gateway (the VPN gateway, e.g. 10.2.0.1):"
            " it is not discovered",
            "--forwarded-port",
        )

    def test_noMaps(self) -> None:
        self.assertRefused(
            "--forwarded-port keeps the VPN gateway's one forwarded port for UDP"
            " and TCP; it takes no --map",
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--map",
            "udp:5000",
        )

    def test_notPCP(self) -> None:
        self.assertRefused(
            "--forwarded-port speaks NAT-PMP (as ProtonVPN's gateway does), not"
            " --protocol pcp",
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--protocol",
            "pcp",
        )
        # auto and natpmp mean NAT-PMP here.
        for protocol in ("auto", "natpmp"):
            parse("--forwarded-port", "--gateway", "10.2.0.1", "--protocol", protocol)

    def test_ipv6Refused(self) -> None:
        self.assertRefused(
            "--gateway '2001:db8::1': --forwarded-port speaks NAT-PMP, IPv4 only",
            "--forwarded-port",
            "--gateway",
            "2001:db8::1",
        )
        self.assertRefused(
            "--internal-address '2001:db8::2': --forwarded-port binds an IPv4"
            " address (the tunnel's)",
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--internal-address",
            "2001:db8::2",
        )

    def test_onlyWithForwarded(self) -> None:
        for option in ("--port-file", "--on-change"):
            self.assertRefused(
                f"{option} needs --forwarded-port", "--map", "udp:1", option, "x"
            )

    def test_badTimeout(self) -> None:
        error = self.assertRaises(
            usage.UsageError,
            parse,
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--on-change",
            "x",
            "--on-change-timeout",
            "0",
        )
        self.assertIn("--on-change-timeout '0'", str(error))

    def test_emptyCommand(self) -> None:
        for command in ("", "  "):
            self.assertRefused(
                f"--on-change {command!r}: the command is empty",
                "--forwarded-port",
                "--gateway",
                "10.2.0.1",
                "--on-change",
                command,
            )

    def test_timeoutNeedsCommand(self) -> None:
        self.assertRefused(
            "--on-change-timeout needs --forwarded-port",
            "--map",
            "udp:1",
            "--on-change-timeout",
            "5",
        )
        self.assertRefused(
            "--on-change-timeout needs --on-change",
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--on-change-timeout",
            "5",
        )

    def test_portFileDirectoryMissing(self) -> None:
        # Said at start, in one line naming the path.
        missing = Path(self.mktemp()) / "port"
        self.assertRefused(
            f"--port-file {str(missing)!r}: directory {str(missing.parent)!r}"
            " does not exist",
            "--forwarded-port",
            "--gateway",
            "10.2.0.1",
            "--port-file",
            str(missing),
        )
        missing.parent.mkdir(parents=True)
        parse("--forwarded-port", "--gateway", "10.2.0.1", "--port-file", str(missing))

    def test_help(self) -> None:
        # The --on-change help names all seven variables; --internal-address
        # says it binds the NAT-PMP socket.
        texts = {o[0]: str(o[3]) for o in Options.optParameters}
        for name in (
            "NATPMP_PUBLIC_PORT",
            "NATPMP_PREVIOUS_PORT",
            "NATPMP_PUBLIC_ADDRESS",
            "NATPMP_UDP_PORT",
            "NATPMP_TCP_PORT",
            "NATPMP_GATEWAY",
            "NATPMP_LIFETIME",
        ):
            self.assertIn(name, texts["on-change"])
        internal = texts["internal-address"]
        self.assertTrue(internal.startswith("The address to map for and send from"))
        self.assertIn("NAT-PMP binds its socket", internal)

    def test_nothingAsked(self) -> None:
        self.assertRefused(
            "give at least one --map PROTO:INTERNAL, or --forwarded-port"
        )

    def test_synopsis(self) -> None:
        self.assertIn("--forwarded-port", Options.synopsis)
