"""
Tests for L{twisted_natpmp._exchange._socket} with a gateway at a scoped IPv6
address (a router's link-local address, as the default IPv6 route names it,
RFC 6887 s8.1): the socket is not connected (Twisted's C{connect()} loses
the scope) but sends to C{getaddrinfo}'s 4-tuple and filters sources itself.
No packet leaves this process: the socket's transport is a recorder.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._exchange._socket import GatewaySocket, scopedDestination

SCOPED = IPv6Address("fe80::1%lo")


class RecordingTransport:
    """
    Stands in for a UDP port: records what is sent and connected to.
    """

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []
        self.connected: list[tuple[str, int]] = []

    def write(self, packet: bytes, addr: Any = None) -> None:
        self.written.append((packet, addr))

    def connect(self, host: str, port: int) -> None:
        self.connected.append((host, port))


class ScopedDestinationTests(SynchronousTestCase):
    def test_fourTuple(self) -> None:
        """
        A scoped IPv6 address gives the 4-tuple with its interface's index.
        """
        self.assertEqual(
            scopedDestination(SCOPED, 5351),
            ("fe80::1", 5351, 0, socket.if_nametoindex("lo")),
        )

    def test_unscoped(self) -> None:
        """
        An unscoped IPv6 address, or an IPv4 one, needs no 4-tuple.
        """
        self.assertIsNone(scopedDestination(IPv6Address("2001:db8::1"), 5351))
        self.assertIsNone(scopedDestination(IPv4Address("10.0.0.1"), 5351))

    def test_unknownScope(self) -> None:
        """
        A scope that names no interface is refused in one line naming the
        address.
        """
        gateway = IPv6Address("fe80::1%nosuchinterface0")
        e = self.assertRaises(ValueError, scopedDestination, gateway, 5351)
        self.assertIn("fe80::1%nosuchinterface0", str(e))


class ScopedSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.socket = GatewaySocket(
            Clock(),
            SCOPED,
            5351,
            received=lambda datagram, source: self.received.append((datagram, source)),
            refused=lambda: None,
            lost=lambda: None,
            protocolName="PCP",
        )
        self.transport = RecordingTransport()
        self.socket.protocol.transport = self.transport  # type: ignore[assignment]
        self.socket.protocol.startProtocol()

    def test_notConnected(self) -> None:
        """
        The socket is not connected: C{connect()} would lose the scope.
        """
        self.assertFalse(self.socket.connectSocket)
        self.assertEqual(self.transport.connected, [])

    def test_sendsToFourTuple(self) -> None:
        """
        Every packet goes to the 4-tuple, the scope kept.
        """
        self.socket.send(b"packet")
        [(packet, addr)] = self.transport.written
        self.assertEqual(packet, b"packet")
        self.assertEqual(addr[1:], (5351, 0, socket.if_nametoindex("lo")))

    def test_sourcesFiltered(self) -> None:
        """
        Only the gateway's address and port count, the scope Twisted leaves
        in the host or not (RFC 6887 s8.3: a response from elsewhere is
        not the server's).
        """
        # RFC 6887 s8.3
        deliver = self.socket.protocol.datagramReceived
        deliver(b"one", ("fe80::1%lo", 5351))
        deliver(b"two", ("fe80::1", 5351))
        deliver(b"stranger", ("fe80::2%lo", 5351))
        deliver(b"wrong port", ("fe80::1%lo", 5350))
        self.assertEqual([datagram for datagram, _ in self.received], [b"one", b"two"])

    def test_unknownScopeRefusedWhenBound(self) -> None:
        """
        A scope that names no interface where the port is bound is refused
        then, in one line naming the address.
        """
        gateway = GatewaySocket(
            Clock(),
            IPv6Address("fe80::1%nosuchinterface0"),
            5351,
            received=lambda datagram, source: None,
            refused=lambda: None,
            lost=lambda: None,
        )
        gateway.protocol.transport = RecordingTransport()  # type: ignore[assignment]
        e = self.assertRaises(ValueError, gateway.protocol.startProtocol)
        self.assertIn("fe80::1%nosuchinterface0", str(e))

    def test_unscopedStillConnects(self) -> None:
        """
        A gateway at a global IPv6 address is connected to, as before.
        """
        gateway = GatewaySocket(
            Clock(),
            IPv6Address("2001:db8::1"),
            5351,
            received=lambda datagram, source: None,
            refused=lambda: None,
            lost=lambda: None,
        )
        transport = RecordingTransport()
        gateway.protocol.transport = transport  # type: ignore[assignment]
        gateway.protocol.startProtocol()
        self.assertTrue(gateway.connectSocket)
        self.assertEqual(transport.connected, [("2001:db8::1", 5351)])
