"""
What gateways grant, error replies, epochs on the monotonic clock,
end to end (announcements that retry:
L{tests.service.natpmp.test_announceretry}).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.logger import capturedLogs, eventAsJSON
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.interfaces import IPortMapper
from twisted_natpmp.natpmp._wire import (
    ExternalAddressResponse,
    MapResponse,
    Protocol,
)
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.service import (
    MappingDeclaration,
    PortMapperService,
)

from ._support import (
    EXTERNAL,
    GATEWAY,
    HOST,
    NEIGHBOUR,
    OTHER_EXTERNAL,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
    pcpAnnounce,
    texts,
)


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
        # RFC 6886 s3.3
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
        # RFC 6886 s3.3
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
        # RFC 6886 s3.3
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


class AuditTests(ServiceTestMixin, SynchronousTestCase):
    def test_errorReplyAddressIgnored(self) -> None:
        """
        RFC 6886 s3.2: the address in an external-address response with a
        non-zero result is to be ignored, solicited or announced.
        """
        # RFC 6886 s3.2
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
        # RFC 6886 s3.6
        monotonic = [0.0]
        reactor = self.network.host(HOST)
        service = PortMapperService(
            reactor,
            [UDP5000],
            gateway=GATEWAY,
            monotonic=lambda: monotonic[0],
            healthInterval=10**6,
            nonces=MemoryNonceStore(),
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
        # RFC 6887 s8.5, RFC 6886 s3.6
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
