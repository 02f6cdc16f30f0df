"""
What the tests of the C{natpmp} command share: a scripted gateway's
refusals, L{run} on the in-memory network, a terminal, a child's
environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from io import StringIO
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

import twisted_natpmp
from twisted_natpmp._cli import _run, parseArguments, run
from twisted_natpmp.natpmp._wire import (
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Request,
)
from twisted_natpmp.natpmp.client import NATPMPClient
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway
from twisted_natpmp.testing._gateway import GATEWAY, HOST


def refuse(code: int) -> Callable[[Request], list[bytes]]:
    """
    A reply script for L{ScriptedGateway} that answers every request with
    result C{code}.
    """

    def reply(request: Request) -> list[bytes]:
        if isinstance(request, MapRequest):
            return [
                MapResponse(
                    request.transport, code, 100, request.internalPort, 0, 0
                ).encode()
            ]
        return [ExternalAddressResponse(code, 100, IPv4Address(0)).encode()]

    return reply


class RunCase(SynchronousTestCase):
    """
    A test of L{run} against a scripted gateway on the in-memory network.
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
        client = _run.listen(reactor, gateway, gatewayPort)
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


class Terminal(StringIO):
    """
    Standard error as a terminal.
    """

    def isatty(self) -> bool:
        return True


def environment() -> dict[str, str]:
    """
    The environment for a child Python that imports this checkout.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(twisted_natpmp.__file__)))
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, [environ.get("PYTHONPATH")])]
    )
    return environ
