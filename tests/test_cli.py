"""
Tests for the C{natpmp} command, L{twisted_natpmp._cli}: argument parsing,
L{run} on the in-memory network against a scripted gateway, L{main}'s exit
codes, and once the real C{python -m twisted_natpmp} over loopback UDP.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from io import StringIO
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

import twisted_natpmp
from twisted_natpmp import _cli
from twisted_natpmp._cli import Options, main, parseArguments, run
from twisted_natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
)
from twisted_natpmp.client import RETRANSMIT_TIMEOUTS, NATPMPClient
from twisted_natpmp.errors import NoGatewayError

from ._gateway import EXTERNAL, GATEWAY, HOST, ScriptedGateway
from ._memudp import MemoryUDPNetwork


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
            Options("map", protocol=Protocol.TCP, internalPort=8080, lifetime=7200),
        )
        self.assertEqual(
            parseArguments(
                ["map", "UDP", "5000", "--external", "0", "--lifetime", "60"]
            ),
            Options(
                "map",
                protocol=Protocol.UDP,
                internalPort=5000,
                externalPort=0,
                lifetime=60,
            ),
        )

    def test_unmap(self) -> None:
        self.assertEqual(
            parseArguments(["unmap", "udp", "5000"]),
            Options("unmap", protocol=Protocol.UDP, internalPort=5000),
        )
        self.assertEqual(
            parseArguments(["unmap-all", "tcp"]),
            Options("unmap-all", protocol=Protocol.TCP),
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


class CappedScheduleTests(SynchronousTestCase):
    def test_capped(self) -> None:
        """
        The RFC 6886 s3.1 schedule is cut to add up to the limit, the last
        wait shortened.
        """
        self.assertEqual(
            _cli._cappedSchedule(RETRANSMIT_TIMEOUTS, 3), (0.25, 0.5, 1, 1.25)
        )
        self.assertEqual(_cli._cappedSchedule(RETRANSMIT_TIMEOUTS, 0.1), (0.1,))
        self.assertEqual(_cli._cappedSchedule(RETRANSMIT_TIMEOUTS, 0.75), (0.25, 0.5))

    def test_uncapped(self) -> None:
        """
        No limit, or one beyond the schedule's end, leaves it whole.
        """
        self.assertEqual(
            _cli._cappedSchedule(RETRANSMIT_TIMEOUTS, None), RETRANSMIT_TIMEOUTS
        )
        self.assertEqual(
            _cli._cappedSchedule(RETRANSMIT_TIMEOUTS, 1000), RETRANSMIT_TIMEOUTS
        )


def refuse(code: int) -> Any:
    """
    A reply script for L{ScriptedGateway} that answers every request with
    result C{code}.
    """

    def reply(request: Request) -> list[bytes]:
        if isinstance(request, MapRequest):
            return [
                MapResponse(
                    request.protocol, code, 100, request.internalPort, 0, 0
                ).encode()
            ]
        return [ExternalAddressResponse(code, 100, IPv4Address(0)).encode()]

    return reply


class RunTests(SynchronousTestCase):
    """
    L{run} against a scripted gateway on the in-memory network.
    """

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.stdout = StringIO()
        self.stderr = StringIO()
        self.clients: list[NATPMPClient] = []
        self.gatewayLookups = 0

    def findGateway(self) -> IPv4Address:
        self.gatewayLookups += 1
        return IPv4Address(GATEWAY)

    def clientFactory(
        self, reactor: Any, gateway: IPv4Address, gatewayPort: int
    ) -> NATPMPClient:
        client = _cli._listen(reactor, gateway, gatewayPort)
        self.clients.append(client)
        return client

    def start(self, argv: Sequence[str], **kwargs: Any) -> Deferred[int]:
        kwargs.setdefault("findGateway", self.findGateway)
        kwargs.setdefault("clientFactory", self.clientFactory)
        kwargs.setdefault("findLocalAddress", lambda gateway: IPv4Address(HOST))
        return run(
            self.network.host(HOST),
            parseArguments(argv),
            stdout=self.stdout,
            stderr=self.stderr,
            **kwargs,
        )

    def advance(self, seconds: float) -> None:
        """
        Advance the clock by C{seconds}, stopping at every call due on the
        way, so that calls scheduled meanwhile start from their own time.
        """
        until = self.clock.seconds() + seconds
        for _ in range(10000):
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            step = min([t for t in due if t <= until], default=until)
            self.clock.advance(step - self.clock.seconds())
            if step == until:
                return
        raise RuntimeError("the clock did not settle")

    def runCommand(self, argv: Sequence[str], **kwargs: Any) -> int:
        d = self.start(argv, **kwargs)
        self.network.flush()
        return self.successResultOf(d)

    def requests(self) -> list[Request]:
        return [request for request, _ in self.gateway.requests]

    def jsonOutput(self) -> Any:
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return json.loads(lines[0])

    def errorLine(self) -> str:
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("natpmp: "), lines[0])
        return lines[0]

    def assertStopped(self) -> None:
        """
        Every client made was stopped: its socket is closed.
        """
        self.assertTrue(self.clients)
        self.assertEqual(
            [endpoint for endpoint in self.network.ports if endpoint[0] == HOST], []
        )

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
            [MapRequest(Protocol.TCP, 8080, 8080, 7200), ExternalAddressRequest()],
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
        self.assertEqual(self.requests()[0], MapRequest(Protocol.UDP, 5000, 0, 3600))
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
            else [MapResponse(Protocol.TCP, 0, 100, 8080, 40000, 86400).encode()]
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
        self.assertEqual(self.requests(), [MapRequest(Protocol.UDP, 5000, 0, 0)])
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
        self.assertEqual(self.requests(), [MapRequest(Protocol.TCP, 0, 0, 0)])
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
        self.assertIn("miniupnpd", _cli._UNMAP_ALL_HELP)

    def test_refused(self) -> None:
        """
        A non-zero result code (RFC 6886 s3.5) exits 1 with one line naming
        the code and its meaning.
        """
        self.gateway.reply = refuse(2)
        self.assertEqual(self.runCommand(["map", "tcp", "8080"]), 1)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: gateway {GATEWAY} refused: result code 2"
            " (not authorized/refused)",
        )
        self.assertEqual(self.stdout.getvalue(), "")
        self.assertStopped()

    def test_refusedJSON(self) -> None:
        """
        With C{--json}, a refusal is also one JSON object on standard output.
        """
        self.gateway.reply = refuse(4)
        self.assertEqual(self.runCommand(["--json", "unmap", "tcp", "8080"]), 1)
        self.assertIn("result code 4 (out of resources)", self.errorLine())
        output = self.jsonOutput()
        self.assertEqual(output["resultCode"], 4)
        self.assertEqual(output["gateway"], GATEWAY)
        self.assertIn("out of resources", output["error"])

    def test_unknownResultCode(self) -> None:
        """
        An unknown result code fails the request (RFC 6886 s3.5).
        """
        self.gateway.reply = refuse(17)
        self.assertEqual(self.runCommand(["external"]), 1)
        self.assertIn("result code 17 (unknown result code 17)", self.errorLine())

    def test_noAnswer(self) -> None:
        """
        Unanswered, the command gives up after the RFC 6886 s3.1 schedule:
        nine sends, 127.75 s; then one line and exit 1.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["external"])
        self.advance(127.734375)
        self.assertNoResult(d)
        self.advance(0.015625)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(len(self.network.sentTo((GATEWAY, 5351))), 9)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: no response from gateway {GATEWAY} after 9 attempt(s)"
            " in 127.75 s",
        )
        self.assertStopped()

    def test_timeout(self) -> None:
        """
        C{--timeout} caps the whole request: the s3.1 schedule is cut there.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["--timeout", "3", "--json", "unmap", "tcp", "80"])
        self.advance(2.875)
        self.assertNoResult(d)
        self.advance(0.125)
        self.assertEqual(self.successResultOf(d), 1)
        sends = [d.time for d in self.network.sentTo((GATEWAY, 5351))]
        self.assertEqual(sends, [0, 0.25, 0.75, 1.75])
        self.assertEqual(
            self.errorLine(),
            f"natpmp: no response from gateway {GATEWAY} after 4 attempt(s)"
            " in 3 s (--timeout 3)",
        )
        self.assertIn("no response", self.jsonOutput()["error"])

    def test_timeoutCoversFollowUp(self) -> None:
        """
        C{--timeout} covers the external address query after a mapping too.
        """
        self.network.drop = lambda datagram: datagram.data == b"\x00\x00"
        self.network.delay = 0.125
        d = self.start(["--timeout", "1.5", "map", "tcp", "8080"])
        self.advance(1.4375)
        self.assertNoResult(d)
        self.advance(0.0625)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn("mapped tcp external port 8080", self.stdout.getvalue())

    def test_noGateway(self) -> None:
        """
        No default gateway: one line, exit 1, nothing sent.
        """

        def findGateway() -> IPv4Address:
            raise NoGatewayError("no default IPv4 gateway found; name one")

        self.assertEqual(
            self.runCommand(["--json", "external"], findGateway=findGateway), 1
        )
        # The command, not the library, advises its own flag.
        message = "no default IPv4 gateway found; name one (--gateway IP)"
        self.assertEqual(self.errorLine(), f"natpmp: {message}")
        self.assertEqual(
            self.jsonOutput(),
            {"command": "external", "gateway": None, "error": message},
        )
        self.assertEqual(self.network.log, [])

    def test_publicAddressRefused(self) -> None:
        """
        RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
        address is private; with a public one the command says so, sends
        nothing, and exits 1.
        """
        public = IPv4Address("203.0.113.5")
        code = self.runCommand(
            ["--json", "external"], findLocalAddress=lambda g: public
        )
        self.assertEqual(code, 1)
        self.assertEqual(self.network.log, [])
        self.assertIn("203.0.113.5", self.errorLine())
        self.assertIn("--allow-public", self.errorLine())
        self.assertIn("is public", self.jsonOutput()["error"])

    def test_publicAddressAllowed(self) -> None:
        """
        C{--allow-public} asks anyway, with a warning on standard error and
        in the JSON object.
        """
        looked: list[IPv4Address] = []

        def findLocalAddress(gateway: IPv4Address) -> IPv4Address:
            looked.append(gateway)
            return IPv4Address("203.0.113.5")

        argv = ["--json", "--allow-public", "external"]
        self.assertEqual(self.runCommand(argv, findLocalAddress=findLocalAddress), 0)
        self.assertEqual(looked, [IPv4Address(GATEWAY)])
        self.assertIn("warning", self.errorLine())
        self.assertIn("203.0.113.5", self.jsonOutput()["warnings"][0])
        self.assertEqual(self.jsonOutput()["externalAddress"], str(EXTERNAL))

    def test_localAddressUnknown(self) -> None:
        """
        No route to find the local address by: the request itself goes out
        (and would fail on its own).
        """

        def findLocalAddress(gateway: IPv4Address) -> IPv4Address:
            raise OSError(101, "Network is unreachable")

        self.assertEqual(
            self.runCommand(["external"], findLocalAddress=findLocalAddress), 0
        )

    def test_progressAtTerminal(self) -> None:
        """
        While the gateway does not answer, a person at a terminal reads on
        standard error that the command is still trying, from the 4th
        attempt (1.75 s) on; standard output stays clean.
        """
        self.stderr = _Terminal()
        self.network.drop = lambda datagram: True
        d = self.start(["--json", "--timeout", "10", "external"])
        self.advance(1.5)
        self.assertEqual(self.stderr.getvalue(), "")
        self.advance(8.5)
        self.assertEqual(self.successResultOf(d), 1)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(
            lines[:2],
            [
                f"natpmp: no answer from gateway {GATEWAY} yet; still trying"
                " (attempt 4, 1.75 s)",
                f"natpmp: no answer from gateway {GATEWAY} yet; still trying"
                " (attempt 5, 3.75 s)",
            ],
        )
        self.assertEqual(len(lines), 4)  # attempts 4, 5, 6 and the failure
        self.assertIn("no response", self.jsonOutput()["error"])

    def test_noProgressElsewhere(self) -> None:
        """
        When standard error is no terminal (a script, a log), the wait is
        silent: only the outcome's line.
        """
        self.network.drop = lambda datagram: True
        d = self.start(["--timeout", "10", "external"])
        self.advance(10)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertIn("no response", self.errorLine())

    def test_socketErrors(self) -> None:
        """
        A socket that cannot be opened or connected (no route to the
        gateway) is one line and exit 1, not a traceback.
        """
        errors: list[Exception] = [
            CannotListenError("", 0, OSError(98, "Address already in use")),
            OSError(101, "Network is unreachable"),
        ]
        for error in errors:

            def clientFactory(*args: Any, error: Exception = error) -> NATPMPClient:
                raise error

            self.stderr = StringIO()
            self.assertEqual(
                self.runCommand(["external"], clientFactory=clientFactory), 1
            )
            self.assertIn(str(getattr(error, "socketError", error)), self.errorLine())

    def test_sendError(self) -> None:
        """
        A send that fails (an L{OSError} from the socket) ends the command
        with one line.
        """

        def write(packet: bytes, addr: Any = None) -> None:
            raise OSError(101, "Network is unreachable")

        def clientFactory(*args: Any) -> NATPMPClient:
            client = self.clientFactory(*args)
            client.protocol.transport.write = write  # type: ignore[union-attr,method-assign]
            return client

        self.assertEqual(self.runCommand(["external"], clientFactory=clientFactory), 1)
        self.assertEqual(
            self.errorLine(),
            f"natpmp: cannot reach gateway {GATEWAY}:"
            " [Errno 101] Network is unreachable",
        )
        self.assertStopped()


class MainTests(SynchronousTestCase):
    """
    L{main}: exit codes and one-line errors, with L{react} replaced by one
    that runs on the in-memory network.
    """

    def setUp(self) -> None:
        self.stdout = StringIO()
        self.stderr = StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)
        self.network = MemoryUDPNetwork()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.patch(_cli, "react", self.react)
        self.patch(_cli, "localAddress", lambda gateway: IPv4Address(HOST))
        self.reacted = 0

    def react(self, start: Any) -> None:
        """
        Like L{react}: call C{start(reactor)}, run until done or stopped (as
        by Ctrl-C: the network goes quiet), then C{sys.exit}.
        """
        self.reacted += 1
        start(self.network.host(HOST))
        self.network.flush()
        raise SystemExit(0)

    def test_success(self) -> None:
        self.assertEqual(main(["--gateway", GATEWAY, "external"]), 0)
        self.assertIn(str(EXTERNAL), self.stdout.getvalue())

    def test_refused(self) -> None:
        self.gateway.reply = refuse(2)
        self.assertEqual(main(["--gateway", GATEWAY, "external"]), 1)
        self.assertIn("result code 2", self.stderr.getvalue())

    def test_usageError(self) -> None:
        """
        Bad arguments: exit 2, one line naming the value, no traceback, and
        nothing run.
        """
        self.assertEqual(main(["map", "tcp", "70000"]), 2)
        self.assertEqual(
            self.stderr.getvalue(),
            "natpmp map: error: argument INTERNAL: port 70000 is out of range"
            " 1-65535\n",
        )
        self.assertEqual(self.reacted, 0)

    def test_argvDefault(self) -> None:
        """
        Without arguments, L{main} reads C{sys.argv}.
        """
        self.patch(sys, "argv", ["natpmp", "map", "tcp", "abc"])
        self.assertEqual(main(), 2)
        self.assertIn("'abc'", self.stderr.getvalue())

    def test_help(self) -> None:
        """
        C{--help} prints the usage, including the exit codes, and exits 0.
        """
        self.assertEqual(main(["--help"]), 0)
        self.assertIn("exit codes: 0 success", self.stdout.getvalue())

    def test_interrupted(self) -> None:
        """
        If the reactor stops before the command is done (Ctrl-C), the exit
        code is 130 and the reason one line.
        """
        self.network.drop = lambda datagram: True
        self.assertEqual(main(["--gateway", GATEWAY, "external"]), 130)
        self.assertEqual(self.stderr.getvalue(), "natpmp: interrupted\n")
        self.assertEqual(self.stdout.getvalue(), "")

    def jsonOutput(self) -> Any:
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return json.loads(lines[0])

    def test_interruptedJSON(self) -> None:
        """
        With C{--json}, Ctrl-C too leaves exactly one JSON object.
        """
        self.network.drop = lambda datagram: True
        self.assertEqual(main(["--json", "--gateway", GATEWAY, "external"]), 130)
        self.assertEqual(
            self.jsonOutput(),
            {"command": "external", "gateway": GATEWAY, "error": "interrupted"},
        )

    def test_usageErrorJSON(self) -> None:
        """
        With C{--json}, bad arguments too give exactly one JSON object,
        naming the command when there is one.
        """
        self.assertEqual(main(["--json", "map", "tcp", "70000"]), 2)
        record = self.jsonOutput()
        self.assertEqual((record["command"], record["gateway"]), ("map", None))
        self.assertIn("port 70000 is out of range 1-65535", record["error"])
        self.assertEqual(len(self.stderr.getvalue().splitlines()), 1)
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(main(["--json", "--frobnicate"]), 2)
        self.assertIsNone(self.jsonOutput()["command"])
        self.assertEqual(self.reacted, 0)

    def test_bugJSON(self) -> None:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("a bug")

        self.patch(_cli, "_perform", broken)
        self.assertEqual(main(["--json", "--gateway", GATEWAY, "external"]), 1)
        self.assertIn("a bug", self.jsonOutput()["error"])

    def test_version(self) -> None:
        """
        C{--version} prints the version of twisted-natpmp and of Twisted.
        """
        from twisted import __version__ as twistedVersion

        self.assertEqual(main(["--version"]), 0)
        self.assertEqual(
            self.stdout.getvalue(),
            f"natpmp {twisted_natpmp.__version__} (Twisted {twistedVersion})\n",
        )
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(main(["--json", "--version"]), 0)
        self.assertEqual(
            self.jsonOutput(),
            {"version": twisted_natpmp.__version__, "twisted": twistedVersion},
        )
        self.assertEqual(self.reacted, 0)

    def test_bug(self) -> None:
        """
        An unexpected exception (a bug) is shown with its traceback, exit 1.
        """

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ZeroDivisionError("a bug")

        self.patch(_cli, "_perform", broken)
        self.assertEqual(main(["--gateway", GATEWAY, "external"]), 1)
        self.assertIn("Traceback", self.stderr.getvalue())
        self.assertIn("ZeroDivisionError", self.stderr.getvalue())


class _Terminal(StringIO):
    """
    Standard error as a terminal.
    """

    def isatty(self) -> bool:
        return True


def _environment() -> dict[str, str]:
    """
    The environment for a child Python that imports this checkout.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(twisted_natpmp.__file__)))
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, [environ.get("PYTHONPATH")])]
    )
    return environ


class SubprocessTests(TestCase):
    """
    The real C{python -m twisted_natpmp}, against a scripted gateway on
    127.0.0.1 (found with C{--gateway-port}).
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.gateway = ScriptedGateway()
        port = self.reactor.listenUDP(0, self.gateway, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.gatewayPort = port.getHost().port

    def natpmp(self, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(
            sys.executable,
            ["-m", "twisted_natpmp", *args],
            env=_environment(),
            reactor=self.reactor,
        )

    async def mapAndUnmap(self) -> None:
        common = ["--gateway", "127.0.0.1", "--gateway-port", str(self.gatewayPort)]
        out, err, code = await self.natpmp(
            *common, "--timeout", "30", "--json", "map", "udp", "5000"
        )
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(
            json.loads(out),
            {
                "command": "map",
                "gateway": "127.0.0.1",
                "protocol": "udp",
                "internalPort": 5000,
                "externalPort": 5000,
                "lifetime": 7200,
                "requestedExternalPort": 5000,
                "requestedLifetime": 7200,
                "epoch": 100,
                "externalAddress": str(EXTERNAL),
            },
        )
        out, err, code = await self.natpmp(*common, "unmap", "udp", "5000")
        self.assertEqual(
            (code, out, err),
            (0, b"unmapped udp local port 5000 (gateway 127.0.0.1)\n", b""),
        )
        self.assertEqual(
            [request for request, _ in self.gateway.requests],
            [
                MapRequest(Protocol.UDP, 5000, 5000, 7200),
                ExternalAddressRequest(),
                MapRequest(Protocol.UDP, 5000, 0, 0),
            ],
        )

    def test_mapAndUnmap(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mapAndUnmap())

    async def refused(self) -> None:
        self.gateway.reply = refuse(2)
        out, err, code = await self.natpmp(
            "--gateway",
            "127.0.0.1",
            "--gateway-port",
            str(self.gatewayPort),
            "external",
        )
        self.assertEqual(
            (code, out, err),
            (
                1,
                b"",
                b"natpmp: gateway 127.0.0.1 refused: result code 2"
                b" (not authorized/refused)\n",
            ),
        )

    def test_refused(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.refused())

    async def badArguments(self) -> None:
        out, err, code = await self.natpmp("map", "tcp", "70000")
        self.assertEqual(
            (code, out, err),
            (
                2,
                b"",
                b"natpmp map: error: argument INTERNAL: port 70000 is out of"
                b" range 1-65535\n",
            ),
        )

    def test_badArguments(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.badArguments())

    async def interrupted(self, *options: str) -> tuple[int | None, bytes, bytes]:
        secondRequest: Deferred[None] = Deferred()

        def reply(request: Request) -> list[bytes]:
            # The second send is made by the running reactor, so the child's
            # signal handlers are installed by then.
            if len(self.gateway.requests) == 2:
                secondRequest.callback(None)
            return []

        self.gateway.reply = reply
        ended: Deferred[tuple[int | None, bytes]] = Deferred()
        child = _Child(ended)
        self.reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-m", "twisted_natpmp", "--gateway", "127.0.0.1",
             "--gateway-port", str(self.gatewayPort), "--timeout", "60", *options,
             "external"],
            env=_environment(),
        )  # fmt: skip

        def endedEarly(result: tuple[int | None, bytes]) -> tuple[int | None, bytes]:
            if not secondRequest.called:
                secondRequest.errback(AssertionError(f"natpmp ended early: {result}"))
            return result

        ended.addCallback(endedEarly)
        await secondRequest
        assert child.transport is not None
        child.transport.signalProcess("INT")
        code, err = await ended
        return code, err, child.out

    async def test_interrupted(self) -> None:
        """
        Ctrl-C (SIGINT) while waiting for the gateway: exit 130 and one
        line, no traceback.
        """
        code, err, out = await self.interrupted()
        self.assertEqual((code, err, out), (130, b"natpmp: interrupted\n", b""))

    async def test_interruptedJSON(self) -> None:
        """
        With C{--json}, Ctrl-C leaves exactly one JSON object on standard
        output too.
        """
        code, err, out = await self.interrupted("--json")
        self.assertEqual((code, err), (130, b"natpmp: interrupted\n"))
        self.assertEqual(
            json.loads(out),
            {"command": "external", "gateway": "127.0.0.1", "error": "interrupted"},
        )


class _Child(ProcessProtocol):
    """
    Collects a child's standard output and error, and fires C{ended} with
    its exit code and its standard error.
    """

    def __init__(self, ended: Deferred[tuple[int | None, bytes]]) -> None:
        self.ended = ended
        self.err = b""
        self.out = b""

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback((getattr(reason.value, "exitCode", None), self.err))
