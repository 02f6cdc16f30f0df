"""
Tests for L{twisted_natpmp.service.PortMapperService} against
L{FakePortMapper}: protocol-neutral, on a L{Clock}.  (The NAT-PMP end to end
tests, with the real client and gateway, are in L{tests.service.test_natpmp}.)
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    ProtocolName,
    Transport,
)
from twisted_natpmp.announce import AnnouncementProtocol
from twisted_natpmp.discovery import defaultGateway, defaultGateway6
from twisted_natpmp.errors import NoGatewayError, NotAuthorizedError
from twisted_natpmp.interfaces import IMappingObserver, IPortMapper, Probe
from twisted_natpmp.service import (
    STOP_DEADLINE,
    STOP_TIMEOUTS,
    MappingDeclaration,
    MappingState,
    PortMapperService,
    PublicAddressError,
)
from twisted_natpmp.testing import FakePortMapper

UDP5000 = MappingDeclaration(Transport.UDP, 5000)
TCP8080 = MappingDeclaration(Transport.TCP, 8080, 8443)
GATEWAY = IPv4Address("10.0.0.1")


def texts(events: Sequence[Any], level: str | None = None) -> list[str]:
    return [
        e["log_format"].format(**e)
        for e in events
        if level is None or e["log_level"].name == level
    ]


def warnings(events: Sequence[Any]) -> list[str]:
    """
    The events at warn or above, in every namespace, as text.
    """
    return [texts([e])[0] for e in events if e["log_level"] >= LogLevel.warn]


@implementer(IMappingObserver)
class RecordingObserver:
    def __init__(self) -> None:
        self.states: list[MappingState] = []

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        self.states.append(state)


class ServiceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.mappers: list[FakePortMapper] = []
        self.autoAnswer = True
        self.source = "10.0.0.2"
        self.address: str | None = "192.0.2.1"
        self.observer = RecordingObserver()

    def clientFactory(self, gateway: IPv4Address | IPv6Address) -> IPortMapper:
        mapper = FakePortMapper(
            gateway,
            autoAnswer=self.autoAnswer,
            source=self.source,
            address=self.address,
            now=self.clock.seconds,
        )
        self.mappers.append(mapper)
        return mapper

    def noAnnouncements(self, protocol: AnnouncementProtocol) -> IListeningPort | None:
        return None

    def makeService(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        options: dict[str, Any] = dict(
            gateway=GATEWAY,
            clientFactory=self.clientFactory,
            announcements=self.noAnnouncements,
            holdOff=lambda: 0.0,
            backoff=lambda failures: 10.0,
            monotonic=self.clock.seconds,
        )
        options.update(kwargs)
        service = PortMapperService(self.clock, declarations, **options)
        service.addObserver(self.observer)
        return service

    def start(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        service = self.makeService(*declarations, **kwargs)
        service.startService()
        return service

    @property
    def mapper(self) -> FakePortMapper:
        return self.mappers[-1]


class StartTests(ServiceTestCase):
    def test_mapsEverything(self) -> None:
        """
        Starting makes a mapper for the gateway, probes it, and maps every
        declaration through it; the states tell the probe's external
        address.
        """
        self.clock.advance(100)
        service = self.start(UDP5000, TCP8080)
        self.assertEqual(
            [r.method for r in self.mapper.requests],
            ["probe", "addMapping", "addMapping"],
        )
        self.assertTrue(verifyObject(IPortMapper, self.mapper))
        udp, tcp = service.states()
        self.assertEqual(
            (udp.externalAddress, udp.externalPort, udp.lifetime, udp.expires),
            (IPv4Address("192.0.2.1"), 5000, 7200, 7300.0),
        )
        self.assertEqual(tcp.externalPort, 8443)
        self.assertEqual(service.gateway, GATEWAY)
        self.assertEqual(service.state(Transport.TCP, 8080), tcp)
        self.assertFalse(service.doubleNAT)

    def test_notRunning(self) -> None:
        """
        Nothing is asked before the service starts.
        """
        service = self.makeService(UDP5000)
        self.clock.advance(100)
        self.assertEqual(self.mappers, [])
        self.assertFalse(service.states()[0].mapped)

    def test_addressFromMapping(self) -> None:
        """
        A mapper whose probe tells no external address (PCP's does not)
        learns it from the mappings.
        """
        self.address = None
        self.autoAnswer = False
        service = self.start(UDP5000)
        self.mapper.pending("probe")[0].succeed(Probe(ProtocolName.PCP, 100))
        address = IPv4Address("198.51.100.7")
        self.mapper.pending("addMapping")[0].grant(externalAddress=address)
        self.assertEqual(service.states()[0].externalAddress, address)
        self.assertEqual(service.externalAddress, address)

    def test_doubleNAT(self) -> None:
        """
        A private external address is a second NAT upstream.
        """
        self.address = "100.64.0.9"
        service = self.start(UDP5000)
        self.assertTrue(service.doubleNAT)
        self.assertTrue(service.states()[0].doubleNAT)

    def test_healthCheckProbes(self) -> None:
        """
        The health check is a probe, every C{healthInterval} seconds.
        """
        self.start(UDP5000, healthInterval=30)
        self.clock.pump([30, 30, 30])
        self.assertEqual(len(self.mapper.calls("probe")), 4)


class RuntimeTests(ServiceTestCase):
    def test_addMapping(self) -> None:
        """
        A mapping added while running is asked for at once; the L{Deferred}
        fires with its state after the first attempt.
        """
        service = self.start()
        self.autoAnswer = False
        self.mapper.autoAnswer = False
        d = service.addMapping(Transport.UDP, 6000)
        self.assertNoResult(d)
        self.mapper.pending("addMapping")[0].fail(NotAuthorizedError(2))
        state = self.successResultOf(d)
        self.assertIsInstance(state.error, NotAuthorizedError)

    def test_addBeforeStartAndDuplicate(self) -> None:
        """
        Before the start, adding fires at once; a duplicate fails.
        """
        service = self.makeService(UDP5000)
        state = self.successResultOf(service.addMapping(Transport.TCP, 1))
        self.assertFalse(state.mapped)
        self.failureResultOf(service.addMapping(Transport.UDP, 5000), ValueError)

    def test_removeMapping(self) -> None:
        """
        Removing deletes the mapping through the mapper; its state says
        removed.
        """
        service = self.start(UDP5000)
        self.successResultOf(service.removeMapping(Transport.UDP, 5000))
        [deletion] = self.mapper.calls("deleteMapping")
        self.assertEqual(deletion.arguments["timeouts"], STOP_TIMEOUTS)
        self.assertTrue(self.observer.states[-1].removed)
        self.assertEqual(service.states(), [])
        self.failureResultOf(service.removeMapping(Transport.UDP, 5000), KeyError)

    def test_removeNotRunning(self) -> None:
        """
        Removing while not running deletes nothing.
        """
        service = self.makeService(UDP5000)
        self.successResultOf(service.removeMapping(Transport.UDP, 5000))
        self.assertEqual(self.mappers, [])


class StopTests(ServiceTestCase):
    def test_stopDeletesInOneBatch(self) -> None:
        """
        RFC 6886 s3.4: stopping deletes every mapping held, in one batch,
        and stops the mapper; every state says removed.
        """
        # RFC 6886 s3.4
        service = self.start(UDP5000, TCP8080)
        self.successResultOf(service.stopService())
        [batch] = self.mapper.calls("deleteMappings")
        self.assertEqual(batch.arguments["keys"], [UDP5000.key, TCP8080.key])
        self.assertEqual(self.mapper.stopped, 1)
        self.assertTrue(all(s.removed for s in self.observer.states[-2:]))
        self.assertFalse(any(s.mapped for s in service.states()))
        self.assertIsNone(service.gateway)

    def test_stopDeadline(self) -> None:
        """
        Deletions unanswered by the stop deadline are given up and named.
        """
        service = self.start(UDP5000)
        self.mapper.autoAnswer = False
        with capturedLogs() as events:
            d = service.stopService()
            self.assertNoResult(d)
            self.clock.advance(STOP_DEADLINE)
        self.successResultOf(d)
        self.assertIn(
            "stopping: left 1 mapping(s) at gateway 10.0.0.1, which expire by"
            " themselves: udp:5000 (not answered within the 5 s stop deadline)",
            texts(events, "warn"),
        )

    def test_stopCancelsPending(self) -> None:
        """
        Stopping cancels every request pending, the last made first, and
        the mapping asked for but never seen granted is deleted too (it may
        have been made).
        """
        self.autoAnswer = False
        service = self.start(UDP5000)
        pending = self.mapper.pending()
        service.stopService()
        self.assertTrue(all(r.cancelled for r in pending))
        [batch] = self.mapper.calls("deleteMappings")
        self.assertEqual(batch.arguments["keys"], [UDP5000.key])

    def test_restart(self) -> None:
        """
        A stopped service starts again with a new mapper.
        """
        service = self.start(UDP5000)
        self.successResultOf(service.stopService())
        service.startService()
        self.assertEqual(len(self.mappers), 2)
        self.assertTrue(service.states()[0].mapped)


class GatewayTests(ServiceTestCase):
    def test_noGateway(self) -> None:
        """
        No default gateway: every state carries the error, said once.
        """

        def discover() -> IPv4Address:
            raise NoGatewayError("none")

        with capturedLogs() as events:
            service = self.start(UDP5000, gateway=None, discoverGateway=discover)
            self.clock.advance(120)
        self.assertIsInstance(service.states()[0].error, NoGatewayError)
        self.assertEqual(warnings(events), ["no gateway: none"])

    def test_refusedWarnedOnce(self) -> None:
        """
        A gateway that answers but refuses the mapping (NAT-PMP result 2)
        for two hours is one warning in all, whatever the backoff's
        retries; each retry's line is at info.
        """
        from twisted_natpmp.service.policy import defaultBackoff

        self.autoAnswer = False
        with capturedLogs() as events:
            self.start(UDP5000, backoff=defaultBackoff(lambda: 0.0))
            for _ in range(2 * 3600):
                for probe in self.mapper.pending("probe"):
                    probe.succeed(
                        Probe(self.mapper.protocolName, 1, self.mapper.address)
                    )
                for request in self.mapper.pending("addMapping"):
                    request.fail(NotAuthorizedError(2))
                self.clock.advance(1)
        [warning] = warnings(events)
        self.assertIn("could not map udp:5000 via 10.0.0.1: gateway answered", warning)
        retries = [t for t in texts(events, "info") if t.startswith("could not map")]
        self.assertGreater(len(retries), 20)

    def test_followsChange(self) -> None:
        """
        A change of default gateway deletes the mappings at the old one and
        maps them at the new one.
        """
        gateways = [GATEWAY]
        service = self.start(
            UDP5000, gateway=None, discoverGateway=lambda: gateways[-1]
        )
        old = self.mapper
        gateways.append(IPv4Address("10.0.0.254"))
        self.clock.advance(60)
        self.assertEqual(
            old.calls("deleteMappings")[0].arguments["keys"], [UDP5000.key]
        )
        self.assertEqual(old.stopped, 1)
        self.assertEqual(self.mapper.gateway, IPv4Address("10.0.0.254"))
        self.assertEqual(service.states()[0].gateway, IPv4Address("10.0.0.254"))
        self.assertTrue(service.states()[0].mapped)

    def test_publicAddressRefused(self) -> None:
        """
        RFC 6886 s3: from a public address, nothing is mapped (the mapper is
        stopped), unless allowed.
        """
        self.source = "203.0.113.5"
        service = self.start(UDP5000)
        self.assertEqual(self.mapper.calls("addMapping"), [])
        self.assertEqual(self.mapper.stopped, 1)
        self.assertIsInstance(service.states()[0].error, PublicAddressError)
        allowed = self.start(TCP8080, allowPublicAddress=True)
        self.assertTrue(allowed.states()[0].mapped)

    def test_publicAddressPCP(self) -> None:
        """
        RFC 6886 s3's rule is NAT-PMP's: with C{protocol="pcp"} the service
        maps from a public address (PCP has no such rule; auto keeps it, as
        it may fall back to NAT-PMP).
        """
        self.source = "203.0.113.5"
        service = self.start(UDP5000, protocol="pcp")
        self.assertTrue(service.states()[0].mapped)
        auto = self.start(TCP8080, protocol="auto")
        self.assertIsInstance(auto.states()[0].error, PublicAddressError)

    def test_announcementsJudgedByMapper(self) -> None:
        """
        The gateway's announcements are handed to its mapper, which judges
        their epochs whatever the protocol.
        """
        service = self.start(UDP5000)
        announcement = Announcement(
            AnnouncementKind.PCP, 10, None, (str(GATEWAY), 5351)
        )
        service._gateways.announced(announcement)
        self.assertEqual(self.mapper.announcements, [announcement])
        self.assertIs(self.mapper.protocolName, ProtocolName.NATPMP)


class IPv6Tests(ServiceTestCase):
    """
    The service with an IPv6 gateway (PCP only, RFC 6887 s8.1): the mapper
    is made for it, and the host's own IPv6 address is not refused as
    public (RFC 6886 s3's rule is NAT-PMP's, for IPv4).
    """

    def setUp(self) -> None:
        super().setUp()
        self.source = "2001:db8::2"
        self.address = None

    def test_ipv6Gateway(self) -> None:
        """
        An IPv6 gateway given as a string is used as such, and its mappings
        made.
        """
        # RFC 6887 s8.1
        service = self.start(UDP5000, gateway="2001:db8::1")
        self.assertEqual(service.gateway, IPv6Address("2001:db8::1"))
        self.assertEqual(self.mapper.gateway, IPv6Address("2001:db8::1"))
        self.assertTrue(service.states()[0].mapped)

    def test_scopedGateway(self) -> None:
        """
        A link-local gateway keeps its scope.
        """
        service = self.start(UDP5000, gateway="fe80::1%eth0")
        self.assertEqual(str(service.gateway), "fe80::1%eth0")

    def test_discoversIPv6GatewayForIPv6Address(self) -> None:
        """
        With an IPv6 internal address and no discovery given, the service
        looks for the default IPv6 gateway.
        """
        service = self.makeService(
            UDP5000, gateway=None, discoverGateway=None, internalAddress="2001:db8::2"
        )
        self.assertIs(service._gateways._discoverGateway, defaultGateway6)
        service = self.makeService(UDP5000, gateway=None, discoverGateway=None)
        self.assertIs(service._gateways._discoverGateway, defaultGateway)
