"""
Tests for L{twisted_natpmp.service.stop.deleteAll}: one batch, a deadline,
and what was left named (RFC 6886 s3.1, s3.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.errors import NoResponseError, NotAuthorizedError
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.stop import deleteAll
from twisted_natpmp.testing import FakePortMapper

UDP5000 = MappingDeclaration(Transport.UDP, 5000)
TCP8080 = MappingDeclaration(Transport.TCP, 8080)


def texts(events: Sequence[Any]) -> list[str]:
    return [e["log_format"].format(**e) for e in events]


class DeleteAllTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.mapper = FakePortMapper()

    def test_nothing(self) -> None:
        """
        Nothing to delete asks nothing.
        """
        self.successResultOf(deleteAll(self.clock, self.mapper, [], "stopping"))
        self.assertEqual(self.mapper.requests, [])

    def test_oneBatch(self) -> None:
        """
        Every deletion goes in one batch, on the schedule given; what was
        deleted is said.
        """
        # RFC 6886 s3.1, s3.4
        d = deleteAll(
            self.clock, self.mapper, [UDP5000, TCP8080], "stopping", timeouts=(1.0,)
        )
        [batch] = self.mapper.pending()
        self.assertEqual(
            batch.arguments, dict(keys=[UDP5000.key, TCP8080.key], timeouts=(1.0,))
        )
        with capturedLogs() as events:
            batch.succeed(dict.fromkeys([UDP5000.key, TCP8080.key]))
        self.successResultOf(d)
        self.assertEqual(
            texts(events),
            ["stopping: deleted 2 mapping(s) at gateway 10.0.0.1: udp:5000, tcp:8080"],
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leftAndMaybeLeft(self) -> None:
        """
        A mapping whose deletion failed is left; one never seen granted
        may have been left; each with its reason.
        """
        d = deleteAll(
            self.clock, self.mapper, [UDP5000, TCP8080], "leaving", {TCP8080.key}
        )
        outcomes: dict[Any, Failure | None] = {
            UDP5000.key: Failure(NotAuthorizedError(2)),
            TCP8080.key: Failure(NoResponseError(self.mapper.gateway, 5, 4.75)),
        }
        with capturedLogs() as events:
            self.mapper.pending()[0].succeed(outcomes)
        self.successResultOf(d)
        self.assertEqual(
            texts(events),
            [
                "leaving: left 1 mapping(s) at gateway 10.0.0.1, which expire by"
                " themselves: udp:5000 (gateway answered result code 2 (not"
                " authorized/refused))",
                "leaving: may have left 1 mapping(s) at gateway 10.0.0.1, asked"
                " for but never seen granted (they expire by themselves if"
                " made): tcp:8080 (no response from gateway 10.0.0.1 after 5"
                " attempt(s) in 4.75 s)",
            ],
        )

    def test_deadline(self) -> None:
        """
        At the deadline the deletions still unanswered are given up.
        """
        # RFC 6886 s3.1
        d = deleteAll(self.clock, self.mapper, [UDP5000], "stopping", deadline=2.0)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        with capturedLogs() as events:
            self.clock.advance(0.1)
        self.successResultOf(d)
        self.assertTrue(self.mapper.requests[0].cancelled)
        self.assertIn("not answered within the 2 s stop deadline", texts(events)[0])

    def test_refusedOutright(self) -> None:
        """
        Deletions that could not even be asked for leave every mapping, for
        that reason.
        """

        def deleteMappings(keys: object, timeouts: object = ()) -> Deferred[Any]:
            return fail(ZeroDivisionError("division by zero"))

        self.mapper.deleteMappings = deleteMappings  # type: ignore[method-assign]
        with capturedLogs() as events:
            self.successResultOf(
                deleteAll(self.clock, self.mapper, [UDP5000], "stopping")
            )
        self.assertIn("udp:5000 (division by zero)", texts(events)[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
