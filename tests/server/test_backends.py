"""
Tests for L{twisted_natpmp.server.backends}.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp.errors import (
    NotAuthorizedError,
    OutOfResourcesError,
)
from twisted_natpmp.interfaces import IMappingBackend
from twisted_natpmp.server.backends import MemoryBackend

from ._tablefakes import (
    ALICE,
    BOB,
    TCP,
    UDP,
)


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

    def test_ipv6AndMeaningOnly(self) -> None:
        """
        An IPv6 internal address forwards like an IPv4 one (a pinhole's
        table is the same); refusals carry a meaning and no code, for the
        responder to number in its own protocol.
        """
        backend = MemoryBackend(capacity=1)
        host = IPv6Address("2001:db8::2")
        backend.addMapping(host, UDP, 5000, 5000)
        self.assertEqual(backend.forwards, {(UDP, 5000): (host, 5000)})
        taken = self.assertRaises(
            NotAuthorizedError, backend.addMapping, ALICE, UDP, 1, 5000
        )
        full = self.assertRaises(
            OutOfResourcesError, backend.addMapping, ALICE, UDP, 1, 5001
        )
        self.assertEqual((taken.resultCode, full.resultCode), (None, None))
        backend.removeMapping(host, UDP, 5000, 5000)
        self.assertEqual(backend.forwards, {})
