"""
Losses of state and announcements (RFC 6886 s3.2.1, s3.6, s3.7), end to end.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    Protocol,
)
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.service import (
    MappingDeclaration,
)
from twisted_natpmp.service.policy import randomHoldOff

from ._support import (
    EXTERNAL,
    GATEWAY,
    HOST,
    NEIGHBOUR,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
)


class RecoveryTests(ServiceTestMixin, SynchronousTestCase):
    def test_epochResetFoundByHealthCheck(self) -> None:
        """
        RFC 6886 s3.6: a gateway that lost its state without announcing it
        is found by the periodic external-address request, and every mapping
        is renewed after the s3.7 hold-off.
        """
        # RFC 6886 s3.6
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, announceTo=None)
        service = self.start(UDP5000, TCP8080, holdOff=lambda: 2.5)
        self.advance(30)
        self.rebootGateway()
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(30)  # health check at 60 s
        self.assertEqual(self.addressRequests(), [0.0, 60.0])
        self.assertEqual(len(self.mapRequests()), 2)
        self.advance(2.25)
        self.assertEqual(len(self.mapRequests()), 2)
        self.advance(0.25)
        self.assertEqual([t for t, _ in self.mapRequests()][2:], [62.5, 62.5])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertEqual(self.onGateway(Protocol.TCP, 8080), 8443)
        self.assertEqual(service.states()[0].expires, 62.5 + 7200)

    def test_healthInterval(self) -> None:
        """
        The health check runs every C{healthInterval} seconds (default 60).
        """
        self.start(UDP5000)
        self.advance(180, step=5)
        self.assertEqual(self.addressRequests(), [0.0, 60.0, 120.0, 180.0])
        self.network.log.clear()
        self.start(UDP5000, healthInterval=25)
        self.advance(50, step=5)
        self.assertEqual(self.addressRequests(), [180.0, 205.0, 230.0])

    def test_holdOffRandom(self) -> None:
        """
        RFC 6886 s3.7: the default hold-off is uniform in 0-5 s.
        """
        # RFC 6886 s3.7
        calls = []

        def uniform(low: float, high: float) -> float:
            calls.append((low, high))
            return 4.5

        self.patch(random, "uniform", uniform)
        self.start(UDP5000, holdOff=randomHoldOff)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(4.25)
        self.assertEqual(len(self.mapRequests()), 1)
        self.advance(0.25)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 14.5])
        self.assertEqual(calls, [(0.0, 5.0)])

    def test_suggestsHeldPort(self) -> None:
        """
        RFC 6886 s3.7: after a loss of state each mapping is requested again
        suggesting the external port it held, not the one first declared.
        """
        # RFC 6886 s3.7
        neighbour = listenClient(self.network.host(NEIGHBOUR), GATEWAY)
        neighbour.addMapping(Protocol.UDP, 5000)
        self.network.flush()
        service = self.start(UDP5000)
        self.assertEqual(service.states()[0].externalPort, 5001)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.assertEqual(self.mapRequests()[-1][1].suggestedExternalPort, 5001)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5001)
        neighbour.stop()

    def test_oneAtATime(self) -> None:
        """
        RFC 6886 s3.7: the renewals after a loss of state go one at a time:
        each request is answered before the next is sent.
        """
        # RFC 6886 s3.7
        declarations = [MappingDeclaration(Protocol.UDP, p) for p in range(5000, 5006)]
        self.start(*declarations)
        self.advance(10)
        self.network.log.clear()
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        toGateway = [d.destination == (GATEWAY, 5351) for d in self.network.log]
        toUs = [d.destination[0] == HOST for d in self.network.log]
        # Requests and replies alternate on the unicast path.
        path = [
            "q" if q else "r" for q, r in zip(toGateway, toUs, strict=True) if q or r
        ]
        self.assertEqual("".join(path), "qr" * 7)
        self.assertEqual(
            sorted(r.internalPort for _, r in self.mapRequests()),
            list(range(5000, 5006)),
        )

    def test_refusedThenBack(self) -> None:
        """
        While the gateway is down its host answers ICMP port unreachable
        (RFC 6886 s3.1); the service keeps trying, and re-maps when the
        gateway is back and announces itself.
        """
        # RFC 6886 s3.1
        service = self.start(UDP5000, TCP8080, holdOff=lambda: 1.0)
        self.advance(10)
        self.gateway.stopService()
        self.advance(60)  # the health check is refused
        self.assertTrue(service.states()[0].mapped)
        self.gateway.startService()
        self.network.flush()
        self.advance(1)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 0.0, 71.0, 71.0])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertEqual(self.onGateway(Protocol.TCP, 8080), 8443)

    def test_socketLost(self) -> None:
        """
        Twisted's epoll reactor closes a connected UDP port on ICMP port
        unreachable (RFC 6886 s3.1); the requests that failed with it are
        retried.
        """
        # RFC 6886 s3.1
        service = self.start(UDP5000, TCP8080, healthInterval=10**6)
        self.gatewayGone()
        service.addMapping(Protocol.UDP, 6000)
        service.addMapping(Protocol.UDP, 6001)
        self.gatewayBack()
        transport = self.clients[0].protocol.transport
        assert transport is not None
        transport.stopListening()
        self.network.flush()
        self.assertIsNone(self.onGateway(Protocol.UDP, 6000))
        self.advance(10)  # the backoff of the failed requests
        self.assertEqual(self.onGateway(Protocol.UDP, 6000), 6000)
        self.assertEqual(self.onGateway(Protocol.UDP, 6001), 6001)
        self.assertTrue(all(s.mapped for s in service.states()))
