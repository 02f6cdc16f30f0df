"""
Tests for L{twisted_natpmp.natpmp.client}: requests, retransmissions (RFC 6886
s3.1) and the queue, on a L{Clock} and the in-memory UDP network against a
scripted gateway.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp._types import Mapping
from twisted_natpmp.interfaces import IPortMapper
from twisted_natpmp.natpmp._wire import (
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
    decodeRequest,
)
from twisted_natpmp.natpmp.client import (
    RETRANSMIT_TIMEOUTS,
    NATPMPClient,
)
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST

from ._client import ClientTestMixin


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
