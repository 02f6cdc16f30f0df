"""
Tests for L{twisted_natpmp.service.keeper}, continued: removal while
renewing, backing off, deleting and stopped, and the confirmation by an
announcement; on a L{Clock}, against L{FakePortMapper}.
"""

from __future__ import annotations

from twisted.logger import capturedLogs

from twisted_natpmp._types import Mapping, Transport
from twisted_natpmp.errors import (
    NoResponseError,
    NotAuthorizedError,
    OutOfResourcesError,
)
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.keeper import (
    KeeperChange,
    KeeperContext,
    KeeperPhase,
    MappingKeeper,
    Why,
)

from .test_keeper import UDP5000, KeeperTestCase


class RenewingRemoveTests(KeeperTestCase):
    def test_remove(self) -> None:
        """
        renewing -> deleting: the renewal is cancelled and the mapping
        deleted.
        """
        # RFC 6886 s3.4
        keeper = self.mapped()
        self.clock.advance(3600)
        renewal = self.asked()
        keeper.remove()
        self.assertTrue(renewal.cancelled)
        self.assertIs(keeper.phase, KeeperPhase.DELETING)
        self.assertEqual(len(self.mapper.pending("deleteMapping")), 1)


class BackingOffTests(KeeperTestCase):
    def test_expiresWhileBackingOff(self) -> None:
        """
        backingOff: a grant kept after a failed renewal runs out on time,
        and the retry still comes.
        """
        self.retryDelay = 10000.0
        keeper = self.backingOff(mapped=True)
        self.clock.advance(3600)
        self.assertIsNone(keeper.mapping)
        self.assertEqual(self.changes[-1], KeeperChange.EXPIRED)
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        keeper.start(self.mapper)
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)

    def test_backoffGrows(self) -> None:
        """
        backingOff -> requesting: each failure in a row counts for the
        backoff; a grant resets it.  The declaration is never given up.
        """
        keeper = self.backingOff()
        for n in range(1, 5):
            self.clock.advance(10.0 * n)
            self.asked().fail(NoResponseError(self.mapper.gateway, 4, 3.75))
        self.assertEqual(self.waits, [0, 1, 2, 3, 4])
        self.clock.advance(50)
        self.asked().grant()
        self.assertEqual(keeper.failures, 0)
        self.assertIsNone(keeper.error)

    def test_request(self) -> None:
        """
        backingOff -> requesting: a request ends the backoff early, without
        the port held suggested if none was granted.
        """
        keeper = self.backingOff()
        keeper.request(Why.REMAP)
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)
        self.assertIsNone(self.asked().arguments["externalPort"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 0)

    def test_retryNow(self) -> None:
        """
        backingOff -> requesting: retryNow ends the backoff.
        """
        keeper = self.backingOff()
        keeper.retryNow()
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)

    def test_quietWhenGatewaySilent(self) -> None:
        """
        A failure for want of an answer is logged at info once the gateway's
        silence was told (the watch tells it), at warn otherwise.
        """
        context = KeeperContext(gatewaySilent=lambda: True)
        keeper = MappingKeeper(UDP5000, self.clock, context=context)
        keeper.start(self.mapper)
        with capturedLogs() as events:
            self.asked().fail(NoResponseError(self.mapper.gateway, 4, 3.75))
        [event] = events
        self.assertEqual(event["log_level"].name, "info")

    def test_sameFailureWarnedOnce(self) -> None:
        """
        The failure told last, again (the same error, the same result
        code), is logged at info; another failure is warned about, and so
        is the first failure after a grant.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        with capturedLogs() as events:
            for error in [
                NotAuthorizedError(2),
                NotAuthorizedError(2),
                NotAuthorizedError(2),
                OutOfResourcesError(4),
                NotAuthorizedError(2),
                NotAuthorizedError(2),
                None,
                NotAuthorizedError(2),
            ]:
                self.clock.advance(1000)
                if error is None:
                    self.asked().grant()
                    self.clock.advance(3600)
                else:
                    self.asked().fail(error)
        levels = [
            e["log_level"].name
            for e in events
            if e["log_format"].startswith("could not map")
        ]
        self.assertEqual(
            levels, ["warn", "info", "info", "warn", "warn", "info", "warn"]
        )

    def test_pause(self) -> None:
        """
        backingOff -> idle: the retry is cancelled.
        """
        keeper = self.backingOff()
        keeper.pause()
        self.assertIs(keeper.phase, KeeperPhase.IDLE)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_removeNeverGranted(self) -> None:
        """
        backingOff -> deleting -> stopped: nothing to delete.
        """
        keeper = self.backingOff()
        self.successResultOf(keeper.remove())
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)
        self.assertEqual(self.mapper.calls("deleteMapping"), [])

    def test_removeHeld(self) -> None:
        """
        backingOff -> deleting: a grant still held is deleted.
        """
        keeper = self.backingOff(mapped=True)
        keeper.remove()
        self.assertEqual(len(self.mapper.pending("deleteMapping")), 1)


class DeletingStoppedTests(KeeperTestCase):
    def test_deletingIgnoresOthers(self) -> None:
        """
        deleting: nothing but the deletion's answer changes anything.
        """
        keeper = self.mapped()
        first = keeper.remove()
        keeper.start(self.mapper)
        keeper.retryNow()
        keeper.pause()
        second = keeper.remove()
        self.successResultOf(keeper.request())
        self.assertIs(keeper.phase, KeeperPhase.DELETING)
        self.assertEqual(len(self.mapper.pending()), 1)
        self.mapper.pending()[0].succeed(None)
        # Both removals hear the one deletion's outcome.
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)

    def test_stoppedIgnoresEverything(self) -> None:
        """
        stopped: starting, requesting, pausing or removing again asks
        nothing.
        """
        keeper = self.keeper()
        self.successResultOf(keeper.remove())
        keeper.start(self.mapper)
        keeper.retryNow()
        keeper.pause()
        self.successResultOf(keeper.request())
        self.successResultOf(keeper.remove())
        self.assertIs(keeper.phase, KeeperPhase.STOPPED)
        self.assertEqual(self.mapper.requests, [])


class ConfirmationTests(KeeperTestCase):
    def test_confirmedBySameRun(self) -> None:
        """
        An announcement from the run that granted the mapping, late enough
        in it, confirms it; one from another run, or early in the run, does
        not.
        """
        self.clock.advance(1000)
        keeper = self.mapped(epoch=500)
        # The run began at 1000 - 500.
        self.assertTrue(keeper.confirmedBy(500.0))
        self.assertTrue(keeper.confirmedBy(502.0))
        self.assertFalse(keeper.confirmedBy(503.0))
        early = self.keeper(MappingDeclaration(Transport.TCP, 1))
        early.start(self.mapper)
        self.mapper.pending()[0].grant(epoch=1)
        self.assertFalse(early.confirmedBy(999.0))

    def test_reportsCarryKeeper(self) -> None:
        """
        The report callback is called with the keeper.
        """
        seen: list[tuple[MappingKeeper, KeeperChange]] = []
        keeper = MappingKeeper(UDP5000, self.clock, lambda k, c: seen.append((k, c)))
        keeper.start(self.mapper)
        mapping = self.asked().grant()
        self.assertEqual(seen, [(keeper, KeeperChange.GRANTED)])
        self.assertIsInstance(mapping, Mapping)
        self.assertEqual(repr(keeper), "<MappingKeeper udp:5000>")
