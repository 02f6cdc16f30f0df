"""
Stopping (RFC 6886 s3.4) and observers, end to end.
"""

from __future__ import annotations

from twisted.internet.defer import fail
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_natpmp.interfaces import IMappingObserver
from twisted_natpmp.natpmp._wire import (
    MapRequest,
    Protocol,
    decodeRequest,
)
from twisted_natpmp.service import MappingDeclaration
from twisted_natpmp.service.keeper import KeeperPhase
from twisted_natpmp.testing import Datagram

from ._support import (
    EXTERNAL,
    GATEWAY,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
    pcpAnnounce,
    texts,
)


class StopTests(ServiceTestMixin, SynchronousTestCase):
    def test_stopDeletes(self) -> None:
        """
        Stopping deletes every mapping held (RFC 6886 s3.4) and fires once
        the gateway confirmed.
        """
        # RFC 6886 s3.4
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
        # RFC 6886 s3.1
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
        # RFC 6886 s3.4
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
        # RFC 6886 s3.7
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
        # RFC 6887 s8.5, RFC 6886 s3.6
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
