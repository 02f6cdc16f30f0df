"""
Tests for L{twisted_natpmp.server._shared.SharedTable.restore}: putting
mappings back as they were committed, without the backend.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.server._shared import SharedTable
from twisted_natpmp.server.backends import MemoryBackend

from ._tablefakes import ALICE, BOB, TCP

NONCE = b"n" * 12


class RestoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.backend = MemoryBackend()
        self.table = SharedTable(self.clock, self.backend, minPort=5000, maxPort=5099)

    def test_portsMoveBack(self) -> None:
        """
        A mapping deleted and its port given to another client are both put
        back: the first holds its port and owner again, the second is gone
        and its port's new holder is the first; the backend is not called.
        """
        first = self.table.map(ALICE, TCP, 80, 5000, 600, owner=NONCE)
        key = first.key
        self.table.delete(ALICE, TCP, 80, owner=NONCE)
        second = self.table.map(BOB, TCP, 80, 5000, 600)
        self.assertEqual(second.externalPort, 5000)
        forwards = dict(self.backend.forwards)
        self.table.restore({key: (first, NONCE), second.key: None})
        self.assertEqual(self.table.get(ALICE, TCP, 80), first)
        self.assertIsNone(self.table.get(BOB, TCP, 80))
        self.assertEqual(self.table.ownerOf(first), NONCE)
        self.assertEqual(self.backend.forwards, forwards)
        # The port is held again: another client gets the next one.
        self.assertEqual(self.table.map(BOB, TCP, 81, 5000, 600).externalPort, 5001)

    def test_expiredNotRestored(self) -> None:
        """
        A mapping whose lifetime ended meanwhile is not put back, and is
        returned, for its forward to be removed.
        """
        mapping = self.table.map(ALICE, TCP, 80, 5000, 60)
        self.clock.advance(60)
        self.assertEqual(self.table.restore({mapping.key: (mapping, None)}), [mapping])
        self.assertEqual(len(self.table), 0)

    def test_renewalUndone(self) -> None:
        """
        A renewal is put back to the lifetime committed, and its deadline
        still expires it.
        """
        old = self.table.map(ALICE, TCP, 80, 5000, 60)
        self.table.map(ALICE, TCP, 80, 5000, 3600)
        self.table.restore({old.key: (old, None)})
        self.assertEqual(self.table.get(ALICE, TCP, 80), old)
        self.clock.advance(60)
        self.assertEqual(self.table.expire(), [old])

    def test_pinhole(self) -> None:
        """
        A pinhole is put back as a pinhole, apart from the port space.
        """
        client = IPv6Address("2001:db8::2")
        pinhole = self.table.map(client, TCP, 80, 0, 600)
        self.table.delete(client, TCP, 80)
        self.table.restore({pinhole.key: (pinhole, None)})
        self.assertEqual(self.table.get(client, TCP, 80), pinhole)
        self.assertEqual(
            self.table.map(IPv4Address("10.0.0.9"), TCP, 80, 5000, 600).externalPort,
            5000,
        )
