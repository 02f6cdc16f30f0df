"""
Tests for L{twisted_natpmp.server._internalport}: the arriving interface of each
datagram, on real sockets on the loopback interface (the only traffic these
tests send).
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_natpmp.server import GatewayService
from twisted_natpmp.server._internalport import (
    InterfaceCheckingPort,
    LocalInterface,
    arrivalInterface,
    interfaceHolding,
    interfaceWith,
)

from ._helpers import captureLogs

LOOPBACK = "127.0.0.1"
LO_INDEX = socket.if_nametoindex("lo")
EXTERNAL = "192.0.3.77"


class Receiver(DatagramProtocol):
    """
    Fires C{arrived} with the first datagram it hears.
    """

    def __init__(self) -> None:
        self.arrived: Deferred[tuple[bytes, Any]] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.arrived.callback((datagram, addr))


def sendFromLoopback(port: int, payload: bytes) -> tuple[str, int]:
    """
    Send C{payload} to C{LOOPBACK:port} from a fresh socket on the loopback
    interface; return the socket's address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((LOOPBACK, 0))
        sender.sendto(payload, (LOOPBACK, port))
        address: tuple[str, int] = sender.getsockname()
        return address


class ArrivalInterfaceTests(SynchronousTestCase):
    def test_pktinfo(self) -> None:
        """
        The interface index is the first field of the IP_PKTINFO message;
        other ancillary messages are skipped.
        """
        info = struct.pack("@i4s4s", 7, bytes(4), bytes(4))
        self.assertEqual(
            arrivalInterface(
                [(socket.SOL_SOCKET, 1, b"x"), (socket.IPPROTO_IP, 8, info)]
            ),
            7,
        )

    def test_none(self) -> None:
        """
        Without IP_PKTINFO (or with a truncated one) the interface is
        unknown.
        """
        self.assertIsNone(arrivalInterface([]))
        self.assertIsNone(arrivalInterface([(socket.IPPROTO_IP, 8, b"\x01\x00")]))


class LookupTests(SynchronousTestCase):
    def test_loopback(self) -> None:
        """
        127.0.0.1 is the loopback interface's own address; 127.0.86.1 is in
        its network, so datagrams to it arrive there too.
        """
        own = interfaceWith(IPv4Address(LOOPBACK))
        self.assertEqual(
            own, LocalInterface("lo", LO_INDEX, IPv4Interface("127.0.0.1/8"))
        )
        self.assertIsNone(interfaceWith(IPv4Address("127.0.86.1")))
        self.assertEqual(interfaceHolding(IPv4Address("127.0.86.1")), own)
        self.assertIsNone(interfaceHolding(IPv4Address("203.0.113.254")))


def listenChecking(
    case: TestCase, address: str, index: int
) -> tuple[Receiver, Deferred[Any], int]:
    """
    Listen on C{address} with an L{InterfaceCheckingPort} for interface
    C{index}, stopped when C{case} ends.

    @return: the receiver, a L{Deferred} that fires with what arrived on
        another interface, and the port number.
    """
    receiver = Receiver()
    other: Deferred[Any] = Deferred()
    port = InterfaceCheckingPort(
        0,
        receiver,
        address,
        index,
        lambda data, addr, index: other.callback((data, addr, index)),
        reactor,  # type: ignore[arg-type]
    )
    port.startListening()  # type: ignore[no-untyped-call]
    case.addCleanup(port.stopListening)
    return receiver, other, port.getHost().port  # type: ignore[no-untyped-call]


class InterfaceCheckingPortTests(TestCase):
    timeout = 10

    def listen(self, index: int) -> tuple[Receiver, Deferred[Any], int]:
        return listenChecking(self, LOOPBACK, index)

    async def test_sameInterface(self) -> None:
        """
        A datagram that arrived on the port's interface reaches the
        protocol, with its source.
        """
        receiver, other, port = self.listen(LO_INDEX)
        source = sendFromLoopback(port, b"hello")
        self.assertEqual(await receiver.arrived, (b"hello", source))
        self.assertFalse(other.called)

    async def test_otherInterface(self) -> None:
        """
        A datagram that arrived on another interface than the port's goes
        to the callback, with the interface it did arrive on, and not to
        the protocol (RFC 6886 s3.3).
        """
        receiver, other, port = self.listen(LO_INDEX + 1000)
        source = sendFromLoopback(port, b"hello")
        self.assertEqual(await other, (b"hello", source, LO_INDEX))
        self.assertFalse(receiver.arrived.called)


class GatewayOnRealSocketsTests(TestCase):
    """
    L{GatewayService} on the real reactor checks the arriving interface.
    """

    timeout = 10

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        captureLogs(self, self.logged.append)  # type: ignore[arg-type]

    def start(self, interface: LocalInterface | None) -> GatewayService:
        service = self.gatewayService(interface)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def gatewayService(self, interface: LocalInterface | None) -> GatewayService:
        """
        A gateway on 127.0.0.1, on a port of its choosing, whose listening
        address is on C{interface}.
        """
        return GatewayService(
            reactor,  # type: ignore[arg-type]
            [f"{LOOPBACK}/8"],
            EXTERNAL,
            port=0,
            announceTo=None,
            clock=Clock(),
            interfaceOf=lambda address: interface,
        )

    async def test_requestOnOtherInterfaceDropped(self) -> None:
        """
        A request that arrives on an interface other than the one holding
        the listening address is not served and is counted as dropped (RFC
        6886 s3.3: the gateway MUST NOT accept mapping requests received on
        its external interface).
        """
        elsewhere = LocalInterface(
            "eth9", LO_INDEX + 1000, IPv4Interface("10.9.9.9/24")
        )
        service = self.start(elsewhere)
        [port] = service.ports
        self.assertIsInstance(port, InterfaceCheckingPort)
        gateway = service.gateway
        assert gateway is not None
        counted: Deferred[None] = Deferred()
        drop = gateway.drops.drop

        def countAndTell(*args: Any) -> None:
            drop(*args)
            counted.callback(None)

        self.patch(gateway.drops, "drop", countAndTell)
        request = struct.pack("!BBHHHI", 0, 2, 0, 22, 2222, 3600)
        sendFromLoopback(port.getHost().port, request)  # type: ignore[attr-defined]
        await counted
        self.assertEqual(len(gateway.table), 0)
        self.assertEqual(
            dict(gateway.drops.reasons), {"not received on an internal interface": 1}
        )

    async def test_requestOnItsInterfaceServed(self) -> None:
        """
        A request that arrives on the interface holding the address is
        served.
        """
        service = self.start(interfaceWith(IPv4Address(LOOPBACK)))
        [port] = service.ports
        replies = Receiver()
        client = cast(IReactorUDP, reactor).listenUDP(
            0, replies, interface=LOOPBACK, maxPacketSize=8192
        )
        self.addCleanup(client.stopListening)
        client.write(b"\x00\x00", (LOOPBACK, port.getHost().port))  # type: ignore[attr-defined]
        reply, _ = await replies.arrived
        self.assertEqual(reply[:4] + reply[8:], bytes.fromhex("00800000c000034d"))

    def test_noInterface(self) -> None:
        """
        An internal address that no interface holds cannot be served: the
        gateway could not tell which requests are internal.
        """
        service = self.gatewayService(None)
        error = self.assertRaises(CannotListenError, service.startService)
        self.assertIn("no network interface", str(error))
        self.assertEqual(service.ports, [])
