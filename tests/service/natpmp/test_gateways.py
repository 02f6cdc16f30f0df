"""
Following the gateway and runtime changes, end to end (second NATs and
public addresses: L{tests.service.natpmp.test_publicaddress}).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.errors import (
    NoGatewayError,
    NoResponseError,
)
from twisted_natpmp.natpmp._wire import Protocol

from ._support import (
    GATEWAY,
    OTHER_EXTERNAL,
    OTHER_GATEWAY,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
    pcpAnnounce,
    texts,
)


class GatewayChangeTests(ServiceTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.otherGateway = self.startGateway(OTHER_GATEWAY, OTHER_EXTERNAL)
        self.current: IPv4Address | Exception = IPv4Address(GATEWAY)

    def discover(self) -> IPv4Address:
        if isinstance(self.current, Exception):
            raise self.current
        return self.current

    def test_gatewayChange(self) -> None:
        """
        When the default gateway changes, the mappings move to the new one.
        """
        service = self.start(UDP5000, gateway=None, discoverGateway=self.discover)
        self.assertEqual(service.gateway, IPv4Address(GATEWAY))
        self.current = IPv4Address(OTHER_GATEWAY)
        self.advance(59)
        self.assertEqual(self.mapRequests(gateway=OTHER_GATEWAY), [])
        del self.observer.states[:]
        self.advance(1)
        # Observers hear that the old mapping is gone, then the new one.
        self.assertEqual(
            [(s.gateway, s.externalPort) for s in self.observer.states],
            [(IPv4Address(OTHER_GATEWAY), None), (IPv4Address(OTHER_GATEWAY), 5000)],
        )
        self.assertEqual(len(self.mapRequests(gateway=OTHER_GATEWAY)), 1)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000, self.otherGateway), 5000)
        state = service.states()[0]
        self.assertEqual(
            (state.gateway, state.externalAddress),
            (IPv4Address(OTHER_GATEWAY), OTHER_EXTERNAL),
        )
        # The old gateway's client was stopped.
        self.assertIsNone(self.clients[0].protocol.transport)
        # Announcements now count from the new gateway only.
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual(len(self.mapRequests(gateway=GATEWAY)), 1)
        self.sendFrom(OTHER_GATEWAY, pcpAnnounce(0))
        self.assertEqual(len(self.mapRequests(gateway=OTHER_GATEWAY)), 2)
        # Renewals go to the new gateway.
        self.advance(3600, step=10)
        self.assertEqual(len(self.mapRequests(gateway=GATEWAY)), 1)

    def test_oldGatewayCleared(self) -> None:
        """
        Issue 10, item 8: when the default gateway changes and the old one
        is still reachable, the mappings there are deleted (RFC 6886 s3.4),
        not left until they expire.
        """
        # RFC 6886 s3.4
        self.start(UDP5000, TCP8080, gateway=None, discoverGateway=self.discover)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.current = IPv4Address(OTHER_GATEWAY)
        with capturedLogs() as events:
            self.advance(60)
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.assertIsNone(self.onGateway(Protocol.TCP, 8080))
        self.assertEqual(
            sorted(r.internalPort for _, r in self.deletions(gateway=GATEWAY)),
            [5000, 8080],
        )
        self.assertEqual(self.onGateway(Protocol.UDP, 5000, self.otherGateway), 5000)
        self.assertIn(
            "leaving: deleted 2 mapping(s) at gateway 10.0.0.1: udp:5000,"
            " tcp:8080:8443",
            texts(events),
        )
        # The old gateway's client stopped once done.
        self.assertIsNone(self.clients[0].protocol.transport)

    def test_oldGatewayGone(self) -> None:
        """
        An old gateway out of reach costs the deletions' few seconds, and
        holds up nothing at the new one.
        """
        self.start(UDP5000, gateway=None, discoverGateway=self.discover)
        self.advance(50)
        self.network.drop = lambda d: d.destination == (GATEWAY, 5351)
        self.current = IPv4Address(OTHER_GATEWAY)
        self.advance(10)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000, self.otherGateway), 5000)
        self.assertIsNotNone(self.clients[0].protocol.transport)
        self.advance(5)
        # RFC 6886 s3.1: the doubling schedule, given up at 4.75 s.
        self.assertEqual(
            [t for t, _ in self.deletions(gateway=GATEWAY)],
            [60.0, 60.25, 60.75, 61.75, 63.75],
        )
        self.assertIsNone(self.clients[0].protocol.transport)

    def test_noGatewayYet(self) -> None:
        """
        With no default gateway, the state says so, and the service maps
        once one appears.
        """
        self.current = NoGatewayError("no default IPv4 gateway found")
        service = self.start(UDP5000, gateway=None, discoverGateway=self.discover)
        state = service.states()[0]
        self.assertIsInstance(state.error, NoGatewayError)
        self.assertIsNone(service.gateway)
        self.current = IPv4Address(GATEWAY)
        self.advance(60)
        self.assertTrue(service.states()[0].mapped)

    def test_noGatewaySaidAgainAfterRestart(self) -> None:
        """
        After a stop and a start, a missing gateway is said again.
        """
        self.current = NoGatewayError("no default IPv4 gateway found")
        with capturedLogs() as events:
            service = self.start(UDP5000, gateway=None, discoverGateway=self.discover)
            self.successResultOf(service.stopService())
            service.startService()
            self.network.flush()
        self.assertEqual(
            [t for t in texts(events, "warn") if t.startswith("no gateway")],
            ["no gateway: no default IPv4 gateway found"] * 2,
        )
        self.successResultOf(service.stopService())

    def test_gatewayChangeForgetsPCPEpoch(self) -> None:
        """
        The old gateway's PCP epoch is not judged against the new one's
        (RFC 6887 s8.5 as RFC 6886 s3.6).
        """
        # RFC 6887 s8.5, RFC 6886 s3.6
        service = self.start(
            UDP5000, gateway=None, discoverGateway=self.discover, healthInterval=10**6
        )
        self.advance(10)
        self.sendFrom(GATEWAY, pcpAnnounce(1000))
        self.current = IPv4Address(OTHER_GATEWAY)
        self.advance(60)
        self.assertEqual(service.gateway, IPv4Address(OTHER_GATEWAY))
        with capturedLogs() as events:
            self.sendFrom(OTHER_GATEWAY, pcpAnnounce(5))
        self.assertFalse([t for t in texts(events) if "lost" in t], texts(events))

    def test_gatewayLostKeepsOld(self) -> None:
        """
        A default route that disappears for a while does not drop the
        mappings.
        """
        service = self.start(UDP5000, gateway=None, discoverGateway=self.discover)
        self.current = NoGatewayError("no default IPv4 gateway found")
        self.advance(120)
        self.assertEqual(service.gateway, IPv4Address(GATEWAY))
        self.assertTrue(service.states()[0].mapped)

    def test_fixedGatewayNotFollowed(self) -> None:
        """
        An explicit gateway is never replaced by discovery.
        """
        calls: list[None] = []

        def discover() -> IPv4Address:
            calls.append(None)
            return IPv4Address(OTHER_GATEWAY)

        self.start(UDP5000, discoverGateway=discover)
        self.advance(600, step=10)
        self.assertEqual(calls, [])
        self.assertEqual(self.mapRequests(gateway=OTHER_GATEWAY), [])


class RuntimeTests(ServiceTestMixin, SynchronousTestCase):
    def test_addMapping(self) -> None:
        """
        A declaration added at run time is mapped at once; the Deferred
        fires with its state.
        """
        service = self.start(UDP5000)
        d = service.addMapping(Protocol.TCP, 22, 2222, lifetime=600)
        self.network.flush()
        state = self.successResultOf(d)
        self.assertEqual((state.externalPort, state.lifetime), (2222, 600))
        self.assertEqual(self.onGateway(Protocol.TCP, 22), 2222)
        self.assertEqual(len(service.states()), 2)
        self.advance(300)
        self.assertEqual(
            [t for t, r in self.mapRequests() if r.internalPort == 22], [0.0, 300.0]
        )

    def test_addMappingFailureFires(self) -> None:
        """
        The Deferred fires after the first attempt even when it failed; the
        service keeps trying.
        """
        service = self.start()
        self.gatewayGone()
        d = service.addMapping(Protocol.UDP, 7000)
        self.advance(127.75)
        state = self.successResultOf(d)
        self.assertIsInstance(state.error, NoResponseError)

    def test_addBeforeStart(self) -> None:
        service = self.makeService()
        state = self.successResultOf(service.addMapping(Protocol.UDP, 7000))
        self.assertFalse(state.mapped)
        service.startService()
        self.network.flush()
        self.assertEqual(self.onGateway(Protocol.UDP, 7000), 7000)

    def test_addBad(self) -> None:
        service = self.start(UDP5000)
        self.failureResultOf(service.addMapping(Protocol.UDP, 5000), ValueError)
        self.failureResultOf(service.addMapping(Protocol.UDP, 0), ValueError)
        self.assertEqual(len(service.states()), 1)

    def test_removeMapping(self) -> None:
        """
        Removing a declaration deletes its mapping on the gateway (RFC 6886
        s3.4) and stops its renewals.
        """
        # RFC 6886 s3.4
        service = self.start(UDP5000, TCP8080)
        d = service.removeMapping(Protocol.UDP, 5000)
        self.network.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.assertEqual(self.onGateway(Protocol.TCP, 8080), 8443)
        self.assertTrue(self.observer.states[-1].removed)
        self.assertEqual([s.declaration for s in service.states()], [TCP8080])
        self.advance(3600, step=10)
        self.assertEqual(
            [r.internalPort for _, r in self.mapRequests()], [5000, 8080, 8080]
        )
        self.assertRaises(KeyError, service.state, Protocol.UDP, 5000)

    def test_removeUnknown(self) -> None:
        service = self.start(UDP5000)
        self.failureResultOf(service.removeMapping(Protocol.TCP, 5000), KeyError)

    def test_removeGatewayGone(self) -> None:
        """
        Removing while the gateway is away fails quickly (a deletion is tried
        only briefly, RFC 6886 s3.1), and the declaration is gone anyway.
        """
        # RFC 6886 s3.1
        service = self.start(UDP5000)
        self.gatewayGone()
        d = service.removeMapping(Protocol.UDP, 5000)
        self.advance(4.5)
        self.assertNoResult(d)
        self.advance(0.25)
        self.failureResultOf(d, NoResponseError)
        # RFC 6886 s3.1: a deletion is retransmitted on the doubling
        # schedule, but may be given up sooner than other requests.
        self.assertEqual(
            [t for t, _ in self.deletions()], [0.0, 0.25, 0.75, 1.75, 3.75]
        )
        self.assertEqual(service.states(), [])
