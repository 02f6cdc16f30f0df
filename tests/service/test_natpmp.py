"""
Tests for L{twisted_natpmp.service}: the real L{NATPMPClient} and the real
gateway (L{GatewayService}) on the in-memory UDP network, on one L{Clock}.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import fail
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import capturedLogs, eventAsJSON
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_natpmp.errors import (
    NetworkFailureError,
    NoGatewayError,
    NoResponseError,
    NotAuthorizedError,
)
from twisted_natpmp.interfaces import IMappingObserver, IPortMapper
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Protocol,
    ResultCode,
    decodeRequest,
)
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient
from twisted_natpmp.server import GatewayService
from twisted_natpmp.server.backends.memory import MemoryBackend
from twisted_natpmp.service import (
    CONFIRM_SPACING,
    MappingDeclaration,
    MappingState,
    PortMapperService,
    PublicAddressError,
    defaultBackoff,
    isPrivateAddress,
)
from twisted_natpmp.service.keeper import KeeperPhase
from twisted_natpmp.service.policy import randomHoldOff
from twisted_natpmp.testing import Datagram, MemoryUDPNetwork

GATEWAY = "10.0.0.1"
OTHER_GATEWAY = "10.0.0.254"
HOST = "10.0.0.2"
NEIGHBOUR = "10.0.0.3"
EXTERNAL = IPv4Address("192.0.3.1")
OTHER_EXTERNAL = IPv4Address("192.0.3.2")
UDP5000 = MappingDeclaration(Protocol.UDP, 5000)
TCP8080 = MappingDeclaration(Protocol.TCP, 8080, 8443)


def pcpAnnounce(epoch: int, result: int = 0, opcode: int = 0x80) -> bytes:
    """
    A PCP ANNOUNCE response (RFC 6887 s7.2, s14.1), as miniupnpd multicasts
    it when it starts.
    """
    return (
        bytes((2, opcode, 0, result))
        + (0).to_bytes(4, "big")
        + epoch.to_bytes(4, "big")
        + bytes(12)
    )


@implementer(IMappingObserver)
class RecordingObserver:
    def __init__(self) -> None:
        self.states: list[MappingState] = []

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        self.states.append(state)


class ServiceTestMixin:
    """
    A LAN with a gateway at L{GATEWAY} (external address L{EXTERNAL}) and
    this host at L{HOST}.
    """

    network: MemoryUDPNetwork

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = self.startGateway(GATEWAY, EXTERNAL)
        self.network.flush()
        self.clients: list[NATPMPClient] = []
        self.observer = RecordingObserver()

    def startGateway(
        self, address: str, external: IPv4Address | None, **kwargs: Any
    ) -> GatewayService:
        gateway = GatewayService(
            self.network.host(address), [f"{address}/24"], external, **kwargs
        )
        gateway.startService()
        # A gateway that has run for long: the copies of its start-up
        # announcement (RFC 6886 s3.2.1) are over.  It announces when it
        # restarts or its address changes.
        announcer = gateway._announcer
        if announcer is not None:
            announcer.stop()
        return gateway

    def clientFactory(self, gateway: IPv4Address) -> IPortMapper:
        client = listenClient(
            self.network.host(HOST), gateway, monotonic=self.clock.seconds
        )
        self.clients.append(client)
        return client

    def makeService(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        options: dict[str, Any] = dict(
            gateway=GATEWAY,
            clientFactory=self.clientFactory,
            holdOff=lambda: 0.0,
            backoff=lambda attempt: 10.0,
            monotonic=self.clock.seconds,
        )
        options.update(kwargs)
        reactor = options.pop("reactor", self.network.host(HOST))
        service = PortMapperService(reactor, declarations, **options)
        service.addObserver(self.observer)
        return service

    def start(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        service = self.makeService(*declarations, **kwargs)
        service.startService()
        self.network.flush()
        return service

    def mapRequests(
        self, since: float = 0.0, gateway: str = GATEWAY
    ) -> list[tuple[float, MapRequest]]:
        """
        The mapping requests (not deletions) sent to C{gateway}, with their
        times.
        """
        found = []
        for datagram in self.network.sentTo((gateway, 5351)):
            request = decodeRequest(datagram.data)
            if (
                datagram.time >= since
                and isinstance(request, MapRequest)
                and request.lifetime
            ):
                found.append((datagram.time, request))
        return found

    def deletions(self, gateway: str = GATEWAY) -> list[tuple[float, MapRequest]]:
        found = []
        for datagram in self.network.sentTo((gateway, 5351)):
            request = decodeRequest(datagram.data)
            if isinstance(request, MapRequest) and not request.lifetime:
                found.append((datagram.time, request))
        return found

    def addressRequests(self, gateway: str = GATEWAY) -> list[float]:
        return [
            d.time
            for d in self.network.sentTo((gateway, 5351))
            if isinstance(decodeRequest(d.data), ExternalAddressRequest)
        ]

    def onGateway(
        self,
        protocol: Protocol,
        internalPort: int,
        gateway: GatewayService | None = None,
    ) -> int | None:
        """
        The external port the gateway holds for this host's C{internalPort}.
        """
        table = (gateway or self.gateway).gateway
        assert table is not None
        mapping = table.table.get(IPv4Address(HOST), protocol, internalPort)
        return None if mapping is None else mapping.externalPort

    def rebootGateway(self, gateway: GatewayService | None = None) -> None:
        """
        Lose the gateway's state without an announcement (RFC 6886 s3.6).
        """
        handler = (gateway or self.gateway).gateway
        assert handler is not None
        handler.table.reset()

    def sendFrom(self, source: str, packet: bytes, port: int = 5350) -> None:
        sender = DatagramProtocol()
        self.network.host(source).listenUDP(0, sender)
        assert sender.transport is not None
        sender.transport.write(packet, ("224.0.0.1", port))
        sender.transport.stopListening()
        self.network.flush()

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """
        Advance the clock in small steps, delivering datagrams as they go.
        """
        steps = int(seconds / step)
        for _ in range(steps):
            self.clock.advance(step)
            self.network.flush()
        rest = seconds - steps * step
        if rest > 1e-9:
            self.clock.advance(rest)
            self.network.flush()

    def sentByUs(self) -> list[Datagram]:
        return [d for d in self.network.log if d.source[0] == HOST]

    def gatewayGone(self) -> None:
        self.network.drop = lambda datagram: True

    def gatewayBack(self) -> None:
        self.network.drop = lambda datagram: False


class StartTests(ServiceTestMixin, SynchronousTestCase):
    def test_interface(self) -> None:
        service = self.makeService(UDP5000)
        self.assertTrue(verifyObject(IService, service))
        self.assertTrue(verifyObject(IMappingObserver, self.observer))

    def test_startMapsEverything(self) -> None:
        """
        Starting maps every declaration; the state tells the external
        address and port, the granted lifetime and the expiry.
        """
        self.clock.advance(100)
        service = self.start(UDP5000, TCP8080)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertEqual(self.onGateway(Protocol.TCP, 8080), 8443)
        udp, tcp = service.states()
        self.assertEqual(
            (udp.externalAddress, udp.externalPort, udp.lifetime, udp.expires),
            (EXTERNAL, 5000, 7200, 7300.0),
        )
        self.assertEqual((tcp.externalPort, tcp.gateway), (8443, IPv4Address(GATEWAY)))
        self.assertTrue(udp.mapped)
        self.assertIsNone(udp.error)
        self.assertFalse(udp.doubleNAT)
        self.assertEqual(service.externalAddress, EXTERNAL)
        self.assertEqual(service.state(Protocol.TCP, 8080), tcp)
        self.assertEqual(udp.describe(), "udp:5000 -> 192.0.3.1:5000")

    def test_logsMappings(self) -> None:
        """
        Each mapping is logged with its public address and port.
        """
        with capturedLogs() as events:
            self.start(TCP8080)
        texts = [e["log_format"].format(**e) for e in events if "what" in e]
        self.assertIn("mapped tcp:8080:8443 -> 192.0.3.1:8443 for 7200 s", texts)

    def test_notRunning(self) -> None:
        """
        Nothing is sent before the service starts.
        """
        service = self.makeService(UDP5000)
        self.advance(100)
        self.assertEqual(self.sentByUs(), [])
        self.assertFalse(service.state(Protocol.UDP, 5000).mapped)

    def test_composes(self) -> None:
        """
        The service runs as a child of an application's service tree.
        """
        parent = MultiService()
        service = self.makeService(UDP5000)
        service.setServiceParent(parent)  # type: ignore[no-untyped-call]
        parent.startService()
        self.network.flush()
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        d = parent.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))

    def test_defaultClient(self) -> None:
        """
        By default the service makes a L{NATPMPClient} on its reactor.
        """
        service = PortMapperService(self.network.host(HOST), [UDP5000], gateway=GATEWAY)
        service.startService()
        self.network.flush()
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertIsInstance(service._gateways.client, NATPMPClient)

    def test_badDeclaration(self) -> None:
        self.assertRaises(ValueError, MappingDeclaration, Protocol.UDP, 0)
        self.assertRaises(ValueError, MappingDeclaration, Protocol.UDP, 1, 70000)
        self.assertRaises(ValueError, MappingDeclaration, Protocol.UDP, 1, None, 0)
        self.assertRaises(ValueError, self.makeService, UDP5000, UDP5000)


class RenewalTests(ServiceTestMixin, SynchronousTestCase):
    def test_renewAtHalfLifetime(self) -> None:
        """
        RFC 6886 s3.3: a mapping is renewed halfway to its expiry, suggesting
        the external port it holds.
        """
        service = self.start(TCP8080)
        self.advance(3599.75, step=0.25)
        self.assertEqual(len(self.mapRequests()), 1)
        self.advance(0.25)
        self.assertEqual(
            [(t, r.suggestedExternalPort) for t, r in self.mapRequests()],
            [(0.0, 8443), (3600.0, 8443)],
        )
        self.assertEqual(service.states()[0].expires, 3600.0 + 7200)
        self.advance(3600)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 3600.0, 7200.0])

    def test_renewalLogged(self) -> None:
        self.start(UDP5000)
        with capturedLogs() as events:
            self.clock.advance(3600)
            self.network.flush()
        texts = [e["log_format"].format(**e) for e in events if "what" in e]
        self.assertEqual(texts, ["renewed udp:5000 -> 192.0.3.1:5000 for 7200 s"])

    def test_grantedLifetimeShorter(self) -> None:
        """
        RFC 6886 s3.3: renewal follows the lifetime the gateway granted, not
        the one requested (some gateways grant 60 s whatever is asked).
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=60)
        service = self.start(UDP5000)
        state = service.states()[0]
        self.assertEqual((state.lifetime, state.expires), (60, 60.0))
        self.advance(90, step=1)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 30.0, 60.0, 90.0])
        self.assertTrue(all(r.lifetime == 7200 for _, r in self.mapRequests()))

    def test_retryWithBackoff(self) -> None:
        """
        A failed request is retried after the backoff policy's delay, the
        delay growing with each failure (capped by the policy).
        """
        self.gatewayGone()
        attempts: list[int] = []

        def backoff(attempt: int) -> float:
            attempts.append(attempt)
            return min(10.0 * 2.0**attempt, 40.0)

        service = self.start(UDP5000, backoff=backoff, healthInterval=10**6)
        self.advance(130)
        times = [t for t, _ in self.mapRequests()]
        # Each attempt is a short RFC 6886 s3.1 schedule (MAP_TIMEOUTS: sends
        # at 0, 0.25, 0.75 and 1.75 s, failing at 3.75 s); the first waits
        # behind the external address request, which is kept short (1.75 s).
        starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 2]
        self.assertEqual(starts, [1.75, 15.5, 39.25, 83.0, 126.75])
        self.assertEqual([t - 1.75 for t in times[:4]], [0.0, 0.25, 0.75, 1.75])
        self.assertEqual(attempts, [0, 1, 2, 3])
        state = service.states()[0]
        self.assertFalse(state.mapped)
        self.assertIsInstance(state.error, NoResponseError)

    def test_unluckyRequestHoldsUpNothing(self) -> None:
        """
        Issue 12 (60% loss): a mapping request that goes unanswered gives
        up after its short RFC 6886 s3.1 schedule (3.75 s, MAP_TIMEOUTS),
        not 127.75 s, so the mapping queued behind it goes out then (still
        one request at a time, s3.1); the unlucky one is retried soon after,
        behind the others: here at once, as the gateway answers again after
        more than 3 s without an answer (issue 10, items 4 and 11).
        """

        def lostFor5000(datagram: Datagram) -> bool:
            if datagram.destination != (GATEWAY, 5351):
                return False
            request = decodeRequest(datagram.data)
            return isinstance(request, MapRequest) and request.internalPort == 5000

        self.network.drop = lostFor5000
        service = self.start(
            UDP5000, TCP8080, backoff=lambda n: 1.0, healthInterval=10**6
        )
        self.advance(3.75)
        self.assertFalse(service.state(Protocol.UDP, 5000).mapped)
        self.assertTrue(service.state(Protocol.TCP, 8080).mapped)
        self.assertEqual(
            [(t, r.internalPort) for t, r in self.mapRequests()],
            [
                (0.0, 5000),
                (0.25, 5000),
                (0.75, 5000),
                (1.75, 5000),
                (3.75, 8080),
                (3.75, 5000),
            ],
        )
        self.network.drop = lambda datagram: False
        self.advance(1.0)
        self.assertTrue(service.state(Protocol.UDP, 5000).mapped)
        self.assertEqual(self.mapRequests(since=3.8)[0][0], 4.0)

    def test_silentGatewayNotFlooded(self) -> None:
        """
        Against a silent gateway the short attempts are spaced by the
        default backoff, growing (1 s, doubling, up to 5 minutes): over an
        hour one mapping costs a few dozen packets, not one every 4 s.
        """
        self.gatewayGone()
        self.start(
            UDP5000, backoff=defaultBackoff(jitter=lambda: 0.0), healthInterval=10**6
        )
        self.advance(3600, step=1)
        times = [t for t, _ in self.mapRequests()]
        starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 2]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        self.assertEqual(gaps, sorted(gaps))
        self.assertGreaterEqual(gaps[-1], 303.75)  # 300 s backoff + attempt
        self.assertLess(len(times), 4 * 22)

    def test_neverForgotten(self) -> None:
        """
        However long the gateway is away, the declaration is kept and mapped
        once it answers again.
        """
        self.gatewayGone()
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(3 * 3600, step=5)
        self.assertFalse(service.states()[0].mapped)
        self.gatewayBack()
        self.advance(160, step=1)
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertIsNone(service.states()[0].error)

    def test_gatewayErrorRetried(self) -> None:
        """
        A gateway error (here result 3, no external address yet) is retried
        too (RFC 6886 s3.5).
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, None)
        service = self.start(UDP5000)
        self.assertIsInstance(service.states()[0].error, NetworkFailureError)
        self.advance(10)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])
        self.gateway.gateway.externalAddress = EXTERNAL  # type: ignore[union-attr]
        self.advance(10)
        self.assertTrue(service.states()[0].mapped)

    def test_failedRenewalKeepsMapping(self) -> None:
        """
        A failed renewal keeps the mapping in the state until it expires, and
        never the declaration; once the gateway is back, the port held is
        suggested again (RFC 6886 s3.3).
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=400)
        service = self.start(TCP8080, healthInterval=10**6)
        self.gatewayGone()
        # The renewal at 200 s fails after its attempt's 3.75 s (RFC 6886
        # s3.1, MAP_TIMEOUTS), and is retried every 13.75 s.
        self.advance(203.5)
        state = service.states()[0]
        self.assertTrue(state.mapped)
        self.assertIsNone(state.error)
        self.advance(0.5)
        state = service.states()[0]
        self.assertTrue(state.mapped)
        self.assertIsInstance(state.error, NoResponseError)
        self.advance(196.5)
        self.assertFalse(service.states()[0].mapped)
        self.gatewayBack()
        self.advance(14)  # the next retry
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(
            {r.suggestedExternalPort for _, r in self.mapRequests()}, {8443}
        )

    def test_defaultBackoff(self) -> None:
        """
        The default policy is capped exponential backoff with jitter.
        """
        policy = defaultBackoff(jitter=lambda: 0.0)
        self.assertEqual(
            [policy(n) for n in (0, 1, 2, 3, 8, 9, 50)],
            [1.0, 2.0, 4.0, 8.0, 256.0, 300.0, 300.0],
        )


class RecoveryTests(ServiceTestMixin, SynchronousTestCase):
    def test_epochResetFoundByHealthCheck(self) -> None:
        """
        RFC 6886 s3.6: a gateway that lost its state without announcing it
        is found by the periodic external-address request, and every mapping
        is renewed after the s3.7 hold-off.
        """
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


class AnnouncementTests(ServiceTestMixin, SynchronousTestCase):
    def test_natpmpAnnouncement(self) -> None:
        """
        RFC 6886 s3.2.1: a gateway announces itself when it reboots; the
        service re-maps everything after the hold-off, without waiting for
        the health check.
        """
        self.start(UDP5000, holdOff=lambda: 3.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()  # a reboot: new epoch, empty table
        self.network.flush()
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(3)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 13.0])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)

    def test_announcementTellsAddress(self) -> None:
        """
        RFC 6886 s3.2.1: an announcement carries the external address; when
        the service could not learn it by asking, it takes it from there.
        """
        # External-address replies and the gateway's own announcements (12
        # bytes) are lost.
        self.network.drop = lambda d: d.source == (GATEWAY, 5351) and len(d.data) == 12
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(130)
        self.assertIsNone(service.externalAddress)
        self.network.drop = lambda datagram: False
        self.sendFrom(GATEWAY, ExternalAddressResponse(0, 130, EXTERNAL).encode())
        self.assertEqual(service.externalAddress, EXTERNAL)
        self.assertEqual(service.states()[0].externalAddress, EXTERNAL)

    def test_repeatsCoalesced(self) -> None:
        """
        RFC 6886 s3.2.1: the gateway repeats its announcement ten times over
        about two minutes; the copies that bring nothing new do not cause
        more re-mapping.
        """
        self.start(UDP5000, TCP8080, holdOff=lambda: 3.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(200)
        announcements = [
            d
            for d in self.network.log
            if d.destination == ("224.0.0.1", 5350) and d.time >= 10
        ]
        self.assertEqual(len(announcements), 10)
        self.assertEqual([t for t, _ in self.mapRequests(since=1)], [13.0, 13.0])

    def test_copiesEarlyInTheRunConfirmed(self) -> None:
        """
        A re-mapping in the first 2 s of the gateway's run proves nothing
        against a restart just after it: the next copy of the announcement
        confirms the mappings once more (5 s after the re-mapping before),
        and the later copies, whose epochs show the same run, cost nothing.
        """
        self.start(UDP5000, TCP8080, holdOff=lambda: 1.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(200)
        self.assertEqual(
            [t for t, _ in self.mapRequests(since=1)], [11.0, 11.0, 16.0, 16.0]
        )

    def test_noAddressAnnouncedIsNoNews(self) -> None:
        """
        An announcement of 0.0.0.0 (a gateway without an external address,
        RFC 6886 s3.2) is no new external address: nothing is re-mapped for
        it, and the address known stays; its epoch is still judged (s3.6).
        """
        self.advance(10)
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(10)
        asked = len(self.mapRequests())
        none = IPv4Address("0.0.0.0")
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, ExternalAddressResponse(0, 20, none).encode())
            self.advance(10)
        self.assertEqual(len(self.mapRequests()), asked, texts(events))
        self.assertEqual(service.externalAddress, EXTERNAL)
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, ExternalAddressResponse(0, 1, none).encode())
        self.assertTrue([t for t in texts(events) if "lost" in t], texts(events))

    def test_addressChangeAnnounced(self) -> None:
        """
        RFC 6886 s3.2.1: a new external address is announced; the service
        re-maps and reports the new address.
        """
        service = self.start(UDP5000)
        self.advance(10)
        self.gateway.setExternalAddress(OTHER_EXTERNAL)
        self.network.flush()
        self.assertEqual(service.externalAddress, OTHER_EXTERNAL)
        self.assertEqual(service.states()[0].externalAddress, OTHER_EXTERNAL)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])
        self.assertEqual(self.observer.states[-1].externalAddress, OTHER_EXTERNAL)

    def test_pcpAnnounce(self) -> None:
        """
        RFC 6887 s14.1: miniupnpd multicasts a PCP ANNOUNCE (not a NAT-PMP
        announcement) when it starts; it triggers the RFC 6886 s3.7 re-map.
        """
        self.start(UDP5000, holdOff=lambda: 2.0)
        self.advance(10)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.advance(2)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 12.0])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        # The re-mapping's first reply shows the reset epoch (RFC 6886
        # s3.6): the re-mapping under way covers it, no second one follows.
        self.advance(100)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 12.0])

    def test_stateLostWhileRemapping(self) -> None:
        """
        A loss of state seen while the re-mapping renews the mappings (the
        gateway lost its state again, RFC 6886 s3.6) is followed by another
        re-mapping once the one under way is done.
        """
        declarations = [MappingDeclaration(Protocol.UDP, p) for p in (5000, 5001)]
        self.start(*declarations, holdOff=lambda: 1.0)
        self.advance(10)
        self.network.delay = 0.1
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # arrives at 10.1
        # The re-mapping starts at 11.1: the address request is answered at
        # 11.3, port 5000 mapped at 11.4 and answered at 11.5; the gateway
        # loses its state at 11.45, so the reply for 5001 (mapped at 11.6)
        # shows the new epoch, and the next re-mapping starts at 12.7.
        self.clock.callLater(1.45, self.rebootGateway)
        self.advance(2.4, step=0.05)
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(2, step=0.05)
        requests = [(round(t, 2), r.internalPort) for t, r in self.mapRequests()]
        self.assertEqual(
            requests[2:],
            [(11.3, 5000), (11.5, 5001), (12.9, 5000), (13.1, 5001)],
        )
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)

    def test_pcpAnnounceEachRestart(self) -> None:
        """
        Every restart's PCP ANNOUNCE re-maps, while a repeat of one whose
        epoch shows the gateway's run that granted the mapping (late enough
        in it that a restart since would show) does not.
        """
        self.start(UDP5000, holdOff=lambda: 3.0)
        self.advance(10)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # re-mapped at 13, epoch 3
        self.advance(4)
        self.sendFrom(GATEWAY, pcpAnnounce(4))  # a repeat
        self.advance(16)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # a second restart
        self.advance(3)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 13.0, 33.0])

    def test_restartsCloseTogether(self) -> None:
        """
        Issue 10, item 1: the gateway restarts three times, a second apart,
        each time announcing epoch 0 (miniupnpd's PCP ANNOUNCE).  By the
        RFC 6886 s3.6 rule the later announcements show no loss of state,
        but the mapping made after the first restart was lost at the
        second: every announcement leads to the mappings being confirmed,
        after the s3.7 hold-off and at most one re-mapping every 5 s.
        """
        self.start(UDP5000, holdOff=lambda: 0.5)
        self.advance(10)
        for _ in range(3):
            self.rebootGateway()
            self.sendFrom(GATEWAY, pcpAnnounce(0))
            self.advance(1)
        # Re-mapped at 10.5, after the first restart; the second (at 11) is
        # confirmed 5 s after the re-mapping before, covering the third.
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(2.5)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.5, 15.5])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        # Nothing more without another announcement.
        self.advance(100)
        self.assertEqual(len(self.mapRequests()), 3)

    def test_othersIgnored(self) -> None:
        """
        RFC 6886 s3.2.1: announcements that do not come from the configured
        gateway are ignored, whatever they say; so is anything that is not
        an announcement.
        """
        service = self.start(UDP5000)
        self.advance(100)
        client = self.clients[0]
        epoch = client.epochTracker.lastEpoch
        with capturedLogs():
            self.sendFrom(
                NEIGHBOUR, ExternalAddressResponse(0, 0, OTHER_EXTERNAL).encode()
            )
            self.sendFrom(NEIGHBOUR, pcpAnnounce(0))
            self.sendFrom(GATEWAY, pcpAnnounce(0, opcode=0x81))
            self.sendFrom(GATEWAY, pcpAnnounce(0, result=3))
            self.sendFrom(GATEWAY, pcpAnnounce(0)[:20])
            self.sendFrom(GATEWAY, ExternalAddressResponse(3, 0, EXTERNAL).encode())
            self.sendFrom(GATEWAY, b"\x00")
            self.sendFrom(GATEWAY, MapRequest(Protocol.UDP, 1, 1, 1).encode())
        self.advance(10)
        self.assertEqual(len(self.mapRequests()), 1)
        self.assertEqual(client.epochTracker.lastEpoch, epoch)
        self.assertEqual(service.externalAddress, EXTERNAL)
        # Dropped and counted, not logged one by one (DropLog).
        assert service._gateways.announcer is not None
        self.assertEqual(service._gateways.announcer.drops.total, 8)

    def test_notListening(self) -> None:
        """
        Without the announcement socket (the port is taken, say), the
        service still works; the health check covers reboots.
        """
        service = self.start(UDP5000, announcements=lambda protocol: None)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.assertEqual(len(self.mapRequests()), 1)
        self.advance(50)  # the health check at 60 s finds the new epoch
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 60.0])
        self.assertTrue(service.states()[0].mapped)

    def test_cannotListen(self) -> None:
        """
        A failure to bind 224.0.0.1:5350 is logged, not fatal.
        """
        from twisted.internet.error import CannotListenError

        def listenMulticast(*args: Any, **kwargs: Any) -> None:
            raise CannotListenError(  # type: ignore[no-untyped-call]
                "224.0.0.1", 5350, OSError("in use")
            )

        reactor = self.network.host(HOST)
        self.patch(reactor, "listenMulticast", listenMulticast)
        service = PortMapperService(
            reactor, [UDP5000], gateway=GATEWAY, clientFactory=self.clientFactory
        )
        with capturedLogs() as events:
            service.startService()
            self.network.flush()
        self.assertTrue(service.states()[0].mapped)
        self.assertTrue(any("not listening" in e["log_format"] for e in events))

    def test_wrappedReactor(self) -> None:
        """
        A reactor that only looks like one (a wrapper that declares no
        interfaces, as tests that open sockets in network namespaces use)
        still gets the announcement listener.
        """

        class Wrapper:
            def __init__(self, reactor: Any) -> None:
                self._reactor = reactor

            def __getattr__(self, name: str) -> Any:
                return getattr(self._reactor, name)

        reactor = Wrapper(self.network.host(HOST))
        self.start(UDP5000, reactor=reactor)
        self.advance(10)
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])

    def test_noMulticast(self) -> None:
        """
        A reactor without multicast: the service works without
        announcements, and says so.
        """

        class Reactor:
            def __init__(self, reactor: Any) -> None:
                self.seconds = reactor.seconds
                self.callLater = reactor.callLater
                self.getDelayedCalls = reactor.getDelayedCalls
                self.listenUDP = reactor.listenUDP

        with capturedLogs() as events:
            service = self.start(UDP5000, reactor=Reactor(self.network.host(HOST)))
        self.assertTrue(service.states()[0].mapped)
        self.assertTrue(any("cannot listen" in e["log_format"] for e in events))


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


class StopTests(ServiceTestMixin, SynchronousTestCase):
    def test_stopDeletes(self) -> None:
        """
        Stopping deletes every mapping held (RFC 6886 s3.4) and fires once
        the gateway confirmed.
        """
        service = self.start(UDP5000, TCP8080)
        d = service.stopService()
        self.network.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.assertIsNone(self.onGateway(Protocol.TCP, 8080))
        self.assertEqual(
            sorted(
                (r.internalPort, r.suggestedExternalPort) for _, r in self.deletions()
            ),
            [(5000, 0), (8080, 0)],
        )
        self.assertTrue(
            all(s.removed and not s.mapped for s in self.observer.states[-2:])
        )
        # Nothing more is sent, and the client stopped listening.
        self.network.log.clear()
        self.advance(7200, step=60)
        self.assertEqual(self.sentByUs(), [])
        self.assertIsNone(self.clients[0].protocol.transport)

    def test_stopGatewayGone(self) -> None:
        """
        With the gateway gone, stopping sends every deletion at once and
        again at 0.25, 0.75, 1.75 and 3.75 s (RFC 6886 s3.1, s3.4: the
        doubling schedule, given up sooner), fires after 4.75 s, within the
        5 s deadline, and names each mapping left behind with the reason.
        """
        service = self.start(UDP5000, TCP8080)
        self.gatewayGone()
        with capturedLogs() as events:
            d = service.stopService()
            self.advance(4.5)
            self.assertNoResult(d)
            self.advance(0.25)
            self.successResultOf(d)
        self.assertEqual(
            [(t, r.internalPort) for t, r in self.deletions()],
            [(t, p) for t in (0.0, 0.25, 0.75, 1.75, 3.75) for p in (5000, 8080)],
        )
        warnings = texts(events, "warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("left 2 mapping(s) at gateway 10.0.0.1", warnings[0])
        self.assertIn("udp:5000 (no response from gateway 10.0.0.1", warnings[0])
        self.assertIn("tcp:8080:8443 (no response from gateway 10.0.0.1", warnings[0])

    def test_stopSlowLink(self) -> None:
        """
        Issue 10, item 9: over a link with a 600 ms round trip, stopping
        deletes all of twenty mappings well within the deadline (they go
        together, not one after another: 12 s).
        """
        declarations = [MappingDeclaration(Protocol.UDP, p) for p in range(6000, 6020)]
        service = self.start(*declarations)
        self.assertTrue(all(s.mapped for s in service.states()))
        self.network.delay = 0.3
        with capturedLogs() as events:
            d = service.stopService()
            self.advance(0.65, step=0.05)
            self.successResultOf(d)
        self.assertEqual(
            [p for p in range(6000, 6020) if self.onGateway(Protocol.UDP, p)], []
        )
        # RFC 6886 s3.1: each was sent at 0 and, unanswered yet, at 0.25 s;
        # the replies came at 0.6 s, before the third send was due.
        self.assertEqual(sorted({t for t, _ in self.deletions()}), [0.0, 0.25])
        self.assertEqual(len(self.deletions()), 40)
        self.assertFalse([e for e in events if e["log_level"].name == "warn"])

    def test_stopLossy(self) -> None:
        """
        A deletion whose first send is lost is sent again; the one that
        never gets through is named, alone, in the warning.
        """
        service = self.start(UDP5000, TCP8080)
        sent: list[int] = []

        def drop(datagram: Datagram) -> bool:
            if datagram.destination != (GATEWAY, 5351):
                return False
            request = decodeRequest(datagram.data)
            if not isinstance(request, MapRequest) or request.lifetime:
                return False
            sent.append(request.internalPort)
            # All of 8080's deletions are lost, and the first of 5000's.
            return request.internalPort == 8080 or sent.count(5000) == 1

        self.network.drop = drop
        with capturedLogs() as events:
            d = service.stopService()
            self.advance(5)
            self.successResultOf(d)
        # RFC 6886 s3.1: resent until answered, on the doubling schedule.
        self.assertEqual(sorted(sent), [5000] * 2 + [8080] * 5)
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.assertEqual(self.onGateway(Protocol.TCP, 8080), 8443)
        texts = [e["log_format"].format(**e) for e in events]
        (left,) = [t for t in texts if "left" in t]
        self.assertIn("left 1 mapping(s)", left)
        self.assertIn("tcp:8080:8443 (no response", left)
        self.assertNotIn("udp:5000", left)
        self.assertIn(
            "stopping: deleted 1 mapping(s) at gateway 10.0.0.1: udp:5000", texts
        )

    def test_stopSilentGateway(self) -> None:
        """
        Issue 10, item 10: stopping while the gateway has never answered
        cancels every pending request (the external address request
        included): after the stop only the deletions go out, and nothing
        once it has fired.
        """
        self.gatewayGone()
        service = self.start(UDP5000, TCP8080)
        self.advance(1)
        self.network.log.clear()
        d = service.stopService()
        self.advance(5)
        self.successResultOf(d)
        sent = [decodeRequest(d.data) for d in self.sentByUs()]
        self.assertTrue(sent)
        self.assertEqual(
            [r for r in sent if not (isinstance(r, MapRequest) and not r.lifetime)],
            [],
        )
        self.network.log.clear()
        self.advance(300)
        self.assertEqual(self.sentByUs(), [])

    def test_stopNeverGrantedSaysMay(self) -> None:
        """
        A mapping asked for but never seen granted (the gateway never
        answered) is still deleted at stop, since the request may have
        reached the gateway (RFC 6886 s3.4), but the log says it I{may} be
        left, never that it was made.
        """
        self.gatewayGone()
        service = self.start(UDP5000)
        self.advance(1)
        with capturedLogs() as events:
            d = service.stopService()
            self.advance(5)
            self.successResultOf(d)
        warnings = texts(events, "warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("may have left 1 mapping(s) at gateway 10.0.0.1", warnings[0])
        self.assertIn("never seen granted", warnings[0])
        self.assertIn("udp:5000 (no response", warnings[0])

    def test_stopDeadline(self) -> None:
        """
        Whatever the retransmission schedule, stopping gives up at the
        deadline.
        """
        service = self.start(UDP5000, stopTimeouts=(4.0, 4.0, 4.0), stopDeadline=5.0)
        self.gatewayGone()
        d = service.stopService()
        self.advance(4.75)
        self.assertNoResult(d)
        self.advance(0.25)
        self.successResultOf(d)

    def test_stopCancelsRequests(self) -> None:
        """
        A request in flight when the service stops is cancelled, and its
        mapping (which the gateway may have made) deleted.
        """
        service = self.start(healthInterval=10**6)
        self.gatewayGone()
        service.addMapping(Protocol.UDP, 6000)
        self.advance(1)
        self.gatewayBack()
        d = service.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertEqual([r.internalPort for _, r in self.deletions()], [6000])
        self.network.log.clear()
        self.advance(200)
        self.assertEqual(self.sentByUs(), [])

    def test_stopDuringRemap(self) -> None:
        """
        Stopping while a re-mapping (RFC 6886 s3.7) awaits a mapping request
        deletes that mapping too: the gateway may have made it although no
        reply came back.
        """
        service = self.start(UDP5000, healthInterval=10**6, holdOff=lambda: 1.0)
        self.assertTrue(service.states()[0].mapped)
        # The gateway makes the mapping, but its mapping replies are lost.
        self.network.drop = lambda d: d.source == (GATEWAY, 5351) and len(d.data) == 16
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        keeper = service._declared.keepers[UDP5000.key]
        for _ in range(40):
            if keeper.phase is KeeperPhase.RENEWING:
                break
            self.advance(0.25)
        # The re-mapping's request is in flight.
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)
        self.network.drop = lambda datagram: False
        d = service.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertEqual([r.internalPort for _, r in self.deletions()], [5000])
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))

    def test_restart(self) -> None:
        """
        A stopped service can start again.
        """
        service = self.start(UDP5000)
        d = service.stopService()
        self.network.flush()
        self.successResultOf(d)
        service.startService()
        self.network.flush()
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertTrue(service.states()[0].mapped)

    def test_deletionsRefused(self) -> None:
        """
        If the client refuses the deletions outright (C{ValueError}), the
        service still says which mappings it left, and why, and its stop
        deadline timer does not stay behind.
        """
        service = self.start(UDP5000, healthInterval=10**6)
        self.patch(
            self.clients[0],
            "deleteMappings",
            lambda keys, timeouts: fail(ValueError("bad key")),
        )
        with capturedLogs() as events:
            stopped = service.stopService()
            self.network.flush()
        self.successResultOf(stopped)
        (warning,) = texts(events, "warn")
        self.assertIn("left 1 mapping(s) at gateway 10.0.0.1", warning)
        self.assertIn("(bad key)", warning)
        # Only the gateway's own expiry of the mapping is still to come.
        now = self.clock.seconds()
        self.assertEqual(
            [c for c in self.clock.getDelayedCalls() if c.getTime() <= now + 60],
            [],
        )

    def test_restartForgetsPCPEpoch(self) -> None:
        """
        A PCP epoch heard before a stop is not judged against the next run
        (RFC 6887 s8.5 as RFC 6886 s3.6): a gateway that restarted while
        the service was stopped is no loss of state of the new run.
        """
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(10)
        self.sendFrom(GATEWAY, pcpAnnounce(1000))
        stopped = service.stopService()
        self.network.flush()
        self.successResultOf(stopped)
        self.advance(50)
        service.startService()
        self.network.flush()
        self.advance(10)
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, pcpAnnounce(5))
        self.assertFalse([t for t in texts(events) if "lost" in t], texts(events))


class ObserverTests(ServiceTestMixin, SynchronousTestCase):
    def test_everyChange(self) -> None:
        """
        Observers hear of every grant, renewal, failure, expiry and removal.
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=400)
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(200)
        self.gatewayGone()
        self.advance(400)
        self.gatewayBack()
        service.removeMapping(Protocol.UDP, 5000)
        self.network.flush()
        summary = [
            (s.mapped, type(s.error).__name__ if s.error else None, s.removed)
            for s in self.observer.states
        ]
        # Each failed attempt is a change too (retried every 13.75 s): the
        # runs of them are told once here.
        summary = [x for i, x in enumerate(summary) if i < 2 or x != summary[i - 1]]
        self.assertEqual(
            summary,
            [
                (True, None, False),  # mapped at 0
                (True, None, False),  # renewed at 200
                (True, "NoResponseError", False),  # renewal at 400 failed
                (False, "NoResponseError", False),  # expired at 600
                (False, "NoResponseError", True),  # removed
            ],
        )

    def test_removeObserver(self) -> None:
        service = self.makeService(UDP5000)
        service.removeObserver(self.observer)
        service.startService()
        self.network.flush()
        self.assertEqual(self.observer.states, [])

    def test_failingObserver(self) -> None:
        """
        An observer that raises is logged and does not stop the others.
        """

        @implementer(IMappingObserver)
        class Broken:
            def mappingChanged(self, state: object) -> None:
                raise RuntimeError("broken")

        service = self.makeService(UDP5000)
        service._declared.observers.insert(0, Broken())
        with capturedLogs() as events:
            service.startService()
            self.network.flush()
        self.assertEqual(len(self.observer.states), 1)
        self.assertTrue(any(e.get("log_failure") for e in events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(service.states()[0].mapped)


class DoubleNATTests(ServiceTestMixin, SynchronousTestCase):
    def test_private(self) -> None:
        """
        RFC 1918 and RFC 6598 (100.64/10) addresses mean a second NAT.
        """
        for text in (
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
        ):
            self.assertTrue(isPrivateAddress(IPv4Address(text)), text)
        for text in ("192.0.3.1", "172.32.0.1", "100.128.0.1", "8.8.8.8", "11.0.0.1"):
            self.assertFalse(isPrivateAddress(IPv4Address(text)), text)

    def test_doubleNAT(self) -> None:
        """
        A private external address is reported in the state and the log.
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, IPv4Address("100.64.7.7"))
        with capturedLogs() as events:
            service = self.start(UDP5000)
        state = service.states()[0]
        self.assertTrue(state.doubleNAT)
        self.assertTrue(service.doubleNAT)
        self.assertIn("second NAT", state.describe())
        self.assertTrue(
            any(
                "second NAT" in e["log_format"]
                for e in events
                if e["log_level"].name == "warn"
            )
        )

    def test_publicAgain(self) -> None:
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, IPv4Address("192.168.5.5"))
        service = self.start(UDP5000)
        self.assertTrue(service.states()[0].doubleNAT)
        self.gateway.setExternalAddress(EXTERNAL)
        self.network.flush()
        self.assertFalse(service.states()[0].doubleNAT)
        self.assertFalse(self.observer.states[-1].doubleNAT)


class RefusingBackend(MemoryBackend):
    """
    A gateway's backend that refuses to forward some internal ports (RFC
    6886 s3.5, result 2).
    """

    def __init__(self, refused: set[int]) -> None:
        super().__init__()
        self.refused = refused

    def addMapping(
        self,
        internalAddress: IPv4Address | IPv6Address,
        protocol: Protocol,
        internalPort: int,
        externalPort: int,
    ) -> None:
        if internalPort in self.refused:
            raise NotAuthorizedError(ResultCode.NOT_AUTHORIZED)
        super().addMapping(internalAddress, protocol, internalPort, externalPort)


def texts(events: Sequence[Any], level: str | None = None) -> list[str]:
    """
    The formatted texts of the events, of one level if C{level} is given.
    """
    return [
        e["log_format"].format(**e)
        for e in events
        if "log_format" in e and (level is None or e["log_level"].name == level)
    ]


class GrantTests(ServiceTestMixin, SynchronousTestCase):
    def replyFrom(self, packet: bytes) -> None:
        """
        Send C{packet} from the gateway's port 5351 to the client's port, as
        a forger on the LAN can.
        """
        transport = self.clients[-1].protocol.transport
        assert transport is not None
        port = self.gateway.ports[0]
        port.write(packet, (HOST, transport.getHost().port))  # type: ignore[attr-defined]
        self.network.flush()

    def test_longerGrantNotTrusted(self) -> None:
        """
        Issue 10, item 2: RFC 6886 s3.3, a gateway SHOULD NOT grant more
        than asked.  A (forged) reply granting 4294967295 s is logged, and
        the mapping is renewed and expires by the lifetime asked for, which
        its state reports as its lifetime.
        """
        # The gateway's own replies to mapping requests are lost.
        self.network.drop = lambda d: d.source == (GATEWAY, 5351) and len(d.data) == 16
        service = self.start(UDP5000, healthInterval=10**6)
        self.network.drop = lambda d: False
        reply = MapResponse(Protocol.UDP, 0, 100, 5000, 5000, 0xFFFFFFFF)
        with capturedLogs() as events:
            self.replyFrom(reply.encode())
        state = service.states()[0]
        # The state reports the effective lifetime, which its expiry uses.
        self.assertEqual((state.lifetime, state.expires), (7200, 7200.0))
        (warning,) = texts(events, "warn")
        self.assertIn("granted udp:5000 4294967295 s, more than the 7200 s", warning)
        self.advance(3599.75)
        self.assertEqual(len(self.mapRequests()), 1)
        self.advance(0.25)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 3600.0])

    def runWithOneSecondGrants(self) -> Sequence[Any]:
        """
        Map L{UDP5000} for 60 s via a gateway that grants 1 s.

        @return: the events logged.
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=1)
        with capturedLogs() as events:
            self.start(UDP5000, healthInterval=10**6)
            self.advance(60, step=0.5)
        return events

    def test_renewalFloor(self) -> None:
        """
        Issue 10, item 6: a gateway granting 1 s is asked again every 10 s
        (MIN_RENEWAL_INTERVAL), not twice a second, and warned about once.
        """
        events = self.runWithOneSecondGrants()
        self.assertEqual(
            [t for t, _ in self.mapRequests()],
            [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        )
        warnings = texts(events, "warn")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("grants tiny lifetimes (1 s for udp:5000)", warnings[0])

    def test_tinyGrantsNotLoggedEachTime(self) -> None:
        """
        Issue 10, item 6: after the one warning about tiny lifetimes (RFC
        6886 s3.3), the grants every 10 s are logged at debug, not a
        "mapped" info line each.
        """
        events = self.runWithOneSecondGrants()
        self.assertEqual(
            [t for t in texts(events, "info") if "udp:5000 ->" in t],
            ["mapped udp:5000 -> 192.0.3.1:5000 for 1 s (asked for 7200 s)"],
        )
        self.assertEqual(
            len([t for t in texts(events, "debug") if "udp:5000 ->" in t]), 6
        )

    def test_shortLifetimeAskedForKept(self) -> None:
        """
        The floor applies to a gateway's short grant only: a lifetime of 3 s
        asked for is renewed every 1.5 s, as asked (RFC 6886 s3.3).
        """
        with capturedLogs() as events:
            self.start(MappingDeclaration(Protocol.UDP, 5000, lifetime=3))
            self.advance(4.5)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 1.5, 3.0, 4.5])
        self.assertEqual(texts(events, "warn"), [])

    def test_grantedOtherwiseSaid(self) -> None:
        """
        Issue 10, item 16: a port or lifetime other than asked for is said
        plainly in the log line of the grant.
        """
        neighbour = listenClient(self.network.host(NEIGHBOUR), GATEWAY)
        neighbour.addMapping(Protocol.UDP, 5000)
        self.network.flush()
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=600)
        neighbour.addMapping(Protocol.UDP, 5000)
        self.network.flush()
        with capturedLogs() as events:
            self.start(UDP5000)
        self.assertIn(
            "mapped udp:5000 -> 192.0.3.1:5001 for 600 s (asked for port 5000;"
            " asked for 7200 s)",
            texts(events),
        )
        neighbour.stop()

    def test_remapNotRenewed(self) -> None:
        """
        Issue 10, item 16: a re-mapping after the gateway restarted is
        logged as such, not as a renewal.
        """
        self.start(UDP5000, holdOff=lambda: 3.0)
        self.advance(10)
        with capturedLogs() as events:
            self.gateway.stopService()
            self.gateway.startService()
            self.network.flush()
            self.advance(3)
        self.assertIn("re-mapped udp:5000 -> 192.0.3.1:5000 for 7200 s", texts(events))
        self.assertFalse([t for t in texts(events) if "renewed" in t])

    def test_logFieldsSurviveJSON(self) -> None:
        """
        Issue 10, item 16: the service's log events survive
        C{jsonFileLogObserver}: no field is an object it cannot write.
        """
        with capturedLogs() as events:
            service = self.start(UDP5000, TCP8080)
            self.gatewayGone()
            self.advance(200)
            self.gatewayBack()
            self.gateway.setExternalAddress(OTHER_EXTERNAL)
            self.network.flush()
            self.advance(10)
            stopped = service.stopService()
            self.network.flush()
            self.successResultOf(stopped)
        ours = [
            e
            for e in events
            if e.get("log_namespace", "").startswith("twisted_natpmp.service")
        ]
        self.assertTrue(ours)
        for event in ours:
            # The event's own fields, not the logging system's (the logger,
            # the legacy log's copy of the event).
            fields = {
                k: v for k, v in event.items() if k not in ("log_logger", "log_legacy")
            }
            self.assertNotIn("unpersistable", eventAsJSON(fields), event["log_format"])


class AnnouncementRetryTests(ServiceTestMixin, SynchronousTestCase):
    """
    A mapping that waits for its backoff, and announcements (RFC 6886
    s3.1: an announcement is the signal to try again).
    """

    def setUp(self) -> None:
        super().setUp()
        self.gateway.stopService()
        self.backend = RefusingBackend({6000})
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, backend=self.backend)

    def test_retriedOnAnnouncement(self) -> None:
        """
        A refused mapping is retried when the gateway announces itself,
        before its backoff ends, and at once: never granted, it is a first
        request, not a renewal, so the RFC 6886 s3.7 hold-off is not for it
        (s3.1: an announcement is the signal to try again).
        """
        refused = MappingDeclaration(Protocol.UDP, 6000)
        service = self.start(refused, backoff=lambda n: 300.0, holdOff=lambda: 1.0)
        self.assertIsInstance(service.states()[0].error, NotAuthorizedError)
        self.advance(10)
        self.backend.refused.clear()
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])
        self.assertTrue(service.states()[0].mapped)
        self.advance(10)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])

    def test_neverGrantedAskedAtOnceGrantedHeldOff(self) -> None:
        """
        Issue 12 (gateway down at start): on a gateway's start-up
        announcement, a mapping it never granted (waiting after no answer
        or a refusal) is asked at once, as a first request (RFC 6886 s3.1);
        one it granted keeps the s3.7 random hold-off, as a renewal after a
        loss of state.  Still one request at a time (s3.1).
        """
        refused = MappingDeclaration(Protocol.UDP, 6000)
        other = MappingDeclaration(Protocol.UDP, 6001)
        self.backend.refused.add(6001)
        self.start(
            UDP5000, refused, other, backoff=lambda n: 300.0, holdOff=lambda: 3.0
        )
        self.advance(10)
        self.backend.refused.clear()
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        # Both never-granted ones at once, one after the other; the granted
        # one after the 3 s hold-off, with the re-mapping that confirms the
        # two granted at the very start of the gateway's run (COPY_SLACK).
        self.assertEqual(
            [(t, r.internalPort) for t, r in self.mapRequests(since=1)],
            [(10.0, 6000), (10.0, 6001)],
        )
        self.assertEqual(self.onGateway(Protocol.UDP, 6000), 6000)
        self.assertEqual(self.onGateway(Protocol.UDP, 6001), 6001)
        self.advance(200)
        self.assertEqual(
            [(t, r.internalPort) for t, r in self.mapRequests(since=1)],
            [(10.0, 6000), (10.0, 6001), (13.0, 5000), (13.0, 6000), (13.0, 6001)],
        )

    def test_firstRequestsRateLimited(self) -> None:
        """
        Forged announcements with ever new epochs (each a new burst) cannot
        make the service ask for a refused mapping faster than once every
        CONFIRM_SPACING seconds: the first is asked at once (RFC 6886
        s3.1), the others wait for the rate-limited re-mapping.
        """
        refused = MappingDeclaration(Protocol.UDP, 6000)
        self.start(refused, backoff=lambda n: 300.0, holdOff=lambda: 1.0)
        for i in range(40):
            self.advance(0.25)
            self.sendFrom(GATEWAY, pcpAnnounce(1000 * (i + 1)))
        times = [t for t, _ in self.mapRequests()]
        self.assertEqual(times[:2], [0.0, 0.25])
        gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
        self.assertTrue(all(gap >= CONFIRM_SPACING for gap in gaps), times)

    def test_oncePerBurst(self) -> None:
        """
        Issue 10, item 3: with one mapping refused, a gateway restart (ten
        copies of its announcement, RFC 6886 s3.2.1) retries it once, not
        once per copy, and its backoff is bypassed once.
        """
        refused = MappingDeclaration(Protocol.UDP, 6000)
        self.start(UDP5000, refused, backoff=lambda n: 300.0, holdOff=lambda: 3.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(200)
        # The refused one, never granted, at once (a first request, RFC
        # 6886 s3.1); the granted one after the s3.7 hold-off.
        self.assertEqual(
            [(t, r.internalPort) for t, r in self.mapRequests(since=1)],
            [(10.0, 6000), (13.0, 5000)],
        )

    def test_backoffBypassedOncePerBurstOverTwoRemappings(self) -> None:
        """
        Issue 10, item 3: one burst of announcements (a gateway restart,
        RFC 6886 s3.2.1 copies) that leads to two re-mappings (the first
        grants come early in the gateway's run, so the later copies cannot
        confirm them, L{COPY_SLACK}) bypasses a waiting mapping's backoff
        only once.
        """
        self.backend.refused.clear()
        service = self.start(
            UDP5000,
            MappingDeclaration(Protocol.UDP, 6000),
            backoff=lambda n: 300.0,
            holdOff=lambda: 1.0,
            healthInterval=10**6,
        )
        # A first restart: 6000, granted before, is refused now and waits.
        self.backend.refused.add(6000)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(60)
        self.assertIsInstance(
            service.state(Protocol.UDP, 6000).error, NotAuthorizedError
        )
        before = len(self.mapRequests())
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(60)
        later = [(t, r.internalPort) for t, r in self.mapRequests()[before:]]
        # The re-mappings: 5000 at least twice, 6000 only once.
        self.assertGreaterEqual(len([p for t, p in later if p == 5000]), 2, later)
        self.assertEqual(len([p for t, p in later if p == 6000]), 1, later)


class SilentGatewayTests(ServiceTestMixin, SynchronousTestCase):
    def test_mappingNotHeldUp(self) -> None:
        """
        Issue 10, item 11: against a silent gateway the first mapping
        request goes out within 2 s, not behind the external address
        request's 127.75 s schedule (RFC 6886 s3.1, one request at a time).
        """
        self.gatewayGone()
        self.start(UDP5000, healthInterval=10**6)
        self.advance(2)
        self.assertEqual(self.mapRequests()[0][0], 1.75)

    def test_warnedOnceThenReminded(self) -> None:
        """
        Issue 10, item 11: a person reads one warning 3 s into the silence,
        then a reminder every 5 minutes, not a warning per retry; and one
        line when the gateway answers again.
        """
        self.gatewayGone()
        with capturedLogs() as events:
            self.start(UDP5000, TCP8080, healthInterval=30)
            self.advance(2.75)
            self.assertEqual(texts(events, "warn"), [])
            self.advance(0.25)
            self.assertEqual(
                texts(events, "warn"),
                ["no answer from gateway 10.0.0.1 yet; still trying"],
            )
            self.advance(600, step=1)
        self.assertEqual(
            texts(events, "warn"),
            [
                "no answer from gateway 10.0.0.1 yet; still trying",
                "still no answer from gateway 10.0.0.1 after 303 s; still trying",
                "still no answer from gateway 10.0.0.1 after 603 s; still trying",
            ],
        )
        with capturedLogs() as events:
            self.gatewayBack()
            self.advance(70, step=1)
        self.assertTrue(
            [t for t in texts(events, "info") if "answers again" in t], texts(events)
        )

    def test_retriedWhenAnswersAgain(self) -> None:
        """
        Issue 10, item 4: after a network error (the send fails: no route),
        as soon as the gateway answers again (the health check succeeds),
        every failing mapping is retried, not at the end of its backoff.
        """
        service = self.start(UDP5000, healthInterval=20, backoff=lambda n: 300.0)
        protocol = self.clients[0].protocol
        send = protocol.send

        def unreachable(packet: bytes) -> None:
            raise OSError(101, "Network is unreachable")

        self.patch(protocol, "send", unreachable)
        service.addMapping(Protocol.TCP, 22)
        self.network.flush()
        self.assertIsInstance(service.state(Protocol.TCP, 22).error, OSError)
        self.advance(30)
        self.patch(protocol, "send", send)
        self.advance(10)  # the health check at 40 s is answered
        self.assertEqual(
            [
                (t, r.internalPort)
                for t, r in self.mapRequests()
                if r.internalPort == 22
            ],
            [(40.0, 22)],
        )
        self.assertTrue(service.state(Protocol.TCP, 22).mapped)


class AuditTests(ServiceTestMixin, SynchronousTestCase):
    def test_errorReplyAddressIgnored(self) -> None:
        """
        RFC 6886 s3.2: the address in an external-address response with a
        non-zero result is to be ignored, solicited or announced.
        """
        # The gateway's replies to the external address request are lost.
        self.network.drop = lambda d: d.source == (GATEWAY, 5351) and len(d.data) == 12
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(5)
        self.network.drop = lambda d: False
        self.assertIsNone(service.externalAddress)
        self.sendFrom(GATEWAY, ExternalAddressResponse(3, 5, OTHER_EXTERNAL).encode())
        self.assertIsNone(service.externalAddress)


class MonotonicTests(ServiceTestMixin, SynchronousTestCase):
    def test_wallClockStepIsNoReboot(self) -> None:
        """
        Issue 10, item 7: the RFC 6886 s3.6 judgement runs on the monotonic
        clock given to the service (and by it to its default client): a
        step of the wall clock does not look like a gateway reboot.
        """
        monotonic = [0.0]
        reactor = self.network.host(HOST)
        service = PortMapperService(
            reactor,
            [UDP5000],
            gateway=GATEWAY,
            monotonic=lambda: monotonic[0],
            healthInterval=10**6,
        )
        service.startService()
        self.network.flush()
        self.advance(10)
        monotonic[0] += 10
        # NTP steps the wall clock an hour ahead; the gateway's epoch and
        # the monotonic clock moved on by 10 s.
        self.clock.advance(3000)
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, ExternalAddressResponse(0, 10, EXTERNAL).encode())
        self.assertFalse([t for t in texts(events) if "lost" in t], texts(events))
        service.stopService()
        self.network.flush()

    def test_wallClockStepIsNoPCPReboot(self) -> None:
        """
        Issue 10, item 7, on the PCP path: PCP ANNOUNCE epochs (RFC 6887
        s8.5, as RFC 6886 s3.6 for NAT-PMP) are judged on the monotonic
        clock, so a step of the wall clock (the reactor's) between two
        announcements of one run of the gateway is no reboot.
        """
        monotonic = [0.0]

        def clientFactory(gateway: IPv4Address) -> IPortMapper:
            # The mapper judges the epochs, on the service's monotonic clock.
            return listenClient(
                self.network.host(HOST), gateway, monotonic=lambda: monotonic[0]
            )

        service = self.start(
            UDP5000,
            monotonic=lambda: monotonic[0],
            healthInterval=10**6,
            clientFactory=clientFactory,
        )
        self.advance(10)
        monotonic[0] += 10
        self.sendFrom(GATEWAY, pcpAnnounce(10))
        self.advance(10)
        monotonic[0] += 10
        # NTP steps the wall clock an hour ahead; the gateway's epoch and
        # the monotonic clock moved on by 10 s.
        self.clock.advance(3600)
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, pcpAnnounce(20))
        self.assertFalse([t for t in texts(events) if "lost" in t], texts(events))
        service.stopService()
        self.network.flush()


class PublicAddressTests(ServiceTestMixin, SynchronousTestCase):
    """
    Issue 10, item 13: RFC 6886 s3, a client SHOULD use NAT-PMP only when
    its primary IPv4 address is private.
    """

    PUBLIC = "198.51.100.7"

    def publicClient(self, gateway: IPv4Address) -> IPortMapper:
        client = listenClient(self.network.host(self.PUBLIC), gateway)
        self.clients.append(client)
        return client

    def test_refusedByDefault(self) -> None:
        """
        From a public address the service maps nothing, says why once, and
        each state carries the reason.
        """
        with capturedLogs() as events:
            service = self.start(UDP5000, clientFactory=self.publicClient)
            self.advance(120)
        self.assertEqual(self.mapRequests(), [])
        self.assertEqual(self.addressRequests(), [])
        error = service.states()[0].error
        self.assertIsInstance(error, PublicAddressError)
        self.assertIn("198.51.100.7", str(error))
        (warning,) = texts(events, "warn")
        self.assertIn("from 198.51.100.7, which is not a private address", warning)
        self.assertIn("mapping nothing", warning)

    def test_refusedStillHearsGateway(self) -> None:
        """
        Refused for a public address, the service still counts the
        gateway's announcements as the gateway's (RFC 6886 s3.2.1), never
        drops them as a stranger's.
        """
        service = self.start(UDP5000, clientFactory=self.publicClient)
        self.advance(1)
        assert service._gateways.announcer is not None
        self.assertEqual(service._gateways.announcer.gateway, IPv4Address(GATEWAY))
        with capturedLogs():
            self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual(service._gateways.announcer.drops.total, 0)
        self.assertEqual(service._gateways.announcer.heard, 1)
        self.assertEqual(self.mapRequests(), [])

    def test_allowed(self) -> None:
        """
        Told to go ahead, the service maps from a public address, with the
        warning.
        """
        with capturedLogs() as events:
            self.start(
                UDP5000, clientFactory=self.publicClient, allowPublicAddress=True
            )
            self.advance(2)
        self.assertEqual(self.mapRequests()[0][0], 1.75)
        self.assertTrue([t for t in texts(events, "warn") if "mapping anyway" in t])

    def test_privateLater(self) -> None:
        """
        The address is checked again with the gateway, every minute: a host
        that reaches the same gateway from a private address later maps
        then; the refusal was said once, not each minute.
        """
        here = [self.PUBLIC]

        def client(gateway: IPv4Address) -> IPortMapper:
            mapper = listenClient(
                self.network.host(here[0]), gateway, monotonic=self.clock.seconds
            )
            self.clients.append(mapper)
            return mapper

        with capturedLogs() as events:
            service = self.start(UDP5000, clientFactory=client)
            self.advance(150, step=1)
            self.assertEqual(self.mapRequests(), [])
            here[0] = HOST
            self.advance(30, step=1)
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertEqual(len(texts(events, "warn")), 1, texts(events, "warn"))
        self.assertIn(
            "now reaching gateway 10.0.0.1 from 10.0.0.2, a private address: mapping",
            texts(events, "info"),
        )
        stopped = service.stopService()
        self.network.flush()
        self.successResultOf(stopped)

    def test_privateSaysNothing(self) -> None:
        with capturedLogs() as events:
            self.start(UDP5000)
        self.assertFalse([t for t in texts(events) if "private address" in t])


class FlappingGatewayTests(ServiceTestMixin, SynchronousTestCase):
    def test_warnedAtMostEveryFiveMinutes(self) -> None:
        """
        A gateway that keeps falling silent and answering again (a lossy
        link) is warned about at most once every 5 minutes, and each time
        it answers again the failing mappings are retried at once.
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, EXTERNAL, maxLifetime=40)
        with capturedLogs() as events:
            service = self.start(UDP5000, healthInterval=20, backoff=lambda n: 300.0)
            for _ in range(4):
                self.gatewayGone()
                self.advance(150, step=1)
                self.assertFalse(service.states()[0].mapped)
                self.gatewayBack()
                self.advance(30, step=1)
                self.assertTrue(service.states()[0].mapped)
        warnings = [t for t in texts(events, "warn") if "answer from" in t]
        self.assertEqual(
            warnings,
            [
                "no answer from gateway 10.0.0.1 yet; still trying",
                "no answer from gateway 10.0.0.1 yet; still trying",
            ],
        )


class SilenceAfterAnswerTests(ServiceTestMixin, SynchronousTestCase):
    def test_warnedWhenSilentAfterOneAnswer(self) -> None:
        """
        Issue 10, item 11 (RFC 6886 s3.1 retries): a gateway that answers
        one request and then falls silent while other requests are already
        queued or in flight is warned about C{SILENCE_WARNING} seconds
        after its last answer, not only once a later request is made.
        """
        # Only the external address request is answered.
        self.network.drop = lambda d: isinstance(
            decodeRequest(d.data) if d.destination == (GATEWAY, 5351) else None,
            MapRequest,
        )
        with capturedLogs() as events:
            self.start(
                UDP5000,
                TCP8080,
                MappingDeclaration(Protocol.UDP, 6000),
                healthInterval=10**6,
            )
            self.advance(3.25)
        self.assertEqual(
            [t for t in texts(events, "warn") if "answer from" in t],
            ["no answer from gateway 10.0.0.1 yet; still trying"],
        )


class OutageRecoveryTests(ServiceTestMixin, SynchronousTestCase):
    def test_renewalDuringOutageRecoveredPromptly(self) -> None:
        """
        Issue 10, item 4: a renewal (RFC 6886 s3.3, at half the lifetime)
        that falls in an outage gives up on its short s3.1 schedule, so
        when the gateway answers again every failing mapping is retried at
        once; a 120 s mapping does not expire or sit unmapped for long.
        The link is down from 50 to 93 s.
        """
        lifetime = MappingDeclaration(Protocol.UDP, 5000, lifetime=120)
        service = self.start(lifetime, backoff=defaultBackoff(lambda: 0.0))
        self.advance(50)
        self.gatewayGone()
        self.advance(43)
        self.gatewayBack()
        self.advance(5)
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertTrue(
            [t for t, r in self.mapRequests(since=93.0) if t <= 98.0],
            self.mapRequests(),
        )
        self.advance(200)
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        # Never unmapped once granted: the renewal came before the expiry.
        self.assertTrue(all(state.mapped for state in self.observer.states[1:]))
