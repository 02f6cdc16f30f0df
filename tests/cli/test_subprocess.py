"""
Tests of the real C{python -m twisted_natpmp}, against a scripted gateway
on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import ExternalAddressRequest, MapRequest, Request
from twisted_natpmp.testing import ScriptedGateway
from twisted_natpmp.testing._gateway import EXTERNAL

from ._helpers import environment, refuse


class SubprocessTests(TestCase):
    """
    The real C{python -m twisted_natpmp}, against a scripted gateway on
    127.0.0.1 (found with C{--gateway-port}).
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = cast(Any, reactor)
        self.gateway = ScriptedGateway()
        port = self.reactor.listenUDP(0, self.gateway, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.gatewayPort = port.getHost().port

    def gatewayOptions(self) -> list[str]:
        """
        The options that send the command to the scripted gateway, in
        NAT-PMP (it speaks only NAT-PMP, and answers no PCP).
        """
        return [
            "--protocol",
            "natpmp",
            "--gateway",
            "127.0.0.1",
            "--gateway-port",
            str(self.gatewayPort),
        ]

    def natpmp(self, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        result: Deferred[tuple[bytes, bytes, int]]
        result = getProcessOutputAndValue(  # type: ignore[no-untyped-call]
            sys.executable,
            ["-m", "twisted_natpmp", *args],
            env=environment(),
            reactor=self.reactor,
        )
        return result

    async def mapAndUnmap(self) -> None:
        common = self.gatewayOptions()
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
                "mappingProtocol": "natpmp",
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
                MapRequest(Transport.UDP, 5000, 5000, 7200),
                ExternalAddressRequest(),
                MapRequest(Transport.UDP, 5000, 0, 0),
            ],
        )

    def test_mapAndUnmap(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.mapAndUnmap())

    async def refused(self) -> None:
        self.gateway.reply = refuse(2)
        out, err, code = await self.natpmp(*self.gatewayOptions(), "external")
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
            [sys.executable, "-m", "twisted_natpmp", *self.gatewayOptions(),
             "--timeout", "60", *options, "external"],
            env=environment(),
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
