"""
A silent or flapping gateway, end to end.
"""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    MapRequest,
    Protocol,
    decodeRequest,
)
from twisted_natpmp.service import (
    MappingDeclaration,
    defaultBackoff,
)

from ._support import (
    EXTERNAL,
    GATEWAY,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
    texts,
)


class SilentGatewayTests(ServiceTestMixin, SynchronousTestCase):
    def test_mappingNotHeldUp(self) -> None:
        """
        Issue 10, item 11: against a silent gateway the first mapping
        request goes out within 2 s, not behind the external address
        request's 127.75 s schedule (RFC 6886 s3.1, one request at a time).
        """
        # RFC 6886 s3.1
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
        # RFC 6886 s3.1
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
        # RFC 6886 s3.3
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
