"""
Tests for L{twisted_natpmp.service.keeper} with a PCP mapper: the keeper
follows RFC 6887's timing (the s8.1.1 schedule left to the client, the
s11.2.1 renewal retries, the s7.4 error lifetimes) without knowing the
protocol, on a L{Clock}, against L{FakePortMapper}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, eventAsJSON
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import ProtocolName, Transport
from twisted_natpmp.errors import (
    NetworkFailureError,
    NoResponseError,
    NotAuthorizedError,
    UnsupportedProtocolError,
)
from twisted_natpmp.pcp._retransmit import LONG_ERROR_BACKOFF
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.keeper import KeeperPhase, MappingKeeper
from twisted_natpmp.service.policy import (
    MAP_TIMEOUTS,
    RENEWAL_SPACING,
    errorWait,
    mapTimeoutsFor,
    renewalRetryPoint,
)
from twisted_natpmp.testing import FakePortMapper
from twisted_natpmp.testing._mapper import FakeRequest

UDP5000 = MappingDeclaration(Transport.UDP, 5000, lifetime=7200)


class PCPKeeperTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.mapper = FakePortMapper(protocolName=ProtocolName.PCP)
        self.backoffs: list[int] = []
        self.randoms = [0.0]

    def backoff(self, failures: int) -> float:
        self.backoffs.append(failures)
        return 10.0

    def random(self) -> float:
        return self.randoms[0]

    def keeper(self, declaration: MappingDeclaration = UDP5000) -> MappingKeeper:
        return MappingKeeper(
            declaration,
            self.clock,
            backoff=self.backoff,
            monotonic=self.clock.seconds,
            random=self.random,
        )

    def asked(self) -> FakeRequest:
        [request] = self.mapper.pending("addMapping")
        return request

    def mapped(self, lifetime: int = 7200) -> MappingKeeper:
        keeper = self.keeper()
        keeper.start(self.mapper)
        # The PCP client's renewal point: s11.2.1's first, at 1/2.
        self.asked().grant(lifetime=lifetime, renewAfter=lifetime / 2)
        return keeper

    def renewing(self, lifetime: int = 7200) -> MappingKeeper:
        keeper = self.mapped(lifetime)
        self.clock.advance(lifetime / 2)
        self.assertIs(keeper.phase, KeeperPhase.RENEWING)
        return keeper

    def nextCall(self) -> float:
        [call] = [
            c for c in self.clock.getDelayedCalls() if c.getTime() < self.expiry()
        ]
        return call.getTime()

    def expiry(self) -> float:
        return max(c.getTime() for c in self.clock.getDelayedCalls())


class TimeoutsTests(PCPKeeperTestCase):
    def test_pcpKeepsItsOwnSchedule(self) -> None:
        """
        A PCP mapper is given no retransmission schedule: its client's RFC
        6887 s8.1.1 schedule (3 s, doubling, within its call limit) applies,
        not NAT-PMP's short one.
        """
        # RFC 6887 s8.1.1
        self.keeper().start(self.mapper)
        self.assertIsNone(self.asked().arguments["timeouts"])

    def test_natpmpShortSchedule(self) -> None:
        """
        A NAT-PMP mapper is given the short L{MAP_TIMEOUTS}, as before.
        """
        self.mapper.protocolName = ProtocolName.NATPMP
        self.keeper().start(self.mapper)
        self.assertEqual(self.asked().arguments["timeouts"], MAP_TIMEOUTS)

    def test_givenScheduleForEither(self) -> None:
        """
        A schedule given to the keeper applies to PCP too.
        """
        keeper = MappingKeeper(UDP5000, self.clock, mapTimeouts=(1.0, 2.0))
        keeper.start(self.mapper)
        self.assertEqual(self.asked().arguments["timeouts"], (1.0, 2.0))

    def test_mapTimeoutsFor(self) -> None:
        self.assertEqual(mapTimeoutsFor(ProtocolName.NATPMP), MAP_TIMEOUTS)
        self.assertIsNone(mapTimeoutsFor(ProtocolName.PCP))


class LogTests(PCPKeeperTestCase):
    def test_grantNamesProtocol(self) -> None:
        """
        The grant's log event names the protocol that made the mapping, as
        a string (JSON-safe); the state says it too.
        """
        with capturedLogs() as events:
            keeper = self.mapped()
        [event] = [e for e in events if "mapped" in e["log_format"]]
        self.assertEqual(event["protocol"], "PCP")
        self.assertIn('"protocol": "PCP"', eventAsJSON(_fields(event)))
        assert keeper.mapping is not None
        self.assertIs(keeper.mapping.protocolName, ProtocolName.PCP)

    def test_failureNamesProtocol(self) -> None:
        """
        A failure's log event names the protocol of the mapper asked.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        with capturedLogs() as events:
            self.asked().fail(NetworkFailureError(7, protocol="pcp", lifetime=30))
        [event] = [e for e in events if "could not map" in e["log_format"]]
        self.assertEqual(event["protocol"], "PCP")
        eventAsJSON(_fields(event))


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("log_logger", "log_legacy")}


class RenewalRetryTests(PCPKeeperTestCase):
    def test_firstRetryAtThreeQuarters(self) -> None:
        """
        A PCP renewal that goes unanswered is tried again at a random point
        in [3/4, 3/4 + 1/16] of the lifetime, not after the backoff.
        """
        # RFC 6887 s11.2.1
        keeper = self.renewing()
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)
        self.assertEqual(self.nextCall(), 7200 * 3 / 4)
        self.assertEqual(self.backoffs, [])

    def test_randomWithinWindow(self) -> None:
        """
        The point is random within the window: at the top of the source,
        3/4 + 1/16 of the lifetime.
        """
        # RFC 6887 s11.2.1
        self.randoms[0] = 1.0
        self.renewing()
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertEqual(self.nextCall(), 7200 * (3 / 4 + 1 / 16))

    def test_thenSevenEighths(self) -> None:
        """
        A second failure is retried in [7/8, 7/8 + 1/32], a third in
        [15/16, 15/16 + 1/64]; then the grant runs out.
        """
        # RFC 6887 s11.2.1
        keeper = self.renewing()
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.clock.advance(self.nextCall() - self.clock.seconds())
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertEqual(self.nextCall(), 7200 * 7 / 8)
        self.clock.advance(self.nextCall() - self.clock.seconds())
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertEqual(self.nextCall(), 7200 * 15 / 16)
        self.assertEqual(self.backoffs, [])
        self.assertIsNotNone(keeper.mapping)

    def test_atLeastFourSecondsApart(self) -> None:
        """
        A renewal that failed late (its retransmissions past the next
        point) is tried again no sooner than 4 s later.
        """
        # RFC 6887 s11.2.1
        keeper = self.renewing()
        self.clock.advance(7200 * 3 / 4 - 3600 + 1)
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 1801))
        self.assertEqual(self.nextCall(), self.clock.seconds() + RENEWAL_SPACING)
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)

    def test_grantResetsAttempts(self) -> None:
        """
        Once a retry is granted, the next failure starts again at 3/4.
        """
        # RFC 6887 s11.2.1
        self.renewing()
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.clock.advance(self.nextCall() - self.clock.seconds())
        granted = self.clock.seconds()
        self.asked().grant(renewAfter=3600)
        self.clock.advance(3600)
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertEqual(self.nextCall(), granted + 7200 * 3 / 4)

    def test_notHeldUsesBackoff(self) -> None:
        """
        A first mapping (nothing held) that goes unanswered is retried after
        the backoff: there is no lifetime to place a point in.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().fail(NoResponseError(self.mapper.gateway, 6, 128))
        self.assertEqual(self.backoffs, [0])
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 10.0)

    def test_natpmpRenewalUsesBackoff(self) -> None:
        """
        A NAT-PMP mapping's failed renewal is retried after the backoff, as
        before (RFC 6886 s3.3 asks no more).
        """
        self.mapper.protocolName = ProtocolName.NATPMP
        self.renewing()
        self.asked().fail(NoResponseError(self.mapper.gateway, 4, 3.75))
        self.assertEqual(self.backoffs, [0])

    def test_renewalRetryPoint(self) -> None:
        self.assertIsNone(renewalRetryPoint(ProtocolName.NATPMP, 100, 1))
        self.assertEqual(renewalRetryPoint(ProtocolName.PCP, 64, 1, lambda: 0.5), 50)


class ErrorLifetimeTests(PCPKeeperTestCase):
    def test_shortLivedAfterItsLifetime(self) -> None:
        """
        A short-lived error (network failure, no resources, quota) is
        retried after the lifetime it carries.
        """
        # RFC 6887 s7.4
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().fail(NetworkFailureError(7, protocol="pcp", lifetime=45))
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 45.0)
        self.assertEqual(self.backoffs, [])
        self.clock.advance(44.9)
        self.assertEqual(self.mapper.pending(), [])
        self.clock.advance(0.1)
        self.assertIs(keeper.phase, KeeperPhase.REQUESTING)

    def test_shortLivedDuringRenewal(self) -> None:
        """
        A renewal refused with a short-lived error is retried after its
        lifetime too, the grant kept.
        """
        # RFC 6887 s7.4
        keeper = self.renewing()
        self.asked().fail(NetworkFailureError(7, protocol="pcp", lifetime=30))
        self.assertEqual(self.nextCall(), 3600 + 30.0)
        self.assertIsNotNone(keeper.mapping)

    def test_longLivedZeroIsNotNow(self) -> None:
        """
        A long-lived error with lifetime 0 (as miniupnpd sends them) means
        "not soon": the keeper waits half an hour, never retrying at once.
        """
        # RFC 6887 s7.4
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().fail(NotAuthorizedError(2, protocol="pcp", lifetime=0))
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), LONG_ERROR_BACKOFF)
        self.assertGreaterEqual(LONG_ERROR_BACKOFF, 1800)
        self.clock.advance(LONG_ERROR_BACKOFF - 1)
        self.assertEqual(self.mapper.pending(), [])
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)

    def test_longLivedLongerLifetime(self) -> None:
        """
        A long-lived error that says it lasts longer than half an hour is
        waited out.
        """
        # RFC 6887 s7.4
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().fail(UnsupportedProtocolError(9, protocol="pcp", lifetime=7200))
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 7200.0)

    def test_longLivedLoggedOnce(self) -> None:
        """
        The same long-lived error is warned about once, then logged at info
        until a grant.
        """
        # RFC 6887 s7.4
        keeper = self.keeper()
        keeper.start(self.mapper)
        levels = []
        for _ in range(3):
            with capturedLogs() as events:
                self.asked().fail(NotAuthorizedError(2, protocol="pcp", lifetime=0))
            [event] = [e for e in events if "could not map" in e["log_format"]]
            levels.append(event["log_level"])
            self.clock.advance(LONG_ERROR_BACKOFF)
        self.assertEqual(levels, [LogLevel.warn, LogLevel.info, LogLevel.info])
        text = event["log_format"].format(**event)
        self.assertIn("next attempt in 1800.0 s (PCP error lifetime)", text)
        self.asked().grant()
        self.clock.advance(3600)
        with capturedLogs() as events:
            self.asked().fail(NotAuthorizedError(2, protocol="pcp", lifetime=0))
        [event] = [e for e in events if "could not map" in e["log_format"]]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertIn("not asking again soon", event["log_format"])
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)

    def test_errorWithoutLifetimeUsesBackoff(self) -> None:
        """
        An error that carries no lifetime (NAT-PMP's) is retried after the
        backoff, as before.
        """
        keeper = self.keeper()
        keeper.start(self.mapper)
        self.asked().fail(NotAuthorizedError(2, protocol="natpmp"))
        self.assertEqual(self.backoffs, [0])
        self.assertIs(keeper.phase, KeeperPhase.BACKING_OFF)

    def test_errorWait(self) -> None:
        self.assertIsNone(errorWait(NotAuthorizedError(2)))
        self.assertIsNone(errorWait(NoResponseError(self.mapper.gateway, 1, 1)))
        self.assertEqual(errorWait(NetworkFailureError(7, lifetime=0)), 30.0)
        self.assertEqual(errorWait(NotAuthorizedError(2, lifetime=5)), 1800.0)
