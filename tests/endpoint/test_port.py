"""
Tests for L{MappedListeningPort}: the public address and the waits for it,
observers, stopping within the deadline, listening again, and a gateway that
is missing, refuses, restarts or changes its address.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address as Address

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.errors import NoGatewayError, NotAuthorizedError
from twisted_natpmp.interfaces import Probe
from twisted_natpmp.service import MappingState
from twisted_natpmp.service.policy import (
    GATEWAY_CHECK_INTERVAL,
    HEALTH_INTERVAL,
    MAX_HOLD_OFF,
    STOP_DEADLINE,
)

from ._helpers import EXTERNAL, EndpointMixin, Recorder

TCP8080 = (Transport.TCP, 8080)


def public(port: int = 8080, address: str = EXTERNAL) -> IPv4Address:
    return IPv4Address("TCP", address, port)


def warnings(events: Sequence[LogEvent]) -> list[LogEvent]:
    """
    The events at warn or above, in every namespace (the keeper's, the
    gateway watch's and the endpoint's alike).
    """
    return [e for e in events if e["log_level"] >= LogLevel.warn]


class WhenMappedTests(EndpointMixin, SynchronousTestCase):
    def test_firesAtTheGrant(self) -> None:
        """
        C{whenMapped()} fires with the public address on the reactor's turn
        after the grant; L{mappedAddress} is set at once.
        """
        port = self.listening()
        d = port.whenMapped()
        self.grant(18080)
        self.assertEqual(port.mappedAddress, public(18080))
        self.assertNoResult(d)
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(d), public(18080))
        self.assertEqual(self.successResultOf(port.whenMapped()), public(18080))

    def test_timeout(self) -> None:
        port = self.listening()
        d = port.whenMapped(timeout=4)
        self.reactor.advance(3.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, TimeoutError)
        self.assertEqual(
            failure.getErrorMessage(), "tcp port 8080 was not mapped within 4 s"
        )

    def test_badTimeout(self) -> None:
        """
        A negative or not finite timeout is refused at once, named, and
        nothing waits.
        """
        port = self.listening()
        for timeout in (-1.0, float("nan"), float("inf")):
            with self.subTest(timeout=timeout):
                error = self.assertRaises(ValueError, port.whenMapped, timeout)
                self.assertIn(f"timeout {timeout!r}", str(error))
        self.grant()
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(port.whenMapped(0)), public())

    def test_timeoutSaysWhy(self) -> None:
        port = self.listening(backoff=lambda failures: 100.0)
        d = port.whenMapped(timeout=4)
        self.mapper.pending("addMapping")[0].fail(NotAuthorizedError(2))
        self.reactor.advance(4)
        failure = self.failureResultOf(d, TimeoutError)
        self.assertIn("not authorized", failure.getErrorMessage())

    def test_noTimeoutUntilStopped(self) -> None:
        """
        Without a timeout it waits until the port stops, then fails with
        L{CancelledError}; a port stopped fails a new wait at once.
        """
        port = self.listening()
        d = port.whenMapped(timeout=None)
        self.reactor.advance(3600)
        self.assertNoResult(d)
        port.stopListening()
        self.failureResultOf(d, CancelledError)
        self.reactor.advance(STOP_DEADLINE)
        self.failureResultOf(port.whenMapped(), CancelledError)

    def test_cancelled(self) -> None:
        """
        A wait the caller cancels is forgotten: its timer goes too.
        """
        port = self.listening()
        d = port.whenMapped(timeout=4)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if c.getTime() == 4], []
        )
        self.grant()
        self.reactor.advance(0)


class ObserverTests(EndpointMixin, SynchronousTestCase):
    def test_hearsEveryChange(self) -> None:
        """
        Observers hear each state on the reactor's turn after it: the
        grant, a renewal that moved the port, the removal when stopped.
        """
        port = self.listening(lifetime=100)
        recorder = Recorder()
        port.addObserver(recorder)
        self.grant()
        self.reactor.advance(0)
        self.assertEqual(
            [(s.externalPort, s.removed) for s in recorder.states], [(8080, False)]
        )
        self.reactor.advance(50)
        [renewal] = self.mapper.pending("addMapping")
        renewal.grant(9090)
        self.assertEqual(port.mappedAddress, public(9090))
        self.mapper.autoAnswer = True
        port.stopListening()
        self.reactor.advance(0)
        self.assertEqual(
            [(s.externalPort, s.removed) for s in recorder.states],
            [(8080, False), (9090, False), (None, True)],
        )
        self.assertIsNone(port.mappedAddress)
        port.removeObserver(recorder)

    def test_mayStopThePort(self) -> None:
        """
        An observer may stop the port from its call (it is not called from
        within the keeper), and one that fails does not keep the others
        from hearing.
        """
        port = self.listening()
        stopped: list[object] = []

        def fail(state: MappingState) -> None:
            if state.mapped:
                raise RuntimeError("observer bug")

        def stop(state: MappingState) -> None:
            if state.mapped:
                port.stopListening().addCallback(stopped.append)

        port.addObserver(Recorder(fail))
        port.addObserver(Recorder(stop))
        self.mapper.autoAnswer = True
        self.grant()
        with capturedLogs() as events:
            self.reactor.advance(0)
        self.assertEqual(stopped, [None])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(
            [e["log_format"] for e in events if "log_failure" in e],
            ["observer {observer} failed"],
        )


class StopTests(EndpointMixin, SynchronousTestCase):
    def test_deletes(self) -> None:
        """
        C{stopListening()} deletes the mapping, and fires once the gateway
        confirmed it; asked again meanwhile, it fires then too.
        """
        port = self.listening()
        self.grant()
        d = port.stopListening()
        again = port.stopListening()
        [deletion] = self.mapper.pending("deleteMappings")
        self.assertEqual(deletion.arguments["keys"], [TCP8080])
        self.assertNoResult(d)
        deletion.succeed({TCP8080: None})
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.successResultOf(again))
        self.assertIsNone(self.successResultOf(port.stopListening()))

    def test_silentGatewayDoesNotHoldItUp(self) -> None:
        """
        A gateway that never answers the deletion delays the stop by the
        deadline, no more.
        """
        port = self.listening()
        self.grant()
        d = port.stopListening()
        self.reactor.advance(STOP_DEADLINE - 0.1)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.assertIsNone(self.successResultOf(d))

    def test_beforeShutdown(self) -> None:
        """
        When the reactor shuts down, the port stops first, deleting the
        mapping (the reactor waits for the L{Deferred}).
        """
        port = self.listening()
        self.grant()
        [(trigger, args, kwargs)] = self.reactor.triggers["before"]["shutdown"]
        d = trigger(*args, **kwargs)
        [deletion] = self.mapper.pending("deleteMappings")
        self.assertEqual(deletion.arguments["keys"], [TCP8080])
        deletion.succeed({TCP8080: None})
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(port.mappedAddress)

    def test_listensAgain(self) -> None:
        """
        C{startListening()} after a stop maps the port again, with a new
        mapper; while listening it does nothing.
        """
        port = self.listening()
        self.autoAnswer = True
        port.startListening()
        self.assertEqual(len(self.mappers), 1)
        self.mapper.autoAnswer = True
        self.successResultOf(port.stopListening())
        port.startListening()
        self.assertEqual(len(self.mappers), 2)
        self.assertEqual(port.mappedAddress, public())
        self.assertIn("-> 192.0.2.1:8080 (listening)", repr(port))


class GatewayTests(EndpointMixin, SynchronousTestCase):
    """
    Whatever the gateway does, the port listens; the mapping is retried as
    the mapper service retries it.
    """

    def test_noGateway(self) -> None:
        """
        With no gateway the port listens, says so once, and is mapped once
        a default gateway appears.
        """
        gateways: list[Address] = []

        def discover() -> Address:
            if not gateways:
                raise NoGatewayError("no default route")
            return gateways[0]

        self.autoAnswer = True
        with capturedLogs() as events:
            port = self.listening(gateway=None, discoverGateway=discover)
            self.reactor.advance(GATEWAY_CHECK_INTERVAL)
            self.reactor.advance(0)
        [warning] = warnings(events)
        self.assertIn("no default route", formatEvent(warning))
        [line] = [
            e for e in events if e.get("log_namespace") == "twisted_natpmp.endpoint"
        ]
        self.assertEqual(line["error"], "no default route")
        self.assertEqual(port.getHost().port, 8080)
        self.assertIsNone(port.mappedAddress)
        gateways.append(Address("10.0.0.254"))
        self.reactor.advance(GATEWAY_CHECK_INTERVAL)
        self.assertEqual(self.mapper.gateway, Address("10.0.0.254"))
        self.assertEqual(port.mappedAddress, public())

    def refuseFor(self, seconds: float) -> None:
        """
        For C{seconds}, answer the gateway's probes (it is there) and
        refuse every mapping request with NAT-PMP's result 2.
        """
        for _ in range(int(seconds)):
            for probe in self.mapper.pending("probe"):
                probe.succeed(Probe(self.mapper.protocolName, 1, self.mapper.address))
            for request in self.mapper.pending("addMapping"):
                request.fail(NotAuthorizedError(2))
            self.reactor.advance(1)

    def test_refused(self) -> None:
        """
        A gateway that refuses: the port listens, the request is retried
        after the backoff, and the refusal is one warning in all, however
        long it lasts (each retry's line is at info).
        """
        with capturedLogs() as events:
            port = self.listening(backoff=lambda failures: 10.0 * (failures + 1))
            self.refuseFor(10)
            self.mapper.pending("addMapping")[0].fail(NotAuthorizedError(2))
            self.reactor.advance(19.9)
            self.assertEqual(self.mapper.pending("addMapping"), [])
            self.reactor.advance(0.1)
            self.assertEqual(len(self.mapper.pending("addMapping")), 1)
            self.refuseFor(2 * 3600)
        [warning] = warnings(events)
        self.assertIn("not authorized", formatEvent(warning))
        self.assertGreater(
            len(
                [
                    e
                    for e in events
                    if "could not map" in e.get("log_format", "")
                    and e["log_level"] == LogLevel.info
                ]
            ),
            10,
        )
        self.assertIsNone(port.mappedAddress)
        while not self.mapper.pending("addMapping"):
            self.reactor.advance(1)
        self.grant()
        self.assertEqual(port.mappedAddress, public())

    def test_refusedAgainAfterAGrant(self) -> None:
        """
        A grant ends the repetition: the gateway refusing again later (the
        re-map after it lost its state) is warned about again, once.
        """
        port = self.listening(backoff=lambda failures: 10.0)
        with capturedLogs() as events:
            self.refuseFor(600)
            while not self.mapper.pending("addMapping"):
                self.reactor.advance(1)
            self.grant()
            self.assertEqual(port.mappedAddress, public())
            self.mapper.loseState()
            self.refuseFor(600)
        self.assertEqual(
            ["not authorized" in formatEvent(e) for e in warnings(events)],
            [True, True],
        )

    def test_restart(self) -> None:
        """
        A gateway seen to have lost its state is asked again after the
        RFC 6886 s3.7 hold-off; a new port granted is the new public side.
        """
        port = self.listening()
        self.grant()
        self.mapper.loseState()
        self.reactor.advance(MAX_HOLD_OFF)
        for probe in self.mapper.pending("probe"):
            probe.succeed(Probe(self.mapper.protocolName, 1, self.mapper.address))
        [request] = self.mapper.pending("addMapping")
        self.assertEqual(request.arguments["externalPort"], 8080)
        request.grant(8081)
        self.assertEqual(port.mappedAddress, public(8081))

    def test_secondNAT(self) -> None:
        """
        A private external address is the public side all the same, and
        the log line says that a second NAT stands in the way.
        """
        port = self.listening()
        self.mapper.address = Address("100.64.0.7")
        with capturedLogs() as events:
            self.grant()
        [line] = [
            formatEvent(e)
            for e in events
            if e.get("log_namespace") == "twisted_natpmp.endpoint"
        ]
        self.assertIn("100.64.0.7:8080", line)
        self.assertIn("a second NAT stands between it and the Internet", line)
        self.assertEqual(port.mappedAddress, public(address="100.64.0.7"))

    def test_newAddress(self) -> None:
        """
        The gateway's new external address (seen by the health check) is
        the new public side.
        """
        port = self.listening()
        self.grant()
        self.reactor.advance(HEALTH_INTERVAL)
        [probe] = self.mapper.pending("probe")
        probe.succeed(Probe(self.mapper.protocolName, 1060, Address("192.0.2.99")))
        self.assertEqual(port.mappedAddress, public(address="192.0.2.99"))
