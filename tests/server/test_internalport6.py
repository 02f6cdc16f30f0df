"""
Tests for L{twisted_natpmp.server._internalport} on IPv6: the arriving
interface of each datagram from C{IPV6_PKTINFO}, on real sockets on the
loopback interface (::1, the only traffic these tests send).
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv6Address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from twisted_natpmp.server._internalport import (
    arrivalInterface,
    interfaceWith,
)

from .test_internalport import LO_INDEX, Receiver, listenChecking

LOOPBACK6 = "::1"


def _hasLoopback6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK6, 0))
    except OSError:
        return False
    return True


class ArrivalInterface6Tests(SynchronousTestCase):
    def test_pktinfo6(self) -> None:
        """
        The interface index is the second field of the IPV6_PKTINFO message
        (struct in6_pktinfo, RFC 3542).
        """
        info = struct.pack("@16sI", bytes(16), 9)
        self.assertEqual(arrivalInterface([(socket.IPPROTO_IPV6, 50, info)]), 9)
        self.assertIsNone(arrivalInterface([(socket.IPPROTO_IPV6, 50, b"\x01")]))


class InterfaceCheckingPort6Tests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        if not _hasLoopback6():
            raise SkipTest("no IPv6 loopback address (::1) here")

    def listen(self, index: int) -> tuple[Receiver, Deferred[Any], int]:
        return listenChecking(self, LOOPBACK6, index)

    def send(self, port: int) -> tuple[str, int]:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            sender.bind((LOOPBACK6, 0))
            sender.sendto(b"hello", (LOOPBACK6, port))
            host, sourcePort = sender.getsockname()[:2]
            return host, sourcePort

    async def test_sameInterface(self) -> None:
        """
        A datagram that arrived on the port's interface reaches the
        protocol, with its (host, port) source, as Twisted's own IPv6 port
        gives it.
        """
        receiver, other, port = self.listen(LO_INDEX)
        source = self.send(port)
        self.assertEqual(await receiver.arrived, (b"hello", source))
        self.assertFalse(other.called)

    async def test_otherInterface(self) -> None:
        """
        A datagram that arrived on another interface goes to the callback
        (RFC 6886 s3.3, applied to PCP over IPv6).
        """
        # RFC 6886 s3.3
        receiver, other, port = self.listen(LO_INDEX + 1000)
        source = self.send(port)
        self.assertEqual(await other, (b"hello", source, LO_INDEX))
        self.assertFalse(receiver.arrived.called)

    def test_lookup(self) -> None:
        """
        ::1 is found on the loopback interface.
        """
        found = interfaceWith(IPv6Address(LOOPBACK6))
        assert found is not None
        self.assertEqual((found.name, found.index), ("lo", LO_INDEX))
