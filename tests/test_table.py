"""
Tests for L{twisted_natpmp._table}: the gateway's mapping table, on a
L{Clock}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp._table import (
    HIGH_PORT,
    EventKind,
    GatewayMapping,
    MappingTable,
    Refused,
    TableEvent,
    _PortPool,
    checkLimits,
)
from twisted_natpmp._wire import Protocol, ResultCode
from twisted_natpmp.backends import MemoryBackend
from twisted_natpmp.errors import (
    NotAuthorizedError,
    OutOfResourcesError,
)
from twisted_natpmp.interfaces import IMappingBackend

TCP, UDP = Protocol.TCP, Protocol.UDP
ALICE = IPv4Address("10.0.0.2")
BOB = IPv4Address("10.0.0.3")
CAROL = IPv4Address("10.0.0.4")
DAVE = IPv4Address("10.0.0.5")


class FailingBackend(MemoryBackend):
    """
    A L{MemoryBackend} that raises chosen exceptions, to stand for a
    firewall that refuses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addError: Exception | None = None
        self.removeError: Exception | None = None

    def addMapping(
        self, internalAddress: IPv4Address, protocol: Protocol, internal: int, ext: int
    ) -> None:
        if self.addError is not None:
            raise self.addError
        super().addMapping(internalAddress, protocol, internal, ext)

    def removeMapping(
        self, internalAddress: IPv4Address, protocol: Protocol, internal: int, ext: int
    ) -> None:
        if self.removeError is not None:
            raise self.removeError
        super().removeMapping(internalAddress, protocol, internal, ext)


class TableTestsMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.backend = FailingBackend()
        self.events: list[TableEvent] = []
        self.table = self.makeTable()

    def makeTable(self, **limits: int) -> MappingTable:
        return MappingTable(
            self.clock, self.backend, observer=self.events.append, **limits
        )

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events]


class MapTests(TableTestsMixin, SynchronousTestCase):
    def test_suggestedPortFree(self) -> None:
        """
        A new mapping gets the suggested external port when it is free, and
        the backend is asked to forward it to the client (RFC 6886 s3.3).
        """
        mapping = self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.assertEqual(
            mapping, GatewayMapping(ALICE, TCP, 6000, 7000, 3600, 1000 + 3600)
        )
        self.assertEqual(self.backend.forwards, {(TCP, 7000): (ALICE, 6000)})
        self.assertEqual(self.kinds(), [EventKind.CREATED])
        self.assertEqual(self.table.get(ALICE, TCP, 6000), mapping)
        self.assertEqual(len(self.table), 1)

    def test_renewalKeepsExternalPort(self) -> None:
        """
        The same client asking again for the same internal port renews the
        mapping and gets back the external port it already has, whatever it
        suggests now (RFC 6886 s3.3: a lost reply must not cost the port).
        """
        first = self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.clock.advance(100)
        again = self.table.map(ALICE, TCP, 6000, 8000, 600)
        self.assertEqual(again.externalPort, first.externalPort)
        self.assertEqual(again.lifetime, 600)
        self.assertEqual(again.expires, self.clock.seconds() + 600)
        self.assertEqual(self.kinds(), [EventKind.CREATED, EventKind.RENEWED])
        self.assertEqual(self.backend.forwards, {(TCP, 7000): (ALICE, 6000)})
        self.assertEqual(len(self.table), 1)

    def test_takenPortGetsNextFree(self) -> None:
        """
        When the suggested port is taken, another free one is granted: the
        next free one above it (RFC 6886 s3.3: "MUST return an available
        external port if possible").
        """
        self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.table.map(ALICE, TCP, 6001, 7001, 3600)
        mapping = self.table.map(BOB, TCP, 6000, 7000, 3600)
        self.assertEqual(mapping.externalPort, 7002)
        self.assertEqual(self.backend.forwards[(TCP, 7002)], (BOB, 6000))

    def test_sameInternalPortOtherClient(self) -> None:
        """
        Mappings are per client: two clients may map the same internal
        port (RFC 6886 s3.3).
        """
        alice = self.table.map(ALICE, UDP, 6000, 6000, 60)
        bob = self.table.map(BOB, UDP, 6000, 6000, 60)
        self.assertEqual(alice.client, ALICE)
        self.assertEqual(bob.client, BOB)
        self.assertNotEqual(alice.externalPort, bob.externalPort)

    def test_suggestionZeroGetsHighPort(self) -> None:
        """
        A suggested external port of 0 gets a high port of the gateway's
        choosing (RFC 6886 s3.3).
        """
        first = self.table.map(ALICE, UDP, 6000, 0, 60)
        second = self.table.map(ALICE, UDP, 6001, 0, 60)
        self.assertGreaterEqual(first.externalPort, HIGH_PORT)
        self.assertGreaterEqual(second.externalPort, HIGH_PORT)
        self.assertNotEqual(first.externalPort, second.externalPort)

    def test_companionPortReserved(self) -> None:
        """
        A TCP mapping reserves the same external UDP port for the same
        client, without creating a UDP mapping; another client cannot get
        it; the holder can (RFC 6886 s3.3), and the reverse for UDP.
        """
        self.table.map(ALICE, TCP, 8080, 8080, 3600)
        self.assertIsNone(self.table.get(ALICE, UDP, 8080))
        self.assertNotIn((UDP, 8080), self.backend.forwards)
        bob = self.table.map(BOB, UDP, 8080, 8080, 3600)
        self.assertNotEqual(bob.externalPort, 8080)
        alice = self.table.map(ALICE, UDP, 8080, 8080, 3600)
        self.assertEqual(alice.externalPort, 8080)
        # And UDP reserves TCP.
        self.table.map(BOB, UDP, 9090, 9090, 3600)
        self.assertNotEqual(
            self.table.map(ALICE, TCP, 9090, 9090, 3600).externalPort, 9090
        )
        self.assertEqual(self.table.map(BOB, TCP, 9090, 9090, 3600).externalPort, 9090)

    def test_companionReleasedWithMapping(self) -> None:
        """
        The companion port is reserved only while the client holds its
        mapping (RFC 6886 s3.3: "as long as the client maintains the
        lease").
        """
        self.table.map(ALICE, TCP, 8080, 8080, 60)
        self.clock.advance(60)
        self.assertEqual(self.table.map(BOB, UDP, 8080, 8080, 60).externalPort, 8080)
        self.table.delete(BOB, UDP, 8080)
        self.assertEqual(self.table.map(ALICE, TCP, 8081, 8081, 60).externalPort, 8081)
        self.table.delete(ALICE, TCP, 8081)
        self.assertEqual(self.table.map(BOB, UDP, 8081, 8081, 60).externalPort, 8081)

    def test_lifetimeCapped(self) -> None:
        """
        The lifetime granted is at most the configured maximum (the gateway
        MAY reduce it) and never more than requested (it SHOULD NOT offer
        more, RFC 6886 s3.3).
        """
        table = self.makeTable(maxLifetime=3600)
        self.assertEqual(table.map(ALICE, TCP, 1, 1025, 2**32 - 1).lifetime, 3600)
        self.assertEqual(table.map(ALICE, TCP, 2, 1026, 10).lifetime, 10)

    def test_perClientLimit(self) -> None:
        """
        Beyond its mapping limit a client is out of resources (result 4,
        RFC 6886 s3.5); TCP and UDP count together; renewals and other
        clients are unaffected.
        """
        table = self.makeTable(maxMappingsPerClient=2)
        table.map(ALICE, TCP, 1, 2001, 60)
        table.map(ALICE, UDP, 2, 2002, 60)
        error = self.assertRaises(Refused, table.map, ALICE, TCP, 3, 0, 60)
        self.assertEqual(error.resultCode, ResultCode.OUT_OF_RESOURCES)
        self.assertEqual(str(error), "client at its limit of 2 mappings (result 4)")
        self.assertEqual(table.map(ALICE, TCP, 1, 0, 60).externalPort, 2001)
        table.map(BOB, TCP, 3, 0, 60)
        table.delete(ALICE, TCP, 1)
        table.map(ALICE, TCP, 3, 0, 60)

    def test_portRange(self) -> None:
        """
        Only ports in the configured range are granted; a suggestion outside
        it gets one inside; when the range is used up the request is out of
        resources (RFC 6886 s3.3: "or return an error code if no external
        ports are available").
        """
        table = self.makeTable(minPort=5000, maxPort=5002)
        granted = {
            table.map(ALICE, UDP, 80, 80, 60).externalPort,
            table.map(ALICE, UDP, 5001, 5001, 60).externalPort,
            table.map(BOB, UDP, 9000, 9000, 60).externalPort,
        }
        self.assertEqual(granted, {5000, 5001, 5002})
        error = self.assertRaises(Refused, table.map, CAROL, UDP, 1, 0, 60)
        self.assertEqual(str(error), "no external port is free (result 4)")
        # The companion ports are Alice's: Bob cannot have them for TCP.
        self.assertRaises(Refused, table.map, BOB, TCP, 1, 5001, 60)
        self.assertEqual(table.map(ALICE, TCP, 1, 5001, 60).externalPort, 5001)

    def test_gatewayLimit(self) -> None:
        """
        Beyond the gateway-wide limit every new mapping is out of resources
        (result 4, RFC 6886 s3.5), whoever asks; renewals still work, and a
        deletion makes room.
        """
        table = self.makeTable(maxMappings=3)
        table.map(ALICE, TCP, 1, 2001, 60)
        table.map(BOB, TCP, 1, 2002, 60)
        table.map(CAROL, TCP, 1, 2003, 60)
        error = self.assertRaises(Refused, table.map, DAVE, TCP, 1, 0, 60)
        self.assertEqual(str(error), "gateway at its limit of 3 mappings (result 4)")
        self.assertEqual(table.map(ALICE, TCP, 1, 0, 60).externalPort, 2001)
        table.delete(BOB, TCP, 1)
        self.assertEqual(table.map(DAVE, TCP, 1, 2002, 60).externalPort, 2002)

    def test_fairShare(self) -> None:
        """
        A client may not take a mapping while it holds as many as the
        gateway has left, so that many clients (or forged sources) cannot
        take the last ports from one that holds none: with 10 ports and 4
        greedy clients, a fifth still gets one.
        """
        table = self.makeTable(minPort=5000, maxPort=5009)
        greedy = [IPv4Address(f"10.0.1.{i}") for i in range(1, 5)]
        for port in range(1, 20):
            for client in greedy:
                try:
                    table.map(client, UDP, port, 0, 60)
                except Refused as e:
                    self.assertEqual(
                        str(e),
                        "client holds as many mappings as the gateway has left"
                        " (result 4)",
                    )
        self.assertEqual([len(table.mappingsOf(c)) for c in greedy], [2, 2, 2, 2])
        self.assertEqual(len(table), 8)
        table.map(ALICE, UDP, 1, 0, 60)
        # Alice's own companion port needs no new port.
        table.map(ALICE, TCP, 1, table.mappingsOf(ALICE)[0].externalPort, 60)
        self.assertRaises(Refused, table.map, ALICE, UDP, 2, 0, 60)

    def test_portZeroAndZeroLifetimeRejected(self) -> None:
        """
        Internal port 0 and lifetime 0 are not mappings (RFC 6886 s3.4:
        they mean deletion); the table refuses them as programming errors.
        """
        self.assertRaises(ValueError, self.table.map, ALICE, TCP, 0, 0, 60)
        self.assertRaises(ValueError, self.table.map, ALICE, TCP, 1, 0, 0)
        self.assertEqual(len(self.table), 0)

    def test_badLimits(self) -> None:
        """
        Limits out of range are refused.
        """
        for limits in [(0, 10, 1, 1), (10, 9, 1, 1), (1, 65536, 1, 1)]:
            self.assertRaises(ValueError, checkLimits, *limits)
        self.assertRaises(ValueError, checkLimits, 1, 2, 0, 1)
        self.assertRaises(ValueError, checkLimits, 1, 2, 2**32, 1)
        self.assertRaises(ValueError, checkLimits, 1, 2, 1, 0)
        self.assertRaises(ValueError, checkLimits, 1, 2, 1, 1, 0)
        self.assertRaises(ValueError, MappingTable, self.clock, self.backend, minPort=0)
        checkLimits(1, 65535, 2**32 - 1, 1)


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
        self.assertEqual(error.resultCode, ResultCode.NOT_AUTHORIZED)
        self.backend.removeError = OSError("no")
        error = self.assertRaises(Refused, self.table.delete, ALICE, TCP, 6000)
        self.assertEqual(error.resultCode, ResultCode.NETWORK_FAILURE)
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

        def removeOne(address: IPv4Address, protocol: Protocol, i: int, e: int) -> None:
            if i == 1:
                raise OutOfResourcesError(4)
            broken(address, protocol, i, e)

        self.backend.removeMapping = removeOne  # type: ignore[method-assign]
        deleted, error = self.table.deleteAll(ALICE, UDP)
        self.assertEqual([m.internalPort for m in deleted], [2])
        assert error is not None
        self.assertEqual(error.resultCode, ResultCode.OUT_OF_RESOURCES)
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


class BackendFailureTests(TableTestsMixin, SynchronousTestCase):
    def test_gatewayErrorKeepsItsCode(self) -> None:
        """
        A backend's L{GatewayError} refuses the request with its result
        code, in the table's own words (not "gateway answered ..."), and the
        table is unchanged.
        """
        self.backend.addError = OutOfResourcesError(4)
        error = self.assertRaises(Refused, self.table.map, ALICE, TCP, 1, 5000, 60)
        self.assertEqual(error.resultCode, ResultCode.OUT_OF_RESOURCES)
        self.assertEqual(
            str(error), "the backend refused to add the mapping (result 4)"
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
        self.assertEqual(error.resultCode, ResultCode.NETWORK_FAILURE)
        self.assertEqual(error.detail, "OSError('firewall said no')")
        self.assertIs(error.__cause__, self.backend.addError)
        self.assertEqual(len(self.table), 0)
        self.assertEqual(self.events, [])


class EpochTests(TableTestsMixin, SynchronousTestCase):
    def test_wholeSecondsSinceStart(self) -> None:
        """
        The epoch is the whole seconds since the table was created (RFC 6886
        s3.6), from the injected clock.
        """
        self.assertEqual(self.table.epoch(), 0)
        self.clock.advance(0.9)
        self.assertEqual(self.table.epoch(), 0)
        self.clock.advance(0.1)
        self.assertEqual(self.table.epoch(), 1)
        self.clock.advance(86400)
        self.assertEqual(self.table.epoch(), 86401)

    def test_wraps(self) -> None:
        """
        The epoch is a 32-bit field (RFC 6886 s3.2): it wraps.
        """
        self.clock.advance(2**32 + 5)
        self.assertEqual(self.table.epoch(), 5)


class MemoryBackendTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        L{MemoryBackend} provides L{IMappingBackend}.
        """
        self.assertTrue(verifyObject(IMappingBackend, MemoryBackend()))

    def test_capacity(self) -> None:
        """
        Beyond its capacity it is out of resources; a second forward of one
        port is refused; removing what is not there does nothing.
        """
        backend = MemoryBackend(capacity=1)
        backend.addMapping(ALICE, TCP, 1, 1000)
        self.assertRaises(NotAuthorizedError, backend.addMapping, BOB, TCP, 1, 1000)
        self.assertRaises(OutOfResourcesError, backend.addMapping, BOB, TCP, 1, 1001)
        backend.removeMapping(BOB, TCP, 1, 1000)
        self.assertEqual(backend.forwards, {(TCP, 1000): (ALICE, 1)})
        backend.removeMapping(ALICE, TCP, 1, 1000)
        self.assertEqual(backend.forwards, {})


class PortPoolTests(SynchronousTestCase):
    def test_nextFreeWraps(self) -> None:
        """
        The next free port is found above the start, then from the bottom.
        """
        pool = _PortPool(1000, 1199)
        for port in range(1000, 1200):
            if port not in (1003, 1150):
                pool.take(port)
        self.assertEqual(pool.nextFree(1000), 1003)
        self.assertEqual(pool.nextFree(1004), 1150)
        self.assertEqual(pool.nextFree(1151), 1003)
        self.assertEqual(pool.nextFree(5), 1003)
        self.assertEqual(pool.nextFree(70000), 1003)
        pool.take(1003)
        pool.take(1150)
        self.assertIsNone(pool.nextFree(1000))
        pool.release(1199)
        self.assertEqual(pool.nextFree(1000), 1199)
        self.assertIn(1199, pool)
        self.assertNotIn(1198, pool)
        self.assertNotIn(999, pool)

    @given(
        st.integers(1, 300),
        st.integers(0, 500),
        st.lists(st.tuples(st.booleans(), st.integers(0, 799)), max_size=200),
        st.integers(0, 900),
    )
    def test_modelled(
        self, low: int, size: int, ops: list[tuple[bool, int]], start: int
    ) -> None:
        """
        Whatever is taken and released, L{_PortPool.nextFree} agrees with a
        plain set searched in order.
        """
        high = low + size
        pool = _PortPool(low, high)
        free = set(range(low, high + 1))
        for take, offset in ops:
            port = low + offset % (size + 1)
            if take:
                pool.take(port)
                free.discard(port)
            else:
                pool.release(port)
                free.add(port)
        origin = min(max(start, low), high)
        ordered = sorted(free, key=lambda p: (p < origin, p))
        self.assertEqual(pool.nextFree(start), ordered[0] if ordered else None)


class NaiveTable:
    """
    The table's documented behaviour written the slow, obvious way: a list
    of mappings searched in full; the reference for L{ModelTests}.
    """

    def __init__(
        self, low: int, high: int, maxLifetime: int, limit: int, total: int
    ) -> None:
        self.low, self.high = low, high
        self.maxLifetime, self.limit, self.total = maxLifetime, limit, total
        self.mappings: list[
            list[Any]
        ] = []  # [client, protocol, internal, external, expires]

    def expire(self, now: float) -> None:
        self.mappings = [m for m in self.mappings if m[4] > now]

    def available(self, client: IPv4Address, protocol: Protocol, port: int) -> bool:
        if not self.low <= port <= self.high:
            return False
        for other, proto, _, external, _ in self.mappings:
            if external == port and (proto == protocol or other != client):
                return False
        return True

    def map(
        self,
        now: float,
        client: IPv4Address,
        protocol: Protocol,
        internal: int,
        suggested: int,
        lifetime: int,
    ) -> tuple[int, int] | str:
        self.expire(now)
        granted = min(lifetime, self.maxLifetime)
        for m in self.mappings:
            if m[:3] == [client, protocol, internal]:
                m[4] = now + granted
                return (m[3], granted)
        held = sum(m[0] == client for m in self.mappings)
        if held >= self.limit or len(self.mappings) >= self.total:
            return "out of resources"
        used = {m[3] for m in self.mappings}
        if self.available(client, protocol, suggested):
            port = suggested
        else:
            start = suggested if self.low <= suggested <= self.high else HIGH_PORT
            start = min(max(start, self.low), self.high)
            order = [*range(start, self.high + 1), *range(self.low, start)]
            free = [p for p in order if p not in used]
            if not free:
                return "out of resources"
            port = free[0]
        # Fair share: no more than the gateway has left, in mappings and,
        # when the port is not the client's companion port, in ports.
        left = self.total - len(self.mappings)
        if port not in used:
            left = min(left, self.high - self.low + 1 - len(used))
        if held >= left:
            return "out of resources"
        self.mappings.append([client, protocol, internal, port, now + granted])
        return (port, granted)

    def delete(
        self, now: float, client: IPv4Address, protocol: Protocol, internal: int
    ) -> None:
        self.expire(now)
        self.mappings = [
            m for m in self.mappings if m[:3] != [client, protocol, internal]
        ]

    def deleteAll(self, now: float, client: IPv4Address, protocol: Protocol) -> None:
        self.expire(now)
        self.mappings = [m for m in self.mappings if m[:2] != [client, protocol]]

    def state(self) -> list[tuple[Any, ...]]:
        return sorted((str(m[0]), m[1].label, m[2], m[3], m[4]) for m in self.mappings)


_clients = st.sampled_from([ALICE, BOB, IPv4Address("10.0.0.4")])
_protocols = st.sampled_from([TCP, UDP])
_operations = st.one_of(
    st.tuples(
        st.just("map"),
        _clients,
        _protocols,
        st.integers(1, 4),
        st.sampled_from([0, 999, 1000, 1001, 1002, 1005, 1006, 60000]),
        st.integers(1, 30),
    ),
    st.tuples(st.just("delete"), _clients, _protocols, st.integers(1, 4)),
    st.tuples(st.just("deleteAll"), _clients, _protocols),
    st.tuples(st.just("advance"), st.integers(0, 12)),
)


class ModelTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_operations, max_size=60))
    def test_agreesWithNaiveTable(self, operations: list[tuple[Any, ...]]) -> None:
        """
        Whatever the sequence of requests and time steps, the table grants
        the same ports and lifetimes, refuses the same requests and holds
        the same mappings as the obvious implementation of RFC 6886 s3.3
        and s3.4 (companion ports, next free port, per-client and
        gateway-wide limits, fair share, expiry), and its backend holds
        exactly its mappings.
        """
        clock = Clock()
        backend = MemoryBackend()
        table = MappingTable(
            clock,
            backend,
            minPort=1000,
            maxPort=1005,
            maxLifetime=20,
            maxMappingsPerClient=3,
            maxMappings=5,
        )
        model = NaiveTable(1000, 1005, 20, 3, 5)
        for operation in operations:
            name, *args = operation
            now = clock.seconds()
            if name == "advance":
                clock.advance(args[0])
                table.expire()
                model.expire(clock.seconds())
            elif name == "map":
                try:
                    mapping = table.map(*args)
                    got: tuple[int, int] | str = (
                        mapping.externalPort,
                        mapping.lifetime,
                    )
                except Refused:
                    got = "out of resources"
                self.assertEqual(got, model.map(now, *args), operation)
            elif name == "delete":
                table.delete(*args)
                model.delete(now, *args)
            else:
                table.deleteAll(*args)
                model.deleteAll(now, *args)
            ours = sorted(
                (
                    str(m.client),
                    m.protocol.label,
                    m.internalPort,
                    m.externalPort,
                    m.expires,
                )
                for m in table._byKey.values()
            )
            self.assertEqual(ours, model.state(), operation)
            self.assertEqual(
                sorted((p.label, e) for p, e in backend.forwards),
                sorted((m[1], m[3]) for m in model.state()),
            )
