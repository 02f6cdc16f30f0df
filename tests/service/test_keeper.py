"""
Tests for L{twisted_natpmp.service.keeper}: every transition of the keeper of
one mapping until it is held, on a L{Clock}, against L{FakePortMapper}
(once held: L{tests.service.test_keepermapped}).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.errors import NotAuthorizedError
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.keeper import (
    KeeperChange,
    KeeperPhase,
    MappingKeeper,
)
from twisted_natpmp.service.policy import MAP_TIMEOUTS
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
