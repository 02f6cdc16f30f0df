"""
Tests for L{twisted_natpmp.server.table} against a naive model, and for
its free-port bitmap (L{twisted_natpmp.server._portpool}).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.server._portpool import PortPool
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.table import (
    HIGH_PORT,
    MappingTable,
    Refused,
)

from ._tablefakes import (
    ALICE,
    BOB,
    TCP,
    UDP,
)


class PortPoolTests(SynchronousTestCase):
    def test_nextFreeWraps(self) -> None:
        """
        The next free port is found above the start, then from the bottom.
        """
        pool = PortPool(1000, 1199)
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
        Whatever is taken and released, L{PortPool.nextFree} agrees with a
        plain set searched in order.
        """
        high = low + size
        pool = PortPool(low, high)
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

    def available(self, client: IPv4Address, protocol: Transport, port: int) -> bool:
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
        protocol: Transport,
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
        self, now: float, client: IPv4Address, protocol: Transport, internal: int
    ) -> None:
        self.expire(now)
        self.mappings = [
            m for m in self.mappings if m[:3] != [client, protocol, internal]
        ]

    def deleteAll(self, now: float, client: IPv4Address, protocol: Transport) -> None:
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
