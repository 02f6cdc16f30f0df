"""
Tests for L{twisted_natpmp._cli.run}: each command against a scripted
gateway on the in-memory network, as text and as JSON.
"""

from __future__ import annotations

from io import StringIO

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._cli import _options, _protocols
from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    MapRequest,
    MapResponse,
)
from twisted_natpmp.natpmp.client import RETRANSMIT_TIMEOUTS
from twisted_natpmp.testing import ScriptedGateway
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY

from ._helpers import RunCase, refuse


class CappedScheduleTests(SynchronousTestCase):
    def test_capped(self) -> None:
        """
        The RFC 6886 s3.1 schedule is cut to add up to the limit, the last
        wait shortened.
        """
        self.assertEqual(
            _protocols.cappedSchedule(RETRANSMIT_TIMEOUTS, 3), (0.25, 0.5, 1, 1.25)
        )
        self.assertEqual(_protocols.cappedSchedule(RETRANSMIT_TIMEOUTS, 0.1), (0.1,))
        self.assertEqual(
            _protocols.cappedSchedule(RETRANSMIT_TIMEOUTS, 0.75), (0.25, 0.5)
        )

    def test_uncapped(self) -> None:
        """
        No limit, or one beyond the schedule's end, leaves it whole.
        """
        self.assertEqual(
            _protocols.cappedSchedule(RETRANSMIT_TIMEOUTS, None), RETRANSMIT_TIMEOUTS
        )
        self.assertEqual(
            _protocols.cappedSchedule(RETRANSMIT_TIMEOUTS, 1000), RETRANSMIT_TIMEOUTS
        )


class RunTests(RunCase):
    """
    L{twisted_natpmp._cli.run}: what each command asks and prints.
    """

    def test_external(self) -> None:
        """
        C{external} asks the default gateway (RFC 6886 s3) for its external
        address (s3.2) and prints it.
        """
        self.assertEqual(self.runCommand(["external"]), 0)
        self.assertEqual(self.requests(), [ExternalAddressRequest()])
        self.assertEqual(self.gatewayLookups, 1)
        self.assertEqual(
            self.stdout.getvalue(), f"external address {EXTERNAL} (gateway {GATEWAY})\n"
        )
        self.assertEqual(self.stderr.getvalue(), "")
        self.assertStopped()

    def test_externalJSON(self) -> None:
        self.assertEqual(self.runCommand(["--json", "external"]), 0)
        self.assertEqual(
            self.jsonOutput(),
            {
                "command": "external",
                "gateway": GATEWAY,
                "externalAddress": str(EXTERNAL),
                "epoch": 100,
                "how": "NAT-PMP external-address request",
                "mappingProtocol": "natpmp",
            },
        )

    def test_explicitGateway(self) -> None:
        """
        A gateway given with C{--gateway} is asked without looking for the
        default one.
        """
        other = ScriptedGateway()
        self.network.host("10.0.0.254").listenUDP(5351, other)
        self.assertEqual(self.runCommand(["--gateway", "10.0.0.254", "external"]), 0)
        self.assertEqual(self.gatewayLookups, 0)
        self.assertEqual(len(other.requests), 1)
        self.assertEqual(self.gateway.requests, [])

    def test_gatewayPort(self) -> None:
        """
        C{--gateway-port} sends to another port than 5351.
        """
        other = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(15351, other)
        self.assertEqual(self.runCommand(["--gateway-port", "15351", "external"]), 0)
        self.assertEqual(len(other.requests), 1)
        self.assertEqual(self.gateway.requests, [])

    def test_map(self) -> None:
        """
        C{map} suggests the internal port as the external one and asks for
        7200 s (RFC 6886 s3.3); then, to show it, the external address.
        """
        self.assertEqual(self.runCommand(["map", "tcp", "8080"]), 0)
        self.assertEqual(
            self.requests(),
            [MapRequest(Transport.TCP, 8080, 8080, 7200), ExternalAddressRequest()],
        )
        self.assertEqual(
            self.stdout.getvalue(),
            f"mapped tcp {EXTERNAL}:8080 -> local port 8080 for 7200 s"
            f" (gateway {GATEWAY})\n",
        )
        self.assertStopped()

    def test_mapGrantedOtherwise(self) -> None:
        """
        The gateway may grant another lifetime and port than those asked
        for (RFC 6886 s3.3); the output shows what was granted.
        """
        self.gateway.granted = 60
        argv = ["--json", "map", "udp", "5000", "--external", "0", "--lifetime", "3600"]
        self.assertEqual(self.runCommand(argv), 0)
        self.assertEqual(self.requests()[0], MapRequest(Transport.UDP, 5000, 0, 3600))
        self.assertEqual(
            self.jsonOutput(),
            {
                "command": "map",
                "gateway": GATEWAY,
                "protocol": "udp",
                "internalPort": 5000,
                "externalPort": 50000,
                "lifetime": 60,
                "requestedExternalPort": 0,
                "requestedLifetime": 3600,
                "epoch": 100,
                "externalAddress": str(EXTERNAL),
                "mappingProtocol": "natpmp",
            },
        )

    def test_mapGrantedOtherwiseText(self) -> None:
        # RFC 6886 s3.3: what the gateway granted instead is said plainly.
        self.gateway.granted = 60
        self.assertEqual(self.runCommand(["map", "udp", "5000"]), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            f"mapped udp {EXTERNAL}:5000 -> local port 5000 for 60 s; the gateway"
            f" granted 60 s, not the 7200 s asked for (gateway {GATEWAY})\n",
        )

    def test_mapOtherPortText(self) -> None:
        # RFC 6886 s3.3: a suggested port is only a hint; another one
        # granted is said plainly, beside a longer lifetime (s3.3: SHOULD
        # NOT, but some do).
        answer = self.gateway.answer
        self.gateway.reply = lambda request: (
            answer(request)
            if isinstance(request, ExternalAddressRequest)
            else [MapResponse(Transport.TCP, 0, 100, 8080, 40000, 86400).encode()]
        )
        self.assertEqual(self.runCommand(["--json", "map", "tcp", "8080"]), 0)
        record = self.jsonOutput()
        self.assertEqual(
            (record["externalPort"], record["requestedExternalPort"]), (40000, 8080)
        )
        self.stdout = StringIO()
        self.assertEqual(self.runCommand(["map", "tcp", "8080"]), 0)
        self.assertIn(
            "for 86400 s; the gateway granted 86400 s, not the 7200 s asked for and"
            " external port 40000, not the 8080 asked for",
            self.stdout.getvalue(),
        )

    def test_mapWithoutExternalAddress(self) -> None:
        """
        The mapping succeeded even if the gateway will not say its external
        address: exit 0, the address unknown.
        """
        answer = self.gateway.answer
        self.gateway.reply = lambda request: (
            refuse(3)(request)
            if isinstance(request, ExternalAddressRequest)
            else answer(request)
        )
        self.assertEqual(self.runCommand(["--json", "map", "tcp", "8080"]), 0)
        self.assertIsNone(self.jsonOutput()["externalAddress"])
        self.assertEqual(self.stderr.getvalue(), "")

    def test_mapExternalAddressUnanswered(self) -> None:
        """
        If the external address query after a mapping goes unanswered, the
        command waits only briefly (the gateway has just answered), then
        prints the mapping without the address.
        """
        self.network.drop = lambda datagram: datagram.data == b"\x00\x00"
        d = self.start(["map", "tcp", "8080"])
        self.network.flush()
        self.advance(3.6875)
        self.assertNoResult(d)
        self.advance(0.0625)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            f"mapped tcp external port 8080 -> local port 8080 for 7200 s"
            f" (gateway {GATEWAY})\n",
        )

    def test_unmap(self) -> None:
        """
        C{unmap} deletes one mapping: lifetime 0, suggested port 0 (RFC 6886
        s3.4).
        """
        self.assertEqual(self.runCommand(["unmap", "udp", "5000"]), 0)
        self.assertEqual(self.requests(), [MapRequest(Transport.UDP, 5000, 0, 0)])
        self.assertEqual(
            self.stdout.getvalue(),
            f"unmapped udp local port 5000 (gateway {GATEWAY})\n",
        )
        self.assertStopped()

    def test_unmapAll(self) -> None:
        """
        C{unmap-all} deletes every mapping of a protocol: internal port 0,
        lifetime 0 (RFC 6886 s3.4).
        """
        self.assertEqual(self.runCommand(["--json", "unmap-all", "tcp"]), 0)
        self.assertEqual(self.requests(), [MapRequest(Transport.TCP, 0, 0, 0)])
        note = (
            "some gateways, miniupnpd among them, delete this host's udp mappings too"
        )
        self.assertEqual(
            self.jsonOutput(),
            {
                "command": "unmap-all",
                "gateway": GATEWAY,
                "protocol": "tcp",
                "note": note,
                "mappingProtocol": "natpmp",
            },
        )

    def test_unmapAllSaysBoth(self) -> None:
        """
        miniupnpd deletes both protocols' mappings on a delete-all of one:
        the output and the help say so rather than claim only one went.
        """
        self.assertEqual(self.runCommand(["unmap-all", "udp"]), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            "unmapped every udp port of this host (some gateways, miniupnpd among"
            f" them, delete this host's tcp mappings too) (gateway {GATEWAY})\n",
        )
        self.assertIn("miniupnpd", _options.UNMAP_ALL_HELP)
