"""
Tests for L{twisted_natpmp.server.table}: expiry, deletion and a backend's
failures, on a L{Clock}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import IPAddress, Transport
from twisted_natpmp.errors import (
    NetworkFailureError,
    NotAuthorizedError,
    OutOfResourcesError,
)
from twisted_natpmp.server.table import (
    EventKind,
    Refused,
)

from ._tablefakes import (
    ALICE,
    BOB,
    TCP,
    UDP,
    TableTestsMixin,
)


class ExpiryTests(TableTestsMixin, SynchronousTestCase):
    def test_expiresAtLifetimeEnd(self) -> None:
        """
        A mapping that is not renewed is removed when its lifetime ends
        (RFC 6886 s3.3), from the table and the backend.
        """
        mapping = self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.assertEqual(self.table.nextExpiry(), 1060)
        self.clock.advance(59.9)
        self.assertEqual(self.table.expire(), [])
        self.assertEqual(len(self.table), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.table.expire(), [mapping])
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(self.kinds(), [EventKind.CREATED, EventKind.EXPIRED])
        self.assertIsNone(self.table.nextExpiry())

    def test_renewalPostponesExpiry(self) -> None:
        """
        Renewing restarts the lifetime; the old deadline does not expire
        the renewed mapping (RFC 6886 s3.3).
        """
        self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.clock.advance(30)
        self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.clock.advance(59)
        self.assertEqual(self.table.expire(), [])
        self.assertIsNotNone(self.table.get(ALICE, TCP, 6000))
        self.clock.advance(1)
        self.assertEqual(len(self.table.expire()), 1)

    def test_shorterRenewalExpiresSooner(self) -> None:
        """
        A renewal with a shorter lifetime expires at its own, earlier end.
        """
        self.table.map(ALICE, TCP, 6000, 6000, 3600)
        self.table.map(ALICE, TCP, 6000, 6000, 10)
        self.assertEqual(self.table.nextExpiry(), 1010)
        self.clock.advance(10)
        self.assertEqual(len(self.table.expire()), 1)

    def test_expiredPortReusedWithoutExpireCall(self) -> None:
        """
        An expired mapping never blocks a request, even if nobody removed
        it yet: requests expire what is due first.
        """
        self.table.map(ALICE, TCP, 6000, 6000, 10)
        self.clock.advance(10)
        self.assertIsNone(self.table.get(ALICE, TCP, 6000))
        self.assertEqual(self.table.map(BOB, TCP, 1, 6000, 10).externalPort, 6000)
        self.assertEqual(self.kinds()[1:], [EventKind.EXPIRED, EventKind.CREATED])

    def test_expiryInOrder(self) -> None:
        """
        Many mappings expire each at its own time.
        """
        for port in range(1, 101):
            self.table.map(ALICE, UDP, port, 0, port)
        for second in range(1, 101):
            self.clock.advance(1)
            expired = self.table.expire()
            self.assertEqual([m.internalPort for m in expired], [second])

    def test_deadlinesStayBounded(self) -> None:
        """
        Renewals leave stale deadlines behind, but never more than about
        twice the live mappings: memory does not grow with renewals.
        """
        self.table.map(ALICE, UDP, 1, 0, 3600)
        for _ in range(10000):
            self.table.map(ALICE, UDP, 1, 0, 3600)
        self.assertLessEqual(len(self.table._deadlines), 2 * 1 + 64 + 1)
        self.clock.advance(3600)
        self.assertEqual(len(self.table.expire()), 1)

    def test_removalFailureOnExpiry(self) -> None:
        """
        If the backend cannot remove an expired mapping, the table drops it
        anyway and reports the failure.
        """
        self.table.map(ALICE, TCP, 6000, 6000, 10)
        self.backend.removeError = RuntimeError("iptables is gone")
        self.clock.advance(10)
        self.assertEqual(len(self.table.expire()), 1)
        self.assertEqual(len(self.table), 0)
        failed = self.events[1]
        self.assertEqual(failed.kind, EventKind.REMOVE_FAILED)
        self.assertIs(failed.error, self.backend.removeError)
        self.assertEqual(self.events[2].kind, EventKind.EXPIRED)


class DeleteTests(TableTestsMixin, SynchronousTestCase):
    def test_delete(self) -> None:
        """
        Deleting removes the mapping from the table and the backend and
        frees its port (RFC 6886 s3.4).
        """
        mapping = self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.assertEqual(self.table.delete(ALICE, TCP, 6000), mapping)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(self.kinds(), [EventKind.CREATED, EventKind.DELETED])
        self.assertEqual(self.table.map(BOB, TCP, 1, 6000, 60).externalPort, 6000)

    def test_deleteMissing(self) -> None:
        """
        Deleting a mapping that does not exist finds nothing and changes
        nothing (RFC 6886 s3.4 counts it as success); nor can a client
        delete another client's mapping (s3.3: only its own).
        """
        self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.assertIsNone(self.table.delete(ALICE, TCP, 6001))
        self.assertIsNone(self.table.delete(ALICE, UDP, 6000))
        self.assertIsNone(self.table.delete(BOB, TCP, 6000))
        self.assertEqual(len(self.table), 1)

    def test_deleteAllOneProtocol(self) -> None:
        """
        Deleting all removes every mapping of the client in that protocol,
        and only in that protocol (RFC 6886 s3.4); other clients keep
        theirs.
        """
        for port in (1, 2, 3):
            self.table.map(ALICE, UDP, port, 0, 60)
        self.table.map(ALICE, TCP, 1, 0, 60)
        self.table.map(BOB, UDP, 1, 0, 60)
        deleted, error = self.table.deleteAll(ALICE, UDP)
        self.assertIsNone(error)
        self.assertEqual(sorted(m.internalPort for m in deleted), [1, 2, 3])
        self.assertEqual(
            sorted((m.client, m.protocol) for m in self.table.mappingsOf(ALICE)),
            [(ALICE, TCP)],
        )
        self.assertEqual(len(self.table.mappingsOf(BOB)), 1)
        self.assertEqual(len(self.backend.forwards), 2)

    def test_deleteFailureKeepsMapping(self) -> None:
        """
        When the backend cannot remove a mapping, deleting fails with its
        result code and the mapping stays (RFC 6886 s3.4: an unsuccessful
        deletion gets a non-zero result); an exception that is not a
        gateway error becomes Network Failure.
        """
        self.table.map(ALICE, TCP, 6000, 6000, 60)
        self.backend.removeError = NotAuthorizedError(2)
        error = self.assertRaises(Refused, self.table.delete, ALICE, TCP, 6000)
        self.assertIsInstance(error.error, NotAuthorizedError)
        self.backend.removeError = OSError("no")
        error = self.assertRaises(Refused, self.table.delete, ALICE, TCP, 6000)
        self.assertIsInstance(error.error, NetworkFailureError)
        self.assertIs(error.__cause__, self.backend.removeError)
        self.assertEqual(len(self.table), 1)

    def test_deleteAllPartialFailure(self) -> None:
        """
        When some mappings cannot be deleted, as many as possible are, and
        an error is returned (RFC 6886 s3.4).
        """
        self.table.map(ALICE, UDP, 1, 0, 60)
        self.table.map(ALICE, UDP, 2, 0, 60)
        broken = self.backend.removeMapping

        def removeOne(address: IPAddress, protocol: Transport, i: int, e: int) -> None:
            if i == 1:
                raise OutOfResourcesError(4)
            broken(address, protocol, i, e)

        self.patch(self.backend, "removeMapping", removeOne)
        deleted, error = self.table.deleteAll(ALICE, UDP)
        self.assertEqual([m.internalPort for m in deleted], [2])
        assert error is not None
        self.assertIsInstance(error.error, OutOfResourcesError)
        self.assertEqual([m.internalPort for m in self.table.mappingsOf(ALICE)], [1])

    def test_reset(self) -> None:
        """
        Resetting removes every mapping and starts a new epoch at 0 (RFC
        6886 s3.6: the epoch counts from the table's initialisation).
        """
        self.table.map(ALICE, UDP, 1, 0, 60)
        self.table.map(BOB, TCP, 1, 0, 60)
        self.clock.advance(30)
        self.assertEqual(self.table.epoch(), 30)
        self.assertEqual(len(self.table.reset()), 2)
        self.assertEqual(self.table.epoch(), 0)
        self.assertEqual(self.backend.forwards, {})
        self.assertIsNone(self.table.nextExpiry())
        # Cleared, not deleted: no client asked.
        self.assertEqual(
            self.kinds(),
            [
                EventKind.CREATED,
                EventKind.CREATED,
                EventKind.CLEARED,
                EventKind.CLEARED,
            ],
        )


class BackendFailureTests(TableTestsMixin, SynchronousTestCase):
    def test_gatewayErrorKeepsItsCode(self) -> None:
        """
        A backend's L{GatewayError} refuses the request with its result
        code, in the table's own words (not "gateway answered ..."), and the
        table is unchanged.
        """
        self.backend.addError = OutOfResourcesError(4)
        error = self.assertRaises(Refused, self.table.map, ALICE, TCP, 1, 5000, 60)
        self.assertIsInstance(error.error, OutOfResourcesError)
        self.assertEqual(
            str(error), "the backend refused to add the mapping (out of resources)"
        )
        self.assertEqual(len(self.table), 0)
        self.backend.addError = None
        self.assertEqual(self.table.map(BOB, TCP, 1, 5000, 60).externalPort, 5000)

    def test_otherErrorIsNetworkFailure(self) -> None:
        """
        Any other backend exception becomes result 3, Network Failure, with
        the exception as its cause.
        """
        self.backend.addError = OSError("firewall said no")
        error = self.assertRaises(Refused, self.table.map, ALICE, TCP, 5000, 5000, 60)
        self.assertIsInstance(error.error, NetworkFailureError)
        self.assertEqual(error.detail, "OSError('firewall said no')")
        self.assertIs(error.__cause__, self.backend.addError)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.events, [])
