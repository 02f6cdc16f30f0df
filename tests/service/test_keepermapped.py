"""
Tests for L{twisted_natpmp.service.keeper} once a mapping is held: renewal,
re-requests, pausing and removal while mapped or renewing; on a L{Clock},
against L{FakePortMapper} (the keeper's first request:
L{tests.service.test_keeper}).
"""

from __future__ import annotations

from twisted.logger import capturedLogs

from twisted_natpmp.errors import NoResponseError, NotAuthorizedError
from twisted_natpmp.service.keeper import (
    KeeperChange,
    KeeperPhase,
    MappingKeeper,
    Why,
)
from twisted_natpmp.service.policy import MIN_RENEWAL_INTERVAL

from .test_keeper import (
    KeeperTestCase,
)


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
