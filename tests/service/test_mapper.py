"""
Tests for L{twisted_natpmp.testing.FakePortMapper}: the fake is an honest
L{IPortMapper}, records every call and lets the test decide each outcome.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    Mapping,
    ProtocolName,
    Transport,
)
from twisted_natpmp.errors import NotAuthorizedError
from twisted_natpmp.interfaces import IExternalAddressQuery, IPortMapper, Probe
from twisted_natpmp.testing import FakePortMapper


class FakePortMapperTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        """
        The fake provides L{IPortMapper} and L{IExternalAddressQuery}.
        """
        self.assertTrue(verifyClass(IPortMapper, FakePortMapper))
        self.assertTrue(verifyObject(IPortMapper, FakePortMapper()))
        self.assertTrue(verifyObject(IExternalAddressQuery, FakePortMapper()))

    def test_recordsAndHolds(self) -> None:
        """
        Each call is recorded with its arguments and left unanswered until
        the test answers it.
        """
        mapper = FakePortMapper()
        d = mapper.addMapping(Transport.TCP, 8080, 0, 600, timeouts=(1.0,))
        [request] = mapper.pending()
        self.assertEqual(request.method, "addMapping")
        self.assertEqual(
            request.arguments,
            dict(
                transport=Transport.TCP,
                internalPort=8080,
                externalPort=0,
                lifetime=600,
                timeouts=(1.0,),
            ),
        )
        self.assertNoResult(d)
        mapping = request.grant(lifetime=300)
        self.assertEqual(self.successResultOf(d), mapping)
        self.assertEqual(
            mapping,
            Mapping(Transport.TCP, 8080, 1024 + 8080, 300, 1000),
        )
        self.assertEqual(mapper.pending(), [])
        self.assertEqual(mapper.calls("addMapping"), [request])

    def test_fail(self) -> None:
        """
        A call fails with the error the test gives.
        """
        mapper = FakePortMapper()
        d = mapper.deleteMapping(Transport.UDP, 1)
        mapper.pending("deleteMapping")[0].fail(NotAuthorizedError(2))
        self.failureResultOf(d, NotAuthorizedError)

    def test_cancel(self) -> None:
        """
        Cancelling a call's L{Deferred} is recorded; L{cancelPending} and
        L{stop} cancel every call pending.
        """
        mapper = FakePortMapper()
        first = mapper.probe()
        second = mapper.externalAddress()
        first.cancel()
        self.assertTrue(mapper.requests[0].cancelled)
        self.failureResultOf(first, CancelledError)
        self.successResultOf(mapper.stop())
        self.failureResultOf(second, CancelledError)
        self.assertEqual(mapper.stopped, 1)

    def test_autoAnswer(self) -> None:
        """
        With C{autoAnswer}, every call is answered as a well-behaved
        gateway would.
        """
        mapper = FakePortMapper("10.0.0.1", ProtocolName.PCP, autoAnswer=True)
        self.assertEqual(
            self.successResultOf(mapper.probe()),
            Probe(ProtocolName.PCP, 1000, IPv4Address("192.0.2.1")),
        )
        granted = self.successResultOf(mapper.addMapping(Transport.UDP, 5000, 6000))
        self.assertEqual(
            (granted.externalPort, granted.protocolName), (6000, ProtocolName.PCP)
        )
        self.assertEqual(
            self.successResultOf(mapper.deleteMappings([(Transport.UDP, 5000)])),
            {(Transport.UDP, 5000): None},
        )
        self.assertEqual(
            self.successResultOf(mapper.externalAddress()), IPv4Address("192.0.2.1")
        )

    def test_observers(self) -> None:
        """
        L{FakePortMapper.loseState} and L{FakePortMapper.retrying} call the
        observers, until removed.
        """
        mapper = FakePortMapper()
        losses: list[None] = []
        retries: list[tuple[str, int, float]] = []
        mapper.addStateLossObserver(lambda: losses.append(None))
        mapper.addRetryObserver(lambda *args: retries.append(args))
        mapper.loseState()
        mapper.retrying("the probe", 2, 0.5)
        self.assertEqual((len(losses), retries), (1, [("the probe", 2, 0.5)]))
        mapper.removeStateLossObserver(mapper.stateLossObservers[0])
        mapper.removeRetryObserver(mapper.retryObservers[0])
        mapper.loseState()
        self.assertEqual(len(losses), 1)

    def test_announcedJudgesEpochs(self) -> None:
        """
        RFC 6886 s3.6: an announcement's epoch is judged against the one
        before it of the same protocol; a loss tells the observers.
        """
        # RFC 6886 s3.6
        now = [0.0]
        mapper = FakePortMapper(now=lambda: now[0])
        losses: list[None] = []
        mapper.addStateLossObserver(lambda: losses.append(None))

        def announce(epoch: int, kind: AnnouncementKind) -> bool:
            return mapper.announced(Announcement(kind, epoch, None, ("10.0.0.1", 1)))

        self.assertFalse(announce(100, AnnouncementKind.NATPMP))
        now[0] = 10.0
        self.assertFalse(announce(5, AnnouncementKind.PCP))
        self.assertFalse(announce(110, AnnouncementKind.NATPMP))
        self.assertTrue(announce(1, AnnouncementKind.NATPMP))
        self.assertEqual(len(losses), 1)
        self.assertEqual(len(mapper.announcements), 4)

    def test_source(self) -> None:
        """
        L{FakePortMapper.sourceAddress} is what the test set.
        """
        self.assertEqual(
            FakePortMapper(source="203.0.113.5").sourceAddress(),
            IPv4Address("203.0.113.5"),
        )
        self.assertIsNone(FakePortMapper(source=None).sourceAddress())
