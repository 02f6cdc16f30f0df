"""
Tests for L{twisted_natpmp.service.keeper}: every transition of the keeper of
one mapping, on a L{Clock}, against L{FakePortMapper}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.errors import NoResponseError, NotAuthorizedError
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.keeper import (
    KeeperChange,
    KeeperPhase,
    MappingKeeper,
    Why,
)
from twisted_natpmp.service.policy import MAP_TIMEOUTS, MIN_RENEWAL_INTERVAL
from twisted_natpmp.testing import FakePortMapper
from twisted_natpmp.testing._mapper import FakeRequest

UDP5000 = MappingDeclaration(Transport.UDP, 5000)


class KeeperTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.mapper = FakePortMapper()
        self.changes: list[KeeperChange] = []
        self.waits: list[int] = []
        self.retryDelay = 10.0

    def backoff(self, failures: int) -> float:
        self.waits.append(failures)
        return self.retryDelay * (failures + 1)

    def keeper(self, declaration: MappingDeclaration = UDP5000) -> MappingKeeper:
        return MappingKeeper(
            declaration,
            self.clock,
            lambda keeper, change: self.changes.append(change),
            backoff=self.backoff,
            monotonic=self.clock.seconds,
        )

    def asked(self) -> FakeRequest:
        [request] = self.mapper.pending("addMapping")
        return request

    def mapped(
        self,
        externalPort: int | None = None,
        lifetime: int | None = None,
        epoch: int | None = None,
    ) -> MappingKeeper:
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().grant(externalPort, lifetime, epoch=epoch)
        return keeper

    def backingOff(self, mapped: bool = False) -> MappingKeeper:
        keeper = self.mapped() if mapped else self.keeper()
        if mapped:
            self.clock.advance(3600)
        else:
            keeper.start(self.mapper)
        self.asked().fail(NotAuthorizedError(2))
        return keeper


class IdleTests(KeeperTestCase):
    def test_new(self) -> None:
        """
        A new keeper is idle and asks nothing.
        """
        keeper = self.keeper()
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertIsNone(keeper.mapping)
        self.assertEqual(self.mapper.requests, [])

    def test_start(self) -> None:
        """
        idle -> requesting: starting asks for the mapping at once, suggesting
        the declared port, with the mapping schedule.
        """
        keeper = self.keeper(MappingDeclaration(Transport.TCP, 8080, 8443, 600))
        keeper.start(self.mapper)
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)
        self.assertEqual(
            self.asked().arguments,
            dict(
                transport=Transport.TCP,
                internalPort=8080,
                externalPort=8443,
                lifetime=600,
                timeouts=MAP_TIMEOUTS,
            ),
        )

    def test_requestWhileIdle(self) -> None:
        """
        idle: a request asks nothing and its L{Deferred} fires at once;
        retryNow and pause do nothing.
        """
        keeper = self.keeper()
        self.successResultOf(keeper.request())
        keeper.retryNow()
        keeper.pause()
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertEqual(self.mapper.requests, [])

    def test_removeNothingHeld(self) -> None:
        """
        idle -> deleting -> stopped: removing an idle keeper that holds
        nothing deletes nothing.
        """
        keeper = self.keeper()
        self.successResultOf(keeper.remove())
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)
        self.assertEqual(self.mapper.requests, [])

    def test_startAgainKeepsExpiry(self) -> None:
        """
        idle -> requesting: started again after a pause, a grant still held
        runs out when it was going to.
        """
        keeper = self.mapped()
        self.clock.advance(100)
        keeper.pause()
        keeper.start(self.mapper)
        self.clock.advance(7099)
        self.assertIsNotNone(keeper.mapping)
        self.clock.advance(1)
        self.assertIsNone(keeper.mapping)
        self.assertEqual(self.changes[-1], KeeperChange.EXPIRED)

    def test_removePausedHolding(self) -> None:
        """
        idle -> deleting: a paused keeper that still holds its grant deletes
        it.
        """
        keeper = self.mapped()
        keeper.pause()
        d = keeper.remove()
        self.assertIs(keeper.phase, KeeperPhase.DELETING)
        [deletion] = self.mapper.pending("deleteMapping")
        deletion.succeed(None)
        self.successResultOf(d)
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)


class RequestingTests(KeeperTestCase):
    def test_granted(self) -> None:
        """
        requesting -> mapped: the grant is held until it expires, reported,
        and its port is suggested from then on.
        """
        self.clock.advance(100)
        keeper = self.mapped(externalPort=15000)
        self.assertIs(keeper.phase, KeeperPhase.MAPPED)
        assert keeper.mapping is not None
        self.assertEqual(keeper.mapping.externalPort, 15000)
        self.assertEqual((keeper.lifetime, keeper.expires), (7200, 7300.0))
        self.assertEqual(keeper.heldPort, 15000)
        self.assertEqual(self.changes, [KeeperChange.GRANTED])

    def test_grantLogged(self) -> None:
        """
        The grant is logged with the external port and lifetime.
        """
        with capturedLogs() as events:
            self.mapped()
        self.assertIn(
            "mapped udp:5000 -> ?:5000 for 7200 s",
            [e["log_format"].format(**e) for e in events],
        )

    def test_failed(self) -> None:
        """
        requesting -> backingOff: the error is kept and reported, and the
        request is retried after the backoff for the first failure.
        """
        keeper = self.backingOff()
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        self.assertIsInstance(keeper.error, NotAuthorizedError)
        self.assertEqual((self.waits, keeper.failures), ([0], 1))
        self.assertEqual(self.changes, [KeeperChange.FAILED])
        self.clock.advance(9.9)
        self.assertEqual(self.mapper.pending(), [])
        self.clock.advance(0.1)
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)

    def test_onlyOneInFlight(self) -> None:
        """
        requesting: a request while one is in flight asks nothing more; its
        L{Deferred} fires with the outcome of the one in flight.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        d = keeper.request()
        keeper.start(self.mapper)
        keeper.retryNow()
        self.assertNoResult(d)
        self.asked().grant()
        self.successResultOf(d)

    def test_cancelledUnder(self) -> None:
        """
        requesting -> idle: a request cancelled under the keeper (its mapper
        stopped) leaves it idle, and says nothing.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        with capturedLogs() as events:
            self.mapper.cancelPending()
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertEqual((list(events), self.changes), ([], []))

    def test_pause(self) -> None:
        """
        requesting -> idle: pausing cancels the request in flight.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        request = self.asked()
        keeper.pause()
        self.assertTrue(request.cancelled)
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertEqual(self.changes, [])

    def test_remove(self) -> None:
        """
        requesting -> deleting: removing cancels the request and deletes the
        mapping, which the request may have made (RFC 6886 s3.4).
        """
        # RFC 6886 s3.4
        keeper = self.keeper()
        keeper.start(self.mapper)
        request = self.asked()
        self.assertEqual(keeper.mayBeHeld(), (True, True))
        d = keeper.remove()
        self.assertTrue(request.cancelled)
        self.assertIs(keeper.phase, KeeperPhase.DELETING)
        [deletion] = self.mapper.pending("deleteMapping")
        deletion.succeed(None)
        self.successResultOf(d)


class MappedTests(KeeperTestCase):
    def test_renewAtHalf(self) -> None:
        """
        mapped -> renewing: renewed at half the granted lifetime, suggesting
        the port held (RFC 6886 s3.3).
        """
        # RFC 6886 s3.3
        keeper = self.mapped(externalPort=15000, lifetime=3600)
        self.clock.advance(1799)
        self.assertEqual(self.mapper.pending(), [])
        self.clock.advance(1)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)
        self.assertEqual(self.asked().arguments["externalPort"], 15000)

    def test_renewAfter(self) -> None:
        """
        The protocol's renewal point (L{Mapping.renewAfter}) is kept.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().grant(renewAfter=4000.0)
        self.clock.advance(3999)
        self.assertIs(keeper.phase, KeeperPhase.MAPPED)
        self.clock.advance(1)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)

    def test_longerGrantNotTrusted(self) -> None:
        """
        RFC 6886 s3.3: a gateway SHOULD NOT grant more than asked; a longer
        grant is renewed and expires as if granted the lifetime asked for.
        """
        # RFC 6886 s3.3
        keeper = self.mapped(lifetime=100000)
        self.assertEqual((keeper.lifetime, keeper.expires), (7200, 7200.0))
        self.clock.advance(3600)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)

    def test_renewalFloor(self) -> None:
        """
        A tiny grant is renewed no sooner than L{MIN_RENEWAL_INTERVAL}; it
        expires before, which is reported, and the keeper waits to renew.
        """
        keeper = self.mapped(lifetime=2)
        self.clock.advance(2)
        self.assertIsNone(keeper.mapping)
        self.assertEqual(self.changes, [KeeperChange.GRANTED, KeeperChange.EXPIRED])
        self.assertIs(keeper.phase, KeeperPhase.MAPPED)
        self.clock.advance(MIN_RENEWAL_INTERVAL - 2)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)

    def test_requestNow(self) -> None:
        """
        mapped -> renewing: a request (a re-mapping) renews now, and the
        renewal timer is cancelled.
        """
        keeper = self.mapped()
        keeper.request(Why.REMAP)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)
        with capturedLogs() as events:
            self.asked().grant()
        self.assertIn(
            "re-mapped udp:5000 -> ?:5000 for 7200 s",
            [e["log_format"].format(**e) for e in events],
        )
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)

    def test_retryNowIgnored(self) -> None:
        """
        mapped: retryNow, and starting again, ask nothing.
        """
        keeper = self.mapped()
        keeper.retryNow()
        keeper.start(self.mapper)
        self.assertIs(keeper.phase, KeeperPhase.MAPPED)
        self.assertEqual(self.mapper.pending(), [])

    def test_pause(self) -> None:
        """
        mapped -> idle: pausing cancels the timers and keeps the grant.
        """
        keeper = self.mapped()
        keeper.pause()
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertIsNotNone(keeper.mapping)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        keeper.forget()
        self.assertIsNone(keeper.mapping)
        self.assertEqual(keeper.heldPort, 5000)
        keeper.forget(ports=True)
        self.assertIsNone(keeper.heldPort)

    def test_remove(self) -> None:
        """
        mapped -> deleting -> stopped: removing deletes the mapping (RFC 6886
        s3.4); the deletion's failure reaches the caller.
        """
        # RFC 6886 s3.4
        keeper = self.mapped()
        self.assertEqual(keeper.mayBeHeld(), (True, False))
        d = keeper.remove()
        self.assertIsNone(keeper.mapping)
        [deletion] = self.mapper.pending("deleteMapping")
        deletion.fail(NoResponseError(self.mapper.gateway, 5, 4.75))
        self.failureResultOf(d, NoResponseError)
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RenewingTests(KeeperTestCase):
    def renewing(self) -> MappingKeeper:
        keeper = self.mapped()
        self.clock.advance(3600)
        return keeper

    def test_granted(self) -> None:
        """
        renewing -> mapped: renewed, logged as such, expiry moved on.
        """
        keeper = self.renewing()
        with capturedLogs() as events:
            self.asked().grant()
        self.assertIs(keeper.phase, KeeperPhase.MAPPED)
        self.assertEqual(keeper.expires, 3600 + 7200)
        self.assertIn(
            "renewed udp:5000 -> ?:5000 for 7200 s",
            [e["log_format"].format(**e) for e in events],
        )

    def test_moved(self) -> None:
        """
        A renewal granted another port is warned about.
        """
        self.renewing()
        with capturedLogs() as events:
            self.asked().grant(externalPort=6000)
        self.assertIn(
            "udp:5000 moved to ?:6000 (was port 5000) for 7200 s (asked for port 5000)",
            [e["log_format"].format(**e) for e in events],
        )

    def test_failedKeepsGrant(self) -> None:
        """
        renewing -> backingOff: a failed renewal keeps the grant until it
        expires.
        """
        keeper = self.renewing()
        self.asked().fail(NotAuthorizedError(2))
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        self.assertIsNotNone(keeper.mapping)
        self.assertEqual(keeper.mayBeHeld(), (True, False))

    def test_expiresWhileRenewing(self) -> None:
        """
        renewing: the grant expires while the renewal is unanswered.
        """
        keeper = self.renewing()
        self.clock.advance(3600)
        self.assertIsNone(keeper.mapping)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)
        self.assertEqual(keeper.mayBeHeld(), (True, True))

    def test_pause(self) -> None:
        """
        renewing -> idle: the renewal and the expiry are cancelled.
        """
        keeper = self.renewing()
        request = self.asked()
        keeper.pause()
        self.assertTrue(request.cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])
