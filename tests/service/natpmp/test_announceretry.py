"""
Announcements that retry, end to end: what a gateway's announcement
retries at once, held off, and rate-limited.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.errors import NotAuthorizedError
from twisted_natpmp.natpmp._wire import (
    Protocol,
)
from twisted_natpmp.service import (
    CONFIRM_SPACING,
    MappingDeclaration,
)

from ._support import (
    EXTERNAL,
    GATEWAY,
    UDP5000,
    RefusingBackend,
    ServiceTestMixin,
    pcpAnnounce,
)


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
        # RFC 6886 s3.7
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
        # RFC 6886 s3.1
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
        # RFC 6886 s3.1
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
        # RFC 6886 s3.2.1
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
        # RFC 6886 s3.2.1
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
