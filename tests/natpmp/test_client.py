"""
Tests for L{twisted_natpmp.natpmp.client}: on a L{Clock} and the in-memory UDP
network against a scripted gateway, and once over real loopback UDP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel, capturedLogs, eventAsJSON, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_natpmp import errors
from twisted_natpmp._types import Mapping
from twisted_natpmp.interfaces import IPortMapper
from twisted_natpmp.natpmp._wire import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
    decodeRequest,
)
from twisted_natpmp.natpmp.client import (
    DELETION_TIMEOUTS,
    RETRANSMIT_TIMEOUTS,
    STATE_LOSS_INTERVAL,
    NATPMPClient,
    listenClient,
)
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST, ScriptedGateway
from twisted_natpmp.testing._udp import MemoryUDPNetwork


class ClientTestMixin:
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )

    def sendTimes(self) -> list[float]:
        return [d.time for d in self.network.log if d.destination == (GATEWAY, 5351)]


class BasicTests(ClientTestMixin, SynchronousTestCase):
    def test_interface(self) -> None:
        from zope.interface.verify import verifyObject

        self.assertTrue(verifyObject(IPortMapper, self.client))
        self.assertEqual(self.client.gateway, IPv4Address(GATEWAY))

    def test_externalAddress(self) -> None:
        # RFC 6886 s3.2: request opcode 0 is two bytes; reply carries the address.
        d = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(d), EXTERNAL)
        self.assertEqual(self.network.log[0].data, b"\x00\x00")
        self.assertEqual(self.client.lastExternalAddress, EXTERNAL)

    def test_errorReplyAddressIgnored(self) -> None:
        # RFC 6886 s3.2: with a non-zero result code the external address
        # field MUST be ignored: the call fails, and the address learnt
        # before stays.
        self.successResultOf(self.flushed(self.client.externalAddress()))
        self.gateway.reply = lambda r: [
            ExternalAddressResponse(3, 100, IPv4Address("198.51.100.9")).encode()
        ]
        d = self.flushed(self.client.externalAddress())
        self.failureResultOf(d, errors.NetworkFailureError)
        self.assertEqual(self.client.lastExternalAddress, EXTERNAL)
        self.gateway.reply = self.gateway.answer
        mapping = self.successResultOf(
            self.flushed(self.client.addMapping(Protocol.TCP, 80))
        )
        self.assertEqual(mapping.externalAddress, EXTERNAL)

    def flushed(self, d: Deferred[Any]) -> Deferred[Any]:
        self.network.flush()
        return d

    def test_addMapping(self) -> None:
        # RFC 6886 s3.3: the suggested external port defaults to the internal
        # port (some routers fail on 0); the result is what was granted.
        self.client.externalAddress()
        d = self.client.addMapping(Protocol.TCP, 8080)
        self.network.flush()
        self.assertEqual(
            self.successResultOf(d),
            Mapping(Protocol.TCP, 8080, 8080, 7200, 100, EXTERNAL, renewAfter=3600.0),
        )
        self.assertEqual(
            self.gateway.requests[-1][0], MapRequest(Protocol.TCP, 8080, 8080, 7200)
        )

    def test_suggestedExternalPort(self) -> None:
        d = self.client.addMapping(Protocol.UDP, 8080, 9090, lifetime=60)
        self.network.flush()
        self.assertEqual(self.successResultOf(d).externalPort, 9090)
        self.assertEqual(
            self.gateway.requests[-1][0], MapRequest(Protocol.UDP, 8080, 9090, 60)
        )

    def test_renewAfterHalfTheShorterLifetime(self) -> None:
        # RFC 6886 s3.3: renew at half the lifetime granted, or half the one
        # asked for if the gateway granted more.
        self.gateway.granted = 100
        shorter = self.client.addMapping(Protocol.UDP, 8080, lifetime=600)
        self.network.flush()
        self.gateway.granted = 900
        longer = self.client.addMapping(Protocol.UDP, 8081, lifetime=600)
        self.network.flush()
        self.assertEqual(self.successResultOf(shorter).renewAfter, 50.0)
        granted = self.successResultOf(longer)
        self.assertEqual((granted.lifetime, granted.renewAfter), (900, 300.0))

    def test_grantedLifetime(self) -> None:
        # RFC 6886 s3.3: the gateway may shorten the lifetime; report what it
        # granted (ProtonVPN grants 60 s whatever is asked).
        self.gateway.granted = 60
        d = self.client.addMapping(Protocol.TCP, 8080, lifetime=7200)
        self.network.flush()
        self.assertEqual(self.successResultOf(d).lifetime, 60)

    def test_lifetimeZeroRefused(self) -> None:
        # Deleting is its own call; addMapping refuses lifetime 0.
        self.failureResultOf(
            self.client.addMapping(Protocol.TCP, 80, lifetime=0), ValueError
        )
        self.failureResultOf(self.client.addMapping(Protocol.TCP, 0), ValueError)
        self.failureResultOf(self.client.addMapping(Protocol.TCP, 70000), ValueError)
        self.failureResultOf(self.client.deleteMapping(Protocol.TCP, 0), ValueError)
        self.assertEqual(self.network.log, [])

    def test_deleteMapping(self) -> None:
        # RFC 6886 s3.4: delete is lifetime 0 with suggested external port 0.
        d = self.client.deleteMapping(Protocol.TCP, 8080)
        self.network.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            self.gateway.requests[-1][0], MapRequest(Protocol.TCP, 8080, 0, 0)
        )

    def test_deleteAll(self) -> None:
        # RFC 6886 s3.4: internal port 0, external port 0, lifetime 0.
        d = self.client.deleteAllMappings(Protocol.UDP)
        self.network.flush()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            self.network.log[0].data, bytes.fromhex("000100000000000000000000")
        )

    def test_unusableSuccess(self) -> None:
        # RFC 6886 s3.3: a success reply to a mapping request grants an
        # external port and a lifetime; one without either is invalid and
        # fails the request at once (lifetime 0 used to be ignored, and the
        # request waited 127.75 s).
        for port, external, lifetime in [(80, 0, 7200), (81, 81, 0)]:
            reply = MapResponse(Protocol.TCP, 0, 1, port, external, lifetime)
            self.gateway.reply = lambda r, reply=reply: [reply.encode()]  # type: ignore[misc]
            d = self.client.addMapping(Protocol.TCP, port)
            self.network.flush()
            self.failureResultOf(d, errors.InvalidResponseError)
        self.assertEqual(self.sendTimes(), [0, 0])


class RetransmissionTests(ClientTestMixin, SynchronousTestCase):
    def test_schedule(self) -> None:
        # RFC 6886 s3.1: 250 ms, doubling, 9 attempts, then give up at about
        # 128 s with a distinct timeout error.
        self.gateway.reply = lambda r: []
        d = self.client.externalAddress()
        self.network.flush()
        for wait in (0.25, 0.5, 1, 2, 4, 8, 16, 32):
            self.clock.advance(wait)
        self.assertNoResult(d)
        self.clock.advance(64)
        self.assertEqual(
            self.sendTimes(),
            [0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75, 63.75],
        )
        self.assertEqual(RETRANSMIT_TIMEOUTS, (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
        failure = self.failureResultOf(d, errors.NoResponseError)
        self.assertEqual(failure.value.attempts, 9)
        self.assertEqual(failure.value.seconds, 127.75)
        self.assertIn("no response from gateway 10.0.0.1", str(failure.value))

    def test_exactTimes(self) -> None:
        # RFC 6886 s3.1: nothing is sent early, and nothing fails early.
        self.gateway.reply = lambda r: []
        d = self.client.externalAddress()
        self.network.flush()
        self.clock.advance(0.25 - 2**-10)
        self.assertEqual(len(self.sendTimes()), 1)
        self.clock.advance(2**-10)
        self.assertEqual(len(self.sendTimes()), 2)
        for wait in (0.5, 1, 2, 4, 8, 16, 32):
            self.clock.advance(wait)
        self.assertEqual(len(self.sendTimes()), 9)
        self.clock.advance(64 - 2**-10)
        self.assertNoResult(d)
        self.clock.advance(2**-10)
        self.failureResultOf(d, errors.NoResponseError)

    def test_answerStopsResends(self) -> None:
        lost = [True]

        def dropFirst(datagram: Any) -> bool:
            if datagram.destination == (GATEWAY, 5351) and lost:
                return bool(lost.pop())
            return False

        self.network.drop = dropFirst
        d = self.client.externalAddress()
        self.clock.advance(0.25)
        self.assertEqual(self.successResultOf(d), EXTERNAL)
        self.clock.advance(200)
        self.assertEqual(self.sendTimes(), [0, 0.25])

    def test_retryObserver(self) -> None:
        # Each retransmission (RFC 6886 s3.1) is told to retry observers:
        # what is asked, the attempt now sent, the seconds since the first.
        self.gateway.reply = lambda r: []
        heard: list[tuple[str, int, float]] = []

        def observer(*args: Any) -> None:
            heard.append(args)

        self.client.addRetryObserver(observer)
        d = self.client.addMapping(Protocol.TCP, 80, timeouts=(0.25, 0.5, 1))
        self.clock.advance(0.25)
        self.clock.advance(0.5)
        self.assertEqual(
            heard,
            [
                ("the TCP mapping request for port 80", 2, 0.25),
                ("the TCP mapping request for port 80", 3, 0.75),
            ],
        )
        self.client.removeRetryObserver(observer)
        self.clock.advance(1)
        self.assertEqual(len(heard), 2)
        self.failureResultOf(d, errors.NoResponseError)

    def test_customSchedule(self) -> None:
        self.gateway.reply = lambda r: []
        client = NATPMPClient(self.clock, GATEWAY, timeouts=(1, 1))
        client.listen(self.network.host("10.0.0.3"))
        d = client.deleteMapping(Protocol.TCP, 80, timeouts=(0.5,))
        self.clock.advance(0.5)
        self.failureResultOf(d, errors.NoResponseError)
        asked = client.externalAddress()
        self.clock.advance(1)
        self.assertNoResult(asked)
        self.clock.advance(1)
        self.failureResultOf(asked, errors.NoResponseError)
        self.failureResultOf(client.externalAddress(timeouts=()), ValueError)

    def test_cancelStopsResends(self) -> None:
        # Cancelling a request stops its retransmissions.
        self.gateway.reply = lambda r: []
        d = self.client.externalAddress()
        self.clock.advance(0.25)
        self.clock.advance(0.125)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(200)
        self.assertEqual(self.sendTimes(), [0, 0.25])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class QueueTests(ClientTestMixin, SynchronousTestCase):
    def test_oneAtATime(self) -> None:
        # RFC 6886 s3.1, s3.7: requests are queued and sent one at a time.
        held: list[Request] = []
        self.gateway.reply = lambda r: held.append(r) or []  # type: ignore[func-returns-value]
        results = [
            self.client.addMapping(Protocol.TCP, port) for port in (1000, 1001, 1002)
        ]
        self.network.flush()
        self.assertEqual(len(held), 1)
        self.gateway.reply = self.gateway.answer
        self.clock.advance(0.25)
        self.assertEqual(
            [r.internalPort for r, _ in self.gateway.requests],  # type: ignore[union-attr]
            [1000, 1000, 1001, 1002],
        )
        self.assertEqual(
            [self.successResultOf(d).internalPort for d in results], [1000, 1001, 1002]
        )

    def test_cancelQueued(self) -> None:
        self.gateway.reply = lambda r: []
        first = self.client.addMapping(Protocol.TCP, 1000)
        second = self.client.addMapping(Protocol.TCP, 1001)
        third = self.client.addMapping(Protocol.TCP, 1002)
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.gateway.reply = self.gateway.answer
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.network.flush()
        self.assertEqual(self.successResultOf(third).internalPort, 1002)
        sent = [decodeRequest(d.data) for d in self.network.log if d.source[0] == HOST]
        self.assertNotIn(1001, [getattr(r, "internalPort", None) for r in sent])

    def test_failureMovesOn(self) -> None:
        self.gateway.reply = lambda r: []
        first = self.client.externalAddress(timeouts=(1,))
        second = self.client.externalAddress()
        self.gateway.reply = self.gateway.answer
        self.clock.advance(1)
        self.failureResultOf(first, errors.NoResponseError)
        self.assertEqual(self.successResultOf(second), EXTERNAL)

    def test_stop(self) -> None:
        self.gateway.reply = lambda r: []
        pending = [self.client.externalAddress(), self.client.externalAddress()]
        self.network.flush()
        self.assertIsNone(self.successResultOf(self.client.stop()))
        for d in pending:
            self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(self.client.externalAddress(), errors.NATPMPError)

    def test_cancelPendingSendsNothingMore(self) -> None:
        # Cancelling everything at stop must not send the queued requests:
        # cancelling the one in flight used to send the next.
        self.gateway.reply = lambda r: []
        pending = [self.client.addMapping(Protocol.TCP, p) for p in (1, 2, 3)]
        self.network.flush()
        self.client.cancelPending()
        for d in pending:
            self.failureResultOf(d, CancelledError)
        self.clock.advance(200)
        self.assertEqual(self.sendTimes(), [0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # The client stays usable.
        self.gateway.reply = self.gateway.answer
        asked = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(asked), EXTERNAL)

    def test_stopSendsNothingMore(self) -> None:
        # stop cancels every queued and in-flight request, batches too, and
        # nothing goes out after it.
        self.gateway.reply = lambda r: []
        queued = [
            self.client.externalAddress(),
            self.client.addMapping(Protocol.TCP, 5),
        ]
        batch = self.client.deleteMappings([(Protocol.UDP, 7)])
        self.network.flush()
        sent = len(self.network.log)
        self.successResultOf(self.client.stop())
        for d in queued:
            self.failureResultOf(d, CancelledError)
        self.successResultOf(batch)[(Protocol.UDP, 7)].trap(CancelledError)  # type: ignore[union-attr]
        self.clock.advance(200)
        self.assertEqual(len(self.network.log), sent)


class DeleteMappingsTests(SynchronousTestCase):
    """
    L{NATPMPClient.deleteMappings}: the deletions of a stopping client, sent
    together (RFC 6886 s3.4), each resent until answered on the s3.1
    doubling schedule, cut short.  The network takes
    300 ms each way: a 600 ms round trip.
    """

    keys = [(Protocol.TCP, port) for port in range(1000, 1010)] + [
        (Protocol.UDP, port) for port in range(1000, 1010)
    ]

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork(delay=0.3)
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )

    def advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when}, stopping at every call due on the way (a
        single long step would delay the replies its calls send).
        """
        while self.clock.seconds() < when:
            due = min((c.getTime() for c in self.clock.getDelayedCalls()), default=when)
            self.clock.advance(max(0.0, min(due, when) - self.clock.seconds()))
        self.network.flush()

    def sent(self) -> list[tuple[float, Request]]:
        return [
            (d.time, decodeRequest(d.data))
            for d in self.network.log
            if d.destination == (GATEWAY, 5351)
        ]

    def test_sentTogether(self) -> None:
        # Twenty deletions over a 600 ms round trip are all sent at once
        # and all confirmed after one round trip; unanswered at 0.25 s, each
        # was resent then (RFC 6886 s3.1), and not at 0.75 s.
        d = self.client.deleteMappings(self.keys)
        self.assertEqual(
            self.sent(),
            [(0, MapRequest(protocol, port, 0, 0)) for protocol, port in self.keys],
        )
        self.advanceTo(0.59)
        self.assertNoResult(d)
        self.advanceTo(0.6)
        self.assertEqual(self.successResultOf(d), dict.fromkeys(self.keys))
        self.advanceTo(5)
        self.assertEqual(
            self.sent(),
            [
                (t, MapRequest(protocol, port, 0, 0))
                for t in (0, 0.25)
                for protocol, port in self.keys
            ],
        )
        # The replies to the second copies answer nothing: counted, quietly.
        self.assertEqual(self.client.exchange.unanswered.total, 20)
        self.client.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resentOnDoublingSchedule(self) -> None:
        # RFC 6886 s3.1, s3.4: a deletion is retransmitted like any request
        # (250 ms, doubling), cut short within a stop deadline: sent at 0,
        # 0.25, 0.75, 1.75 and 3.75 s while unanswered, never once answered.
        self.network.delay = 0.0
        lost = dict(zip(range(1000, 1010), [0, 1, 2, 3, 4, 5, 0, 1, 2, 5], strict=True))
        copies: dict[bytes, int] = {}

        def drop(datagram: Any) -> bool:
            if datagram.destination != (GATEWAY, 5351):
                return False
            copies[datagram.data] = n = copies.get(datagram.data, 0) + 1
            request = decodeRequest(datagram.data)
            assert isinstance(request, MapRequest)
            return request.protocol == Protocol.UDP and n <= lost[request.internalPort]

        self.network.drop = drop
        d = self.client.deleteMappings(self.keys)
        self.advanceTo(4.75)
        result = self.successResultOf(d)
        times: dict[int, list[float]] = {}
        for t, r in self.sent():
            assert isinstance(r, MapRequest)
            if r.protocol == Protocol.UDP:
                times.setdefault(r.internalPort, []).append(t)
            else:
                self.assertEqual(t, 0)
        schedule = [0, 0.25, 0.75, 1.75, 3.75]
        for port, n in lost.items():
            self.assertEqual(times[port], schedule[: n + 1], port)
            failure = result[(Protocol.UDP, port)]
            if n < 5:
                self.assertIsNone(failure)
            else:
                assert failure is not None
                error = failure.trap(errors.NoResponseError) and failure.value
                self.assertEqual(error.attempts, 5)  # type: ignore[union-attr]
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_defaultScheduleFitsStopDeadline(self) -> None:
        # RFC 6886 s3.1: 250 ms doubling, five sends, given up by 4.75 s,
        # within the 5 s a stopping service has.
        from twisted_natpmp.service import STOP_DEADLINE

        self.assertEqual(DELETION_TIMEOUTS, (0.25, 0.5, 1.0, 2.0, 1.0))
        self.assertLess(sum(DELETION_TIMEOUTS), STOP_DEADLINE)

    def test_noAnswer(self) -> None:
        # A silent gateway: each deletion sent twice, and the result comes
        # after the sum of the waits, never later, naming each failure.
        self.gateway.reply = lambda r: []
        d = self.client.deleteMappings(self.keys[:3], timeouts=(0.5, 1.5))
        self.advanceTo(1.99)
        self.assertNoResult(d)
        self.advanceTo(2)
        result = self.successResultOf(d)
        self.assertEqual(list(result), self.keys[:3])
        for failure in result.values():
            assert failure is not None
            error = failure.trap(errors.NoResponseError) and failure.value
            self.assertEqual(error.attempts, 2)  # type: ignore[union-attr]
        self.assertEqual([t for t, _ in self.sent()], [0, 0, 0, 0.5, 0.5, 0.5])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusalNamed(self) -> None:
        # RFC 6886 s3.4, s3.5: deleting a mapping made by hand is refused
        # with result code 2; that deletion's failure carries the code.
        def reply(request: Request) -> list[bytes]:
            if request.internalPort == 1003:  # type: ignore[union-attr]
                return [MapResponse(Protocol.TCP, 2, 1, 1003, 0, 0).encode()]
            return self.gateway.answer(request)

        self.gateway.reply = reply
        d = self.client.deleteMappings(self.keys[:5])
        self.advanceTo(0.6)
        result = self.successResultOf(d)
        failure = result.pop((Protocol.TCP, 1003))
        assert failure is not None
        self.assertEqual(
            failure.trap(errors.NotAuthorizedError), errors.NotAuthorizedError
        )
        assert isinstance(failure.value, errors.GatewayError)
        self.assertEqual(failure.value.resultCode, 2)
        self.assertEqual(result, dict.fromkeys(self.keys[:3] + self.keys[4:5]))

    def test_matchedByProtocolAndPort(self) -> None:
        # RFC 6886 s3.3, s3.4: a reply confirms the deletion of its own
        # protocol and internal port only; a mapping reply confirms none.
        def reply(request: Request) -> list[bytes]:
            return [
                MapResponse(Protocol.UDP, 0, 1, 80, 0, 0).encode(),
                MapResponse(Protocol.TCP, 0, 1, 81, 0, 0).encode(),
                MapResponse(Protocol.TCP, 0, 1, 80, 80, 7200).encode(),
            ]

        self.gateway.reply = reply
        d = self.client.deleteMappings([(Protocol.TCP, 80)], timeouts=(1,))
        self.advanceTo(1)
        self.successResultOf(d)[(Protocol.TCP, 80)].trap(errors.NoResponseError)  # type: ignore[union-attr]

    def test_besideTheQueue(self) -> None:
        # The batch does not wait behind a request in flight, and a reply
        # answers whichever request it matches.
        self.gateway.reply = lambda r: (
            [] if isinstance(r, ExternalAddressRequest) else self.gateway.answer(r)
        )
        address = self.client.externalAddress()
        d = self.client.deleteMappings(self.keys[:2])
        self.advanceTo(0.6)
        self.assertEqual(self.successResultOf(d), dict.fromkeys(self.keys[:2]))
        self.assertNoResult(address)
        address.cancel()
        self.failureResultOf(address, CancelledError)

    def test_cancel(self) -> None:
        self.gateway.reply = lambda r: []
        d = self.client.deleteMappings(self.keys[:2])
        d.cancel()
        for failure in self.successResultOf(d).values():
            assert failure is not None
            failure.trap(CancelledError)
        self.advanceTo(10)
        self.assertEqual([t for t, _ in self.sent()], [0, 0])

    def test_refusedByICMP(self) -> None:
        # RFC 6886 s3.1: ICMP port unreachable ends every deletion at once.
        client = listenClient(self.network.host("10.0.0.3"), "10.0.0.200")
        d = client.deleteMappings(self.keys[:2])
        self.advanceTo(0.6)
        for failure in self.successResultOf(d).values():
            assert failure is not None
            failure.trap(errors.NotSupportedError)

    def test_afterStop(self) -> None:
        self.successResultOf(self.client.stop())
        result = self.successResultOf(self.client.deleteMappings(self.keys[:1]))
        result[self.keys[0]].trap(errors.NATPMPError)  # type: ignore[union-attr]

    def test_badArguments(self) -> None:
        self.failureResultOf(
            self.client.deleteMappings([(Protocol.TCP, 0)]), ValueError
        )
        self.failureResultOf(
            self.client.deleteMappings(self.keys, timeouts=()), ValueError
        )
        self.assertEqual(self.network.log, [])
        self.assertEqual(self.successResultOf(self.client.deleteMappings([])), {})


class ResultCodeTests(ClientTestMixin, SynchronousTestCase):
    def resultFor(self, code: int) -> Any:
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, code, 1, 80, 0, 0).encode()
        ]
        d = self.client.addMapping(Protocol.TCP, 80)
        self.network.flush()
        return self.failureResultOf(d, errors.GatewayError).value

    def test_codes(self) -> None:
        # RFC 6886 s3.5: each non-zero result fails the request with its own
        # exception carrying the code and its meaning.
        for code, cls, meaning in [
            (1, errors.UnsupportedVersionError, "unsupported version"),
            (2, errors.NotAuthorizedError, "not authorized/refused"),
            (3, errors.NetworkFailureError, "network failure"),
            (4, errors.OutOfResourcesError, "out of resources"),
            (5, errors.UnsupportedOpcodeError, "unsupported opcode"),
        ]:
            error = self.resultFor(code)
            self.assertIsInstance(error, cls)
            self.assertEqual((error.resultCode, error.meaning), (code, meaning))
            self.assertIn(f"result code {code} ({meaning})", str(error))

    def test_unknownCode(self) -> None:
        # RFC 6886 s3.5: unknown result codes are fatal for that request.
        error = self.resultFor(99)
        self.assertIsInstance(error, errors.UnknownResultError)
        self.assertEqual(error.resultCode, 99)

    def test_unsupportedVersionForms(self) -> None:
        # RFC 6886 s3.5 and Errata 3618: the reply may carry opcode 0, 128 or
        # 128 plus the request's opcode.
        for opcode in (0, 128, 130):
            self.gateway.reply = lambda r, op=opcode: [ErrorResponse(op, 1, 5).encode()]  # type: ignore[misc]
            d = self.client.addMapping(Protocol.TCP, 80)
            self.network.flush()
            self.failureResultOf(d, errors.UnsupportedVersionError)
            d2 = self.client.externalAddress()
            self.network.flush()
            if opcode in (0, 128):
                self.failureResultOf(d2, errors.UnsupportedVersionError)
            else:
                self.assertNoResult(d2)
                d2.cancel()
                self.failureResultOf(d2, CancelledError)


class LiberalAcceptanceTests(ClientTestMixin, SynchronousTestCase):
    def test_trailingBytes(self) -> None:
        self.gateway.reply = lambda r: [
            ExternalAddressResponse(0, 1, EXTERNAL).encode() + b"\x00" * 8
        ]
        d = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(d), EXTERNAL)

    def test_mismatchedPort(self) -> None:
        # RFC 6886 s3.3: the reply must echo the internal port and the opcode
        # plus 128; old routers garbled ports, so others are not answers.
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, 0, 1, 81, 81, 60).encode(),
            MapResponse(Protocol.UDP, 0, 1, 80, 80, 60).encode(),
            ExternalAddressResponse(0, 1, EXTERNAL).encode(),
        ]
        d = self.client.addMapping(Protocol.TCP, 80, timeouts=(1,))
        self.network.flush()
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_malformedDropped(self) -> None:
        # Malformed packets are dropped and logged; the request goes on.
        self.gateway.reply = lambda r: [
            b"\x00",
            b"\x01\x80" + b"\x00" * 10,
            b"\x00\x00",
        ]
        with capturedLogs() as events:
            d = self.client.externalAddress(timeouts=(1,))
            self.network.flush()
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        details = [e["detail"] for e in events if "detail" in e]
        self.assertEqual(
            [d.split(" (")[0] for d in details],
            [
                "packet of 1 bytes is too short",
                "unsupported version 1",
                "response of 2 bytes is too short",
            ],
        )
        self.assertEqual(self.client.drops.reasons, {"malformed": 3})

    def test_duplicateAndLateReplies(self) -> None:
        # Duplicate and late replies are harmless (RFC 6886 s3.5: idempotent).
        self.gateway.reply = lambda r: [self.gateway.answer(r)[0]] * 2
        d = self.client.externalAddress()
        self.network.flush()
        self.assertEqual(self.successResultOf(d), EXTERNAL)
        late = ExternalAddressResponse(0, 100, EXTERNAL).encode()
        port = self.client.exchange.port
        assert port is not None
        source = port.getHost().port  # type: ignore[attr-defined]
        self.network.send((GATEWAY, 5351), (HOST, source), late)
        self.network.flush()
        mapped = self.client.addMapping(Protocol.TCP, 80)
        self.network.flush()
        self.assertEqual(self.successResultOf(mapped).externalPort, 80)


class SourceCheckTests(SynchronousTestCase):
    """
    RFC 6886 s3.1: only replies from the gateway's address and port 5351
    count; an explicit list admits other sources (CARP/VRRP pairs).
    """

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, extraSources=["10.0.0.5"]
        )
        self.port = self.client.exchange.port.getHost().port  # type: ignore[union-attr]

    def inject(self, source: tuple[str, int]) -> Deferred[IPv4Address]:
        self.gateway.reply = lambda r: []
        d = self.client.externalAddress(timeouts=(1,))
        self.network.flush()
        packet = ExternalAddressResponse(0, 1, EXTERNAL).encode()
        self.network.send(source, (HOST, self.port), packet)
        self.network.flush()
        return d

    def test_strangerIgnored(self) -> None:
        with capturedLogs() as events:
            d = self.inject(("10.0.0.9", 5351))
        self.assertNoResult(d)
        self.assertTrue(any(e.get("source") == "10.0.0.9:5351" for e in events))
        self.assertEqual(self.client.drops.reasons, {"not the gateway": 1})
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_wrongPortIgnored(self) -> None:
        d = self.inject((GATEWAY, 5350))
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_extraSourceAccepted(self) -> None:
        self.assertEqual(
            self.successResultOf(self.inject(("10.0.0.5", 5351))), EXTERNAL
        )

    def test_gatewayAccepted(self) -> None:
        self.assertEqual(self.successResultOf(self.inject((GATEWAY, 5351))), EXTERNAL)

    def test_strictByDefault(self) -> None:
        # Without extra sources the socket is connected to the gateway, so
        # nothing from elsewhere reaches it.
        client = listenClient(self.network.host("10.0.0.3"), GATEWAY)
        self.assertTrue(client.connectSocket)
        self.assertFalse(self.client.connectSocket)

    def test_refused(self) -> None:
        # RFC 6886 s3.1: ICMP port unreachable means no NAT-PMP there: stop.
        client = listenClient(self.network.host("10.0.0.3"), "10.0.0.200")
        d = client.externalAddress()
        self.network.flush()
        failure = self.failureResultOf(d, errors.NotSupportedError)
        self.assertEqual(failure.value.gateway, IPv4Address("10.0.0.200"))

    def test_unansweredAtInfo(self) -> None:
        # A well-formed reply from the gateway that answers nothing pending
        # (a late duplicate, normal under loss) is counted and said at info
        # level, never as a warning.
        reply = MapResponse(Protocol.UDP, 0, 5, 5000, 5000, 60).encode()
        with capturedLogs() as events:
            for _ in range(3):
                self.client.protocol.datagramReceived(reply, (GATEWAY, 5351))
            self.client.stop()
        self.assertEqual(self.client.exchange.unanswered.total, 3)
        levels = {e["log_level"] for e in events if "answers no pending" in str(e)}
        # Said at info (the first at once, then the summary), details at debug.
        self.assertEqual(levels, {LogLevel.info, LogLevel.debug})

    def test_floodLogsBounded(self) -> None:
        # 50,000 bad packets (malformed ones from the gateway, strays from
        # a thousand LAN hosts) are counted, and logged in aggregate: a
        # bounded number of short lines, not a hex dump each.
        strays = [(f"10.9.{n // 250}.{n % 250 + 1}", 5351) for n in range(1000)]
        received = self.client.protocol.datagramReceived
        with capturedLogs() as events:
            for _ in range(5):
                for n in range(10000):
                    if n % 2:
                        received(b"\x00\x81", (GATEWAY, 5351))
                    else:
                        received(b"\x00", strays[n % 1000])
                self.network.clock.advance(60)
            self.client.stop()
        self.assertEqual(self.client.drops.total, 50000)
        self.assertLess(len(events), 300)
        self.assertLess(sum(len(formatEvent(e)) for e in events), 40000)

    def test_nothingAfterStop(self) -> None:
        # A packet that reaches the port while it closes, after stop, is
        # ignored: no drop counted, no summary timer left behind.
        self.successResultOf(self.client.stop())
        self.client.protocol.datagramReceived(b"\x00", ("10.0.0.9", 5351))
        self.assertEqual(self.client.drops.total, 0)
        self.assertEqual(self.network.clock.getDelayedCalls(), [])

    def test_refusedDuringSend(self) -> None:
        # Twisted's UDP port calls connectionRefused from inside write when
        # the send itself meets ECONNREFUSED (an earlier ICMP port
        # unreachable, RFC 6886 s3.1): the requests fail, and none is left
        # with a retransmission timer.
        client = listenClient(self.network.host("10.0.0.3"), GATEWAY)
        assert client.protocol.transport is not None

        def refuse(packet: bytes, addr: object = None) -> None:
            client.protocol.connectionRefused()

        client.protocol.transport.write = refuse  # type: ignore[method-assign,assignment]
        queued = client.externalAddress()
        batch = client.deleteMappings([(Protocol.TCP, 80), (Protocol.UDP, 80)])
        self.failureResultOf(queued, errors.NotSupportedError)
        for failure in self.successResultOf(batch).values():
            assert failure is not None
            failure.trap(errors.NotSupportedError)
        self.assertEqual(self.network.clock.getDelayedCalls(), [])


class EpochTests(ClientTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.losses: list[None] = []
        self.client.addStateLossObserver(lambda: self.losses.append(None))

    def test_rebootDetected(self) -> None:
        # RFC 6886 s3.6: every reply feeds the epoch rule; a gateway whose
        # epoch fell behind has lost its state and observers hear of it.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.externalAddress()))
        self.clock.advance(10)
        self.gateway.epoch = 5008
        self.successResultOf(self.flushed(self.client.externalAddress()))
        self.assertEqual(self.losses, [])
        self.gateway.epoch = 2
        self.successResultOf(self.flushed(self.client.addMapping(Protocol.TCP, 80)))
        self.assertEqual(self.losses, [None])

    def test_errorRepliesCount(self) -> None:
        # RFC 6886 s3.6: the rule applies to every packet, errors included.
        self.gateway.epoch = 5000
        self.flushed(self.client.externalAddress())
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, 3, 0, 80, 0, 0).encode()
        ]
        self.failureResultOf(self.flushed(self.client.addMapping(Protocol.TCP, 80)))
        self.assertEqual(self.losses, [None])

    def test_announcementEpoch(self) -> None:
        # RFC 6886 s3.2.1: the rule runs on announcements too.
        self.assertFalse(self.client.noteEpoch(1000))
        self.clock.advance(100)
        self.assertFalse(self.client.noteEpoch(1100))
        self.assertTrue(self.client.noteEpoch(0))
        self.assertEqual(self.losses, [None])

    def test_stateLossWarningsAggregated(self) -> None:
        # Issue 10 item 12: a flood of forged packets with lower epochs is a
        # loss of state each time by the RFC 6886 s3.6 rule; every one is
        # told to the observers (s3.6), but the log warns of the first at
        # once and summarises the others once per interval.
        with capturedLogs() as events:
            for _ in range(50):
                self.client.noteEpoch(100000)
                self.assertTrue(self.client.noteEpoch(0))
                self.clock.advance(0.1)
            self.assertEqual(len(self.losses), 50)
            self.assertEqual(
                _warnings(events),
                [
                    "gateway 10.0.0.1 lost its mapping state (epoch 0); further"
                    " losses are summarised every 60 s"
                ],
            )
            self.clock.advance(STATE_LOSS_INTERVAL)
            self.assertEqual(
                _warnings(events)[1:],
                [
                    "gateway 10.0.0.1 lost its mapping state 49 more times in the"
                    " last 60 s (last epoch 0): it restarts often, or someone"
                    " forges its packets"
                ],
            )
            # A quiet interval ends the summaries; the next loss is told at
            # once again.
            self.clock.advance(STATE_LOSS_INTERVAL)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.client.noteEpoch(100000)
            self.client.noteEpoch(7)
            self.assertEqual(len(_warnings(events)), 3)
            self.assertIn("(epoch 7)", _warnings(events)[2])
            # What is untold when the client stops is said then.
            self.client.noteEpoch(100000)
            self.client.noteEpoch(0)
            self.client.stop()
            self.assertIn("1 more time in", _warnings(events)[3])
        self.assertEqual(len(self.losses), 52)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_observerFailureLogged(self) -> None:
        def broken() -> None:
            raise RuntimeError("observer broke")

        self.client.addStateLossObserver(broken)
        self.client.noteEpoch(1000)
        self.assertTrue(self.client.noteEpoch(0))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.client.removeStateLossObserver(broken)
        self.assertEqual(self.losses, [None])

    def test_monotonicClock(self) -> None:
        # RFC 6886 s3.6 judges elapsed local time; a wall clock stepped an
        # hour ahead by NTP at boot is no gateway reboot, so the judgement
        # runs on the monotonic clock, not the reactor's.
        monotonic = [0.0]
        client = listenClient(
            self.network.host("10.0.0.3"), GATEWAY, monotonic=lambda: monotonic[0]
        )
        client.addStateLossObserver(lambda: self.losses.append(None))
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(client.externalAddress()))
        self.clock.advance(3600)
        monotonic[0] += 1
        self.gateway.epoch = 5001
        self.successResultOf(self.flushed(client.externalAddress()))
        self.assertEqual(self.losses, [])
        # And the monotonic clock's own elapsed time counts.
        monotonic[0] += 100
        self.successResultOf(self.flushed(client.externalAddress()))
        self.assertEqual(self.losses, [None])

    def test_logFieldsSurviveJSON(self) -> None:
        # Log events carry strings and numbers, which jsonFileLogObserver
        # keeps, not IPv4Address or message objects, which it cannot.
        with capturedLogs() as events:
            self.gateway.epoch = 5000
            self.flushed(self.client.externalAddress())
            self.gateway.epoch = 2
            self.flushed(self.client.externalAddress())
            self.gateway.reply = lambda r: [b"\x00"]
            d = self.client.addMapping(Protocol.TCP, 80, timeouts=(1, 1))
            self.flushed(d)
            self.clock.advance(1)
            self.clock.advance(1)
            self.failureResultOf(d, errors.NoResponseError)
            self.client.protocol.connectionRefused()
            self.flushed(self.client.externalAddress())
        self.assertGreater(len(events), 4)
        for event in events:
            fields = {
                k: v
                for k, v in json.loads(eventAsJSON(event)).items()
                if not k.startswith("log_")
            }
            self.assertNotIn("unpersistable", json.dumps(fields), formatEvent(event))

    def flushed(self, d: Deferred[Any]) -> Deferred[Any]:
        self.network.flush()
        return d


class ResponderProtocol(ScriptedGateway):
    pass


class LoopbackTests(TestCase):
    """
    The client over real UDP on 127.0.0.1, against a scripted responder.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.responder = ResponderProtocol()
        port = cast(Any, reactor).listenUDP(0, self.responder, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = listenClient(
            self.reactor,
            "127.0.0.1",
            interface="127.0.0.1",
            gatewayPort=port.getHost().port,
        )
        self.addCleanup(self.client.stop)

    async def roundTrip(self) -> None:
        self.assertEqual(await self.client.externalAddress(), EXTERNAL)
        mapping = await self.client.addMapping(Protocol.UDP, 5000, lifetime=3600)
        self.assertEqual(
            (mapping.externalPort, mapping.lifetime, mapping.externalAddress),
            (5000, 3600, EXTERNAL),
        )
        await self.client.deleteMapping(Protocol.UDP, 5000)
        self.assertEqual(len(self.responder.requests), 3)

    def test_roundTrip(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.roundTrip())


class LoopbackRefusedTests(TestCase):
    """
    RFC 6886 s3.1: ICMP port unreachable (here: a closed loopback port)
    ends the request at once with L{errors.NotSupportedError}.
    """

    def test_refused(self) -> Deferred[None]:
        import socket

        from twisted.internet import reactor

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        closedPort = probe.getsockname()[1]
        probe.close()
        client = listenClient(
            reactor, "127.0.0.1", interface="127.0.0.1", gatewayPort=closedPort
        )
        self.addCleanup(client.stop)
        first = client.externalAddress()
        second = client.addMapping(Protocol.TCP, 80)
        d = self.assertFailure(first, errors.NotSupportedError)
        d.addCallback(lambda _: self.assertFailure(second, errors.NotSupportedError))
        return d.addCallback(lambda _: None)

    def test_usableAfterRefusal(self) -> Deferred[None]:
        """
        After a refusal the client binds a new port, so a gateway that starts
        answering later is reached.
        """
        from twisted.internet import reactor

        responder = ScriptedGateway()
        probe = cast(Any, reactor).listenUDP(
            0, DatagramProtocol(), interface="127.0.0.1"
        )
        gatewayPort = probe.getHost().port
        probe.stopListening()
        client = listenClient(
            reactor, "127.0.0.1", interface="127.0.0.1", gatewayPort=gatewayPort
        )
        self.addCleanup(client.stop)

        async def run() -> None:
            with self.assertRaises(errors.NotSupportedError):
                await client.externalAddress()
            port = cast(Any, reactor).listenUDP(
                gatewayPort, responder, interface="127.0.0.1"
            )
            self.addCleanup(port.stopListening)
            self.assertEqual(await client.externalAddress(), EXTERNAL)

        return Deferred.fromCoroutine(run())


class CrossedRepliesTests(SynchronousTestCase):
    """
    A reply that arrives late, after its request was answered by an earlier
    copy, must not answer the next request for the same port when that one
    is of the other kind (RFC 6886 s3.3, s3.4: a success grants a lifetime
    exactly when one was asked for).

    The network takes 3/16 s each way; the clock moves in steps of 1/64 s,
    so every time below is exact.
    """

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork(delay=3 / 16)
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(self.network.host(HOST), GATEWAY)

    def advanceTo(self, when: float) -> None:
        while self.clock.seconds() < when:
            self.clock.advance(1 / 64)

    def test_lateMapReplyDoesNotConfirmDelete(self) -> None:
        lost: list[bytes] = []

        def dropFirstDeletion(datagram: Any) -> bool:
            if datagram.data == MapRequest(Protocol.TCP, 80, 0, 0).encode():
                if not lost:
                    lost.append(datagram.data)
                    return True
            return False

        self.network.drop = dropFirstDeletion
        mapped = self.client.addMapping(Protocol.TCP, 80)
        # Sent at 0 and again at 0.25; the replies arrive at 0.375 and 0.625.
        self.advanceTo(0.375)
        self.assertEqual(self.successResultOf(mapped).externalPort, 80)
        self.advanceTo(0.5)
        deleted = self.client.deleteMapping(Protocol.TCP, 80)  # lost
        self.advanceTo(0.6875)  # the duplicate mapping reply came at 0.625
        self.assertNoResult(deleted)
        self.advanceTo(1.125)  # resent at 0.75, answered at 1.125
        self.assertIsNone(self.successResultOf(deleted))
        self.assertEqual(lost, [MapRequest(Protocol.TCP, 80, 0, 0).encode()])
        self.assertEqual(
            self.gateway.requests[-1][0], MapRequest(Protocol.TCP, 80, 0, 0)
        )

    def test_lateDeleteReplyDoesNotAnswerMap(self) -> None:
        deleted = self.client.deleteMapping(Protocol.TCP, 80)
        self.advanceTo(0.375)
        self.assertIsNone(self.successResultOf(deleted))
        self.advanceTo(0.5)
        mapped = self.client.addMapping(Protocol.TCP, 80)
        self.advanceTo(0.6875)  # the duplicate deletion reply came at 0.625
        self.assertNoResult(mapped)
        self.advanceTo(0.875)
        self.assertEqual(self.successResultOf(mapped).externalPort, 80)

    def test_errorsStillMatch(self) -> None:
        # RFC 6886 s3.5: an error reply has lifetime 0 whatever was asked.
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, 4, 1, 80, 0, 0).encode()
        ]
        d = self.client.addMapping(Protocol.TCP, 80)
        self.advanceTo(0.375)
        self.failureResultOf(d, errors.OutOfResourcesError)


def _warnings(events: Sequence[Any]) -> list[str]:
    """
    The text of the warnings among C{events}.
    """
    return [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]


class MessageTests(SynchronousTestCase):
    """
    What a person reads of a failure.
    """

    def test_noResponseSecondsRounded(self) -> None:
        """
        The time waited is said to the hundredth (a real clock's 1.75323 s
        reads 1.75 s), and whole seconds without decimals.
        """
        gateway = IPv4Address(GATEWAY)
        self.assertEqual(
            str(errors.NoResponseError(gateway, 4, 1.75323)),
            f"no response from gateway {gateway} after 4 attempt(s) in 1.75 s",
        )
        self.assertIn("in 5 s", str(errors.NoResponseError(gateway, 1, 5.0)))
