"""
Tests for L{twisted_natpmp.service.watch}: the gateway watch, its re-mapping
machine (L{twisted_natpmp.service._recovery}) and the mapper it watches, on
a L{Clock} against L{FakePortMapper} (announcements and silence:
L{tests.service.test_watchannounce}).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp._types import Announcement, AnnouncementKind, Transport
from twisted_natpmp.errors import NoResponseError, NotAuthorizedError
from twisted_natpmp.interfaces import IPortMapper, Probe
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.keeper import KeeperChange, MappingKeeper
from twisted_natpmp.service.policy import (
    ADDRESS_TIMEOUTS,
    HEALTH_TIMEOUTS,
)
from twisted_natpmp.service.watch import GatewayWatch
from twisted_natpmp.testing import FakePortMapper

UDP5000 = MappingDeclaration(Transport.UDP, 5000)


TCP8080 = MappingDeclaration(Transport.TCP, 8080)


EXTERNAL = IPv4Address("192.0.2.1")


def texts(events: Sequence[Any], level: str | None = None) -> list[str]:
    return [
        e["log_format"].format(**e)
        for e in events
        if level is None or e["log_level"].name == level
    ]


def announcement(
    epoch: int,
    kind: AnnouncementKind = AnnouncementKind.NATPMP,
    address: IPv4Address | None = EXTERNAL,
) -> Announcement:
    return Announcement(kind, epoch, address, ("10.0.0.1", 5350))


class WatchTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        # The gateway has run for 1000 s.
        self.clock.advance(1000)
        self.mapper = FakePortMapper(now=self.clock.seconds)
        self.keepers: list[MappingKeeper] = []
        self.holdOff = 2.0

    def watch(self, *declarations: MappingDeclaration) -> GatewayWatch:
        watch = GatewayWatch(
            self.clock,
            self.mapper,
            lambda: self.keepers,
            holdOff=lambda: self.holdOff,
            monotonic=self.clock.seconds,
            healthInterval=60.0,
            describe=lambda: "states",
        )

        def report(keeper: MappingKeeper, change: KeeperChange) -> None:
            # As the service does.
            if change is KeeperChange.GRANTED:
                watch.granted(keeper.mapping)

        for declaration in declarations:
            keeper = MappingKeeper(
                declaration,
                self.clock,
                report,
                backoff=lambda failures: 300.0,
                monotonic=self.clock.seconds,
            )
            self.keepers.append(keeper)
        watch.start()
        for keeper in self.keepers:
            keeper.start(watch.mapper, watch.context)
        return watch

    def answerAll(self) -> None:
        """
        Answer every request pending as a well-behaved gateway would.
        """
        while self.mapper.pending():
            request = self.mapper.pending()[0]
            if request.method == "probe":
                request.succeed(Probe(self.mapper.protocolName, 1000, EXTERNAL))
            elif request.method == "addMapping":
                request.grant()
            else:
                request.succeed(None)

    def mapped(self, *declarations: MappingDeclaration) -> GatewayWatch:
        watch = self.watch(*declarations)
        self.answerAll()
        return watch


class AddressTests(WatchTestCase):
    def test_startProbes(self) -> None:
        """
        The watch probes for the external address first, on the short
        schedule, before the mappings are asked for.
        """
        watch = self.watch(UDP5000)
        first = self.mapper.requests[0]
        self.assertEqual(
            (first.method, first.arguments["timeouts"]), ("probe", ADDRESS_TIMEOUTS)
        )
        self.answerAll()
        self.assertEqual(watch.externalAddress, EXTERNAL)
        self.assertEqual(watch.context.externalAddress, EXTERNAL)
        self.assertTrue(verifyObject(IPortMapper, watch.mapper))

    def test_healthCheck(self) -> None:
        """
        RFC 6886 s3.6: a probe every C{healthInterval}, on the health
        schedule; one at a time.
        """
        # RFC 6886 s3.6
        self.mapped(UDP5000)
        self.clock.advance(60)
        [probe] = self.mapper.pending()
        self.assertEqual(probe.arguments["timeouts"], HEALTH_TIMEOUTS)
        self.clock.advance(60)
        self.assertEqual(len(self.mapper.pending()), 1)

    def test_addressAskedAgainOnGrant(self) -> None:
        """
        An address probe that failed is asked again once a mapping is
        granted (the gateway answers now).
        """
        self.watch(UDP5000)
        probe = self.mapper.pending("probe")[0]
        probe.fail(NoResponseError(self.mapper.gateway, 3, 1.75))
        self.mapper.pending("addMapping")[0].grant()
        self.assertEqual(len(self.mapper.pending("probe")), 1)

    def test_addressFromMapping(self) -> None:
        """
        A grant that tells the external address (PCP's do) tells the
        gateway's.
        """
        self.mapper.mappingAddress = IPv4Address("198.51.100.1")
        watch = self.mapped(UDP5000)
        self.assertEqual(watch.externalAddress, IPv4Address("198.51.100.1"))

    def test_addressChangeRemaps(self) -> None:
        """
        A new external address re-maps everything after the hold-off.
        """
        watch = self.mapped(UDP5000)
        with capturedLogs() as events:
            watch.gotAddress(IPv4Address("192.0.2.2"))
        self.assertIn(
            "the external address changed from 192.0.2.1: re-mapping everything"
            " in 2.00 s",
            texts(events),
        )

    def test_privateWarned(self) -> None:
        """
        A private external address is a second NAT, warned about.
        """
        watch = self.mapped()
        with capturedLogs() as events:
            watch.gotAddress(IPv4Address("100.64.1.1"))
        self.assertIn("behind a second NAT", " ".join(texts(events, "warn")))

    def test_probeRefusedWarned(self) -> None:
        """
        A probe the gateway refused is warned about; one unanswered is only
        told (the silence watch tells that).
        """
        self.watch()
        with capturedLogs() as events:
            self.mapper.pending()[0].fail(NotAuthorizedError(2))
        self.assertEqual(len(texts(events, "warn")), 1)


class RecoveryTests(WatchTestCase):
    def test_stateLostRemapsOneAtATime(self) -> None:
        """
        RFC 6886 s3.7: after a loss of state, the hold-off, then the
        address, then every mapping one request at a time, each suggesting
        the port it held.
        """
        # RFC 6886 s3.7
        self.mapped(UDP5000, TCP8080)
        self.mapper.requests.clear()
        self.mapper.loseState()
        self.clock.advance(1.9)
        self.assertEqual(self.mapper.requests, [])
        self.clock.advance(0.1)
        [probe] = self.mapper.pending()
        probe.succeed(Probe(self.mapper.protocolName, 1, EXTERNAL))
        [first] = self.mapper.pending()
        self.assertEqual(first.arguments["internalPort"], 5000)
        self.assertEqual(first.arguments["externalPort"], 5000)
        with capturedLogs() as events:
            first.grant()
            [second] = self.mapper.pending()
            self.assertEqual(second.arguments["internalPort"], 8080)
            second.grant()
        self.assertIn("re-mapping done: states", texts(events))

    def test_lossesCoalesced(self) -> None:
        """
        Losses while a re-mapping is due are covered by it; one while
        mapping leads to one more round.
        """
        self.mapped(UDP5000)
        self.mapper.requests.clear()
        self.mapper.loseState()
        self.mapper.loseState()
        self.clock.advance(2)
        self.answerAll()
        self.assertEqual(
            [r.method for r in self.mapper.requests], ["probe", "addMapping"]
        )
        self.mapper.requests.clear()
        self.mapper.loseState()
        self.clock.advance(2)
        self.mapper.pending()[0].succeed(Probe(self.mapper.protocolName, 5, None))
        self.mapper.loseState()
        self.mapper.loseState()
        with capturedLogs() as events:
            self.answerAll()
        self.assertIn(
            "re-mapping done (2 more announcements or losses meanwhile): states",
            texts(events),
        )
        self.clock.advance(2)
        self.assertEqual(len(self.mapper.pending("probe")), 1)

    def test_stopCancels(self) -> None:
        """
        Stopping the watch cancels the re-mapping and every request made
        through it, and later ones fail at once.
        """
        watch = self.mapped(UDP5000)
        self.mapper.loseState()
        self.clock.advance(2)
        [probe] = self.mapper.pending()
        watch.stop()
        self.assertTrue(probe.cancelled)
        self.assertEqual(self.mapper.stateLossObservers, [])
        self.failureResultOf(watch.mapper.probe(), CancelledError)
        self.clock.advance(600)
        self.assertEqual(self.mapper.pending(), [])


class WatchedMapperTests(WatchTestCase):
    def test_closeCancelsLastFirst(self) -> None:
        """
        Closing cancels the requests made through the wrapper, the last made
        first (RFC 6886 s3.1: requests go one at a time, so cancelling the
        one in flight first would send the next).
        """
        # RFC 6886 s3.1
        watch = self.watch()
        order: list[int] = []

        def cancelled(failure: Failure, n: int) -> None:
            order.append(n)

        for n in range(3):
            watch.mapper.addMapping(Transport.UDP, 5000 + n).addErrback(cancelled, n)
        watch.stop()
        self.assertEqual(order, [2, 1, 0])

    def test_deleteMappingsNotWatched(self) -> None:
        """
        The batch deletions of a stop go straight to the mapper, untold to
        the silence watch.
        """
        watch = self.watch()
        watch.mapper.deleteMappings([UDP5000.key])
        self.assertEqual(len(self.mapper.pending("deleteMappings")), 1)
        self.assertEqual(watch.mapper.gateway, self.mapper.gateway)
        self.assertEqual(watch.mapper.sourceAddress(), self.mapper.sourceAddress())
