"""
Tests for the NAT-PMP client's deletions: the batch sent at stop (RFC 6886
s3.4) and late replies that cross a deletion.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
    decodeRequest,
)
from twisted_natpmp.natpmp.client import (
    DELETION_TIMEOUTS,
    listenClient,
)
from twisted_natpmp.testing._gateway import GATEWAY, HOST, ScriptedGateway
from twisted_natpmp.testing._udp import MemoryUDPNetwork


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
