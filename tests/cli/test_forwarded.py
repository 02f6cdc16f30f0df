"""
Tests for C{natpmp forwarded-port} (L{twisted_natpmp._cli._forwarded}):
a VPN gateway's forwarded port, asked for UDP then TCP, as text and as one
JSON object.
"""

from __future__ import annotations

from twisted.python.usage import UsageError

from twisted_natpmp._cli import parseArguments
from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import ExternalAddressRequest, MapRequest
from twisted_natpmp.testing import ScriptedVPNGateway
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY

from ._helpers import RunCase, refuse


class ForwardedPortTests(RunCase):
    gateway: ScriptedVPNGateway  # type: ignore[assignment]

    def setUp(self) -> None:
        super().setUp()
        self.network.ports[(GATEWAY, 5351)].stopListening()
        self.gateway = ScriptedVPNGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)

    def test_text(self) -> None:
        # UDP first with internal port 0 and the lifetime, TCP suggesting
        # UDP's port; ProtonVPN grants 60 s whatever is asked.
        self.assertEqual(
            self.runCommand(
                ["--gateway", GATEWAY, "forwarded-port", "--lifetime", "3600"]
            ),
            0,
        )
        self.assertEqual(
            self.requests(),
            [
                MapRequest(Transport.UDP, 0, 0, 3600),
                MapRequest(Transport.TCP, 0, 38534, 3600),
                ExternalAddressRequest(),
            ],
        )
        self.assertEqual(
            self.stdout.getvalue(),
            f"forwarded public port 38534 (udp and tcp) on {EXTERNAL} for 60 s; the"
            f" gateway granted 60 s, not the 3600 s asked for (gateway {GATEWAY})\n",
        )
        self.assertEqual(self.gatewayLookups, 0)
        self.assertStopped()

    def test_internalAddress(self) -> None:
        # --internal-address binds the NAT-PMP socket (the tunnel's address):
        # every request is sent from it, and RFC 6886 s3's private-address
        # check judges it.
        # RFC 6886 s3
        code = self.runCommand(
            ["--gateway", GATEWAY, "--internal-address", "10.0.0.5", "forwarded-port"],
            clientFactory=None,
        )
        self.assertEqual(code, 0)
        sources = {address[0] for _, address in self.gateway.requests}
        self.assertEqual(sources, {"10.0.0.5"})
        self.gateway.requests.clear()
        code = self.runCommand(
            ["--gateway", GATEWAY, "--internal-address", "192.0.2.9", "forwarded-port"],
            clientFactory=None,
        )
        self.assertEqual(code, 1)
        self.assertIn("192.0.2.9, is public", self.stderr.getvalue())
        self.assertEqual(self.gateway.requests, [])

    def test_json(self) -> None:
        # Exactly one JSON object, as every command gives.
        self.gateway.tcpPort = 41000
        self.assertEqual(
            self.runCommand(["--json", "--gateway", GATEWAY, "forwarded-port"]), 0
        )
        self.assertEqual(
            self.jsonOutput(),
            {
                "command": "forwarded-port",
                "gateway": GATEWAY,
                "externalPort": 38534,
                "udpPort": 38534,
                "tcpPort": 41000,
                "lifetime": 60,
                "requestedLifetime": 60,
                "epoch": 100,
                "externalAddress": str(EXTERNAL),
                "mappingProtocol": "natpmp",
            },
        )

    def test_otherTcpPortText(self) -> None:
        self.gateway.tcpPort = 41000
        self.runCommand(["--gateway", GATEWAY, "forwarded-port"])
        self.assertTrue(
            self.stdout.getvalue().startswith(
                "forwarded public port 38534 for udp, 41000 for tcp"
            )
        )

    def test_echoedPort(self) -> None:
        # The 2023 capture: the reply echoes the granted port, not 0.
        self.gateway.echo = None
        self.assertEqual(self.runCommand(["--gateway", GATEWAY, "forwarded-port"]), 0)
        self.assertIn("forwarded public port 38534", self.stdout.getvalue())

    def test_refused(self) -> None:
        # miniupnpd refuses internal port 0 with a lifetime (result 2).
        self.gateway.reply = refuse(2)
        self.assertEqual(
            self.runCommand(["--json", "--gateway", GATEWAY, "forwarded-port"]), 1
        )
        record = self.jsonOutput()
        self.assertEqual(record["resultCode"], 2)
        self.assertEqual(record["command"], "forwarded-port")

    def test_protocolAutoIsNATPMP(self) -> None:
        options = parseArguments(["--gateway", GATEWAY, "forwarded-port"])
        self.assertEqual(options.mappingProtocol, "natpmp")
        self.assertEqual(options.lifetime, 60)

    def test_pcpRefused(self) -> None:
        error = self.assertRaises(
            UsageError,
            parseArguments,
            ["--gateway", GATEWAY, "--protocol", "pcp", "forwarded-port"],
        )
        self.assertEqual(
            str(error),
            "natpmp forwarded-port: error: --protocol pcp: forwarded-port speaks"
            " NAT-PMP",
        )

    def test_gatewayRequired(self) -> None:
        # A VPN's gateway is not the default one: it must be given.
        error = self.assertRaises(UsageError, parseArguments, ["forwarded-port"])
        self.assertIn("--gateway IP is required", str(error))

    def test_lifetimeZero(self) -> None:
        # RFC 6886 s3.4: lifetime 0 would make it delete-all.
        self.assertRaises(
            UsageError,
            parseArguments,
            ["--gateway", GATEWAY, "forwarded-port", "--lifetime", "0"],
        )
