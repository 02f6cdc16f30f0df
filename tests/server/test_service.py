"""
Tests for L{twisted_natpmp.server.GatewayService}: expiry, logging,
starting and stopping, on an in-memory UDP network and a L{Clock}.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.server import (
    GatewayService,
    monotonicFor,
)

from ._helpers import (
    CLIENT,
    EXTERNAL,
    GATEWAY,
    TCP,
    UDP,
    GatewayTestsMixin,
    epochOf,
    mapRequest,
)


class ExpiryAndLoggingTests(GatewayTestsMixin, SynchronousTestCase):
    def test_expiresOnItsOwn(self) -> None:
        """
        A mapping not renewed is removed at the end of its lifetime, with no
        request needed to notice (RFC 6886 s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 100))
        self.ask(mapRequest(UDP, 6, 6000, 10))
        self.clock.advance(9.9)
        self.assertEqual(len(self.backend.forwards), 2)
        self.clock.advance(0.1)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        self.clock.advance(90)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(
            [e["externalPort"] for e in self.events("expired")], [6000, 5000]
        )

    def test_renewedNotExpired(self) -> None:
        """
        A renewed mapping outlives its first deadline (RFC 6886 s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 10))
        self.clock.advance(5)
        self.ask(mapRequest(UDP, 5, 5000, 10))
        self.clock.advance(5)
        self.assertEqual(len(self.backend.forwards), 1)
        self.clock.advance(5)
        self.assertEqual(self.backend.forwards, {})

    def test_wallClockSteps(self) -> None:
        """
        The epoch and expiry follow the monotonic clock, not the reactor's
        (wall-clock) time: setting the wall clock back neither lowers the
        epoch (RFC 6886 s3.6: clients would think the gateway lost its
        state) nor delays expiry, and setting it forward, even by more than
        every lifetime, expires nothing early (s3.3).
        """
        monotonic = Clock()
        monotonic.advance(500)
        self.startGateway(monotonic=monotonic)
        wall = self.clock
        monotonic.advance(100)
        wall.advance(100)
        self.ask(mapRequest(UDP, 5, 5000, 60))
        wall.rightNow -= 3600
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 100)
        wall.advance(10**6)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 100)
        monotonic.advance(59)
        wall.advance(59)
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 159)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        monotonic.advance(1)
        wall.advance(1)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(len(self.events("expired")), 1)

    def test_monotonicBesideRealReactor(self) -> None:
        """
        Beside a real reactor, whose C{seconds()} is the wall clock, time is
        judged by the system's monotonic clock; a fake clock is its own.
        """
        from twisted.internet import reactor

        chosen = monotonicFor(reactor)  # type: ignore[arg-type]
        before = time.monotonic()
        self.assertTrue(before <= chosen.seconds() <= time.monotonic())
        self.assertIs(monotonicFor(self.clock), self.clock)

    def test_logsEveryChange(self) -> None:
        """
        Every mapping created, renewed, deleted and expired is logged, with
        its client, ports and lifetime.
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 5, 5000, 10))
        self.ask(mapRequest(TCP, 5, 5000, 10))
        self.ask(mapRequest(TCP, 5, 0, 0))
        self.ask(mapRequest(TCP, 6, 6000, 10))
        self.clock.advance(10)
        changes = [
            (e["event"], e["protocol"], e["internalPort"], e["externalPort"])
            for e in self.logged
            if "event" in e
        ]
        self.assertEqual(
            changes,
            [
                ("created", "tcp", 5, 5000),
                ("renewed", "tcp", 5, 5000),
                ("deleted", "tcp", 5, 5000),
                ("created", "tcp", 6, 6000),
                ("expired", "tcp", 6, 6000),
            ],
        )
        self.assertEqual(self.events("created")[0]["client"], CLIENT)

    def test_dropsAndRefusalsAggregated(self) -> None:
        """
        A flood of junk and of refused requests from one host gives one
        warning at once for each, then one summary per interval, not a line
        per packet; mapping events are still logged one by one.
        """
        service = self.startGateway(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 1, 5001, 3600))
        for port in range(2, 502):
            self.ask(b"\x00\x81" + bytes(10))
            self.ask(mapRequest(UDP, port, 5000 + port, 3600))
        warnings = [e for e in self.logged if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            [(e["verb"], e["source"], e["reason"]) for e in warnings],
            [
                ("dropped", CLIENT, "a response, not a request"),
                (
                    "refused",
                    CLIENT,
                    "client at its limit of 1 mapping, answered result 4",
                ),
            ],
        )
        self.clock.advance(60)
        summaries = [e for e in self.logged if e["log_level"] == LogLevel.warn][2:]
        # Each summary counts the whole interval, the drop said at once too.
        self.assertEqual(sorted(e["count"] for e in summaries), [500, 500])
        self.assertEqual(len(self.events("created")), 1)
        self.clock.advance(60)
        service.stopService()
        for event in self.logged:
            self.assertNotIn("gateway answered", formatEvent(event))

    def test_jsonSafeFields(self) -> None:
        """
        Every field the gateway logs is a string or a number, so that a
        JSON log observer can write it.
        """
        service = self.startGateway(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 1, 5001, 10))
        self.ask(mapRequest(UDP, 1, 5001, 10))
        self.ask(mapRequest(UDP, 2, 5002, 10))
        self.ask(b"\x00\x81")
        self.ask(b"\x00\x00", "10.99.0.1")
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(20)
        service.stopService()
        self.assertGreater(len(self.logged), 5)
        for event in self.logged:
            for key, value in event.items():
                if not key.startswith("log_"):
                    self.assertIsInstance(value, (str, int, float), f"{key}={value!r}")

    def test_stopRemovesMappings(self) -> None:
        """
        Stopping the gateway removes its mappings from the backend (its
        state is lost, RFC 6886 s3.6), stops its timers and closes its
        ports.
        """
        service = self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 100))
        service.stopService()
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual([p for p in self.net.ports if p[0] == GATEWAY], [])
        self.assertEqual(self.net.multicastPorts, [])

    def test_stopSaysOneLine(self) -> None:
        """
        Stopping says in one line how many mappings it removed; no client
        deleted them, so none is logged as deleted (each is said at debug
        level as cleared).
        """
        service = self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 100))
        self.ask(mapRequest(TCP, 6, 6000, 100))
        service.stopService()
        self.assertEqual(self.events("deleted"), [])
        cleared = self.events("cleared")
        self.assertEqual(len(cleared), 2)
        self.assertEqual({e["log_level"] for e in cleared}, {LogLevel.debug})
        said = [
            formatEvent(e) for e in self.logged if "gateway stopped" in e["log_format"]
        ]
        self.assertEqual(said, ["gateway stopped: removed 2 mapping(s)"])

    def test_bindFailureReleasesPorts(self) -> None:
        """
        When one internal address cannot be bound, starting fails with that
        error and leaves nothing bound or scheduled.
        """
        host = self.net.host(GATEWAY)
        bind = host.listenMulticast

        def listenMulticast(port: int, protocol: Any, interface: str = "") -> Any:
            if interface == "10.88.0.1":
                raise CannotListenError(  # type: ignore[no-untyped-call]
                    interface, port, OSError("in use")
                )
            return bind(port, protocol, interface)

        self.patch(host, "listenMulticast", listenMulticast)
        service = GatewayService(host, [f"{GATEWAY}/24", "10.88.0.1/16"], EXTERNAL)
        self.assertRaises(CannotListenError, service.startService)
        self.assertFalse(service.running)
        self.assertEqual(self.net.multicastPorts, [])
        self.assertEqual(service.ports, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
