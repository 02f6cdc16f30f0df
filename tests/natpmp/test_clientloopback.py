"""
Tests for the NAT-PMP client over real UDP on 127.0.0.1 (loopback only),
against a scripted responder and a closed port.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from twisted_natpmp import errors
from twisted_natpmp.natpmp._wire import (
    Protocol,
)
from twisted_natpmp.natpmp.client import (
    listenClient,
)
from twisted_natpmp.testing._gateway import EXTERNAL, ScriptedGateway


class ResponderProtocol(ScriptedGateway):
    pass


class LoopbackTests(TestCase):
    """
    The client over real UDP on 127.0.0.1, against a scripted responder.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.responder = ResponderProtocol()
        port = cast(Any, reactor).listenUDP(0, self.responder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = listenClient(
            self.reactor,
            "127.0.0.1",
            interface="127.0.0.1",
            gatewayPort=port.getHost().port,
        )
        self.addCleanup(self.client.stop)

    async def roundTrip(self) -> None:
        self.assertEqual(await self.client.externalAddress(), EXTERNAL)
        mapping = await self.client.addMapping(Protocol.UDP, 5000, lifetime=3600)
        self.assertEqual(
            (mapping.externalPort, mapping.lifetime, mapping.externalAddress),
            (5000, 3600, EXTERNAL),
        )
        await self.client.deleteMapping(Protocol.UDP, 5000)
        self.assertEqual(len(self.responder.requests), 3)

    def test_roundTrip(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.roundTrip())


class LoopbackRefusedTests(TestCase):
    """
    RFC 6886 s3.1: ICMP port unreachable (here: a closed loopback port)
    ends the request at once with L{errors.NotSupportedError}.
    """

    def test_refused(self) -> Deferred[None]:
        import socket

        from twisted.internet import reactor

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        closedPort = probe.getsockname()[1]
        probe.close()
        client = listenClient(
            reactor, "127.0.0.1", interface="127.0.0.1", gatewayPort=closedPort
        )
        self.addCleanup(client.stop)
        first = client.externalAddress()
        second = client.addMapping(Protocol.TCP, 80)
        d = self.assertFailure(first, errors.NotSupportedError)
        d.addCallback(lambda _: self.assertFailure(second, errors.NotSupportedError))
        return d.addCallback(lambda _: None)

    def test_usableAfterRefusal(self) -> Deferred[None]:
        """
        After a refusal the client binds a new port, so a gateway that starts
        answering later is reached.
        """
        from twisted.internet import reactor

        responder = ScriptedGateway()
        probe = cast(Any, reactor).listenUDP(
            0, DatagramProtocol(), interface="127.0.0.1"
        )
        gatewayPort = probe.getHost().port
        probe.stopListening()
        client = listenClient(
            reactor, "127.0.0.1", interface="127.0.0.1", gatewayPort=gatewayPort
        )
        self.addCleanup(client.stop)

        async def run() -> None:
            with self.assertRaises(errors.NotSupportedError):
                await client.externalAddress()
            port = cast(Any, reactor).listenUDP(
                gatewayPort, responder, interface="127.0.0.1"
            )
            self.addCleanup(port.stopListening)
            self.assertEqual(await client.externalAddress(), EXTERNAL)

        return Deferred.fromCoroutine(run())
