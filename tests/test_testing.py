"""
Tests for the shipped fakes of L{twisted_natpmp.testing}: the in-memory UDP
network (L{twisted_natpmp.testing._udp}) and the scripted gateway
(L{twisted_natpmp.testing._gateway}).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IMulticastTransport,
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from twisted_natpmp import testing
from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    decodeResponse,
)
from twisted_natpmp.negotiate import NegotiatingMapper, ProtocolMemory, mapperFor
from twisted_natpmp.pcp._build import announceRequest
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp._wire import isNATPMPUnsupportedVersion
from twisted_natpmp.testing import (
    Datagram,
    HostReactor,
    MemoryUDPNetwork,
    MemoryUDPPort,
    ScriptedGateway,
)
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.refused = 0
        self.stopped = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))

    def connectionRefused(self) -> None:
        self.refused += 1

    def stopProtocol(self) -> None:
        self.stopped += 1


class InterfaceTests(SynchronousTestCase):
    def test_port(self) -> None:
        # The ports pass for real ones.
        network = MemoryUDPNetwork()
        port = network.host(HOST).listenUDP(0, Recorder())
        for interface in (IListeningPort, IUDPTransport, IMulticastTransport):
            self.assertTrue(verifyClass(interface, MemoryUDPPort))
            self.assertTrue(verifyObject(interface, port))
        port.startListening()
        self.assertTrue(port.connected)

    def test_reactor(self) -> None:
        reactor = MemoryUDPNetwork().host(HOST)
        for interface in (IReactorUDP, IReactorMulticast, IReactorTime):
            self.assertTrue(verifyClass(interface, HostReactor))
            self.assertTrue(verifyObject(interface, reactor))

    def test_publicNames(self) -> None:
        # twisted_natpmp.testing names them all.
        for name in ("Datagram", "HostReactor", "MemoryUDPNetwork", "MemoryUDPPort"):
            self.assertIs(getattr(testing, name), globals()[name])
        self.assertIs(testing.ScriptedGateway, ScriptedGateway)
        self.assertRaises(AttributeError, getattr, testing, "Nothing")

    def test_oldHomes(self) -> None:
        # The tests' old modules still name the same objects.
        from tests import _gateway, _memudp

        self.assertIs(_memudp.MemoryUDPNetwork, MemoryUDPNetwork)
        self.assertIs(_gateway.ScriptedGateway, ScriptedGateway)


class NetworkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.a = Recorder()
        self.b = Recorder()
        self.portA = self.network.host("10.0.0.2").listenUDP(0, self.a)
        self.portB = self.network.host("10.0.0.3").listenUDP(7000, self.b)

    def test_delivery(self) -> None:
        # Delivered through the clock, never while sending; logged.
        self.portA.write(b"hi", ("10.0.0.3", 7000))
        self.assertEqual(self.b.received, [])
        self.network.flush()
        source = ("10.0.0.2", self.portA.port)
        self.assertEqual(self.b.received, [(b"hi", source)])
        self.assertEqual(
            self.network.sentTo(("10.0.0.3", 7000)),
            [Datagram(source, ("10.0.0.3", 7000), b"hi", 0.0)],
        )

    def test_ephemeralPorts(self) -> None:
        self.assertEqual(self.portA.port, 40000)
        other = self.network.host("10.0.0.2").listenUDP(0, Recorder())
        self.assertEqual(other.port, 40001)
        self.assertEqual(self.portA.getHost().host, "10.0.0.2")

    def test_addressInUse(self) -> None:
        self.assertRaises(
            CannotListenError,
            self.network.host("10.0.0.3").listenUDP,
            7000,
            Recorder(),
        )

    def test_delay(self) -> None:
        network = MemoryUDPNetwork(delay=0.5)
        receiver = Recorder()
        network.host("10.0.0.3").listenUDP(7000, receiver)
        network.host("10.0.0.2").listenUDP(0, Recorder()).write(
            b"x", ("10.0.0.3", 7000)
        )
        network.flush()
        self.assertEqual(receiver.received, [])
        network.clock.advance(0.5)
        self.assertEqual(len(receiver.received), 1)

    def test_drop(self) -> None:
        # Lost datagrams are still logged.
        self.network.drop = lambda datagram: datagram.data == b"lost"
        self.portA.write(b"lost", ("10.0.0.3", 7000))
        self.portA.write(b"kept", ("10.0.0.3", 7000))
        self.network.flush()
        self.assertEqual([d for d, _ in self.b.received], [b"kept"])
        self.assertEqual(len(self.network.log), 2)

    def test_connected(self) -> None:
        # A connected port hears only its peer, and writes without address.
        self.portB.connect("10.0.0.9", 1)
        self.portA.write(b"x", ("10.0.0.3", 7000))
        self.network.flush()
        self.assertEqual(self.b.received, [])
        self.portA.connect("10.0.0.3", 7000)
        self.portA.write(b"y")
        self.network.flush()
        self.assertEqual(self.b.received, [])
        self.portB.connect("10.0.0.2", self.portA.port)
        self.portA.write(b"z")
        self.network.flush()
        self.assertEqual([d for d, _ in self.b.received], [b"z"])

    def test_refused(self) -> None:
        # As the kernel on ICMP port unreachable: a connected sender hears
        # connectionRefused; an unconnected one hears nothing.
        self.portA.write(b"x", ("10.0.0.3", 9))
        self.network.flush()
        self.assertEqual(self.a.refused, 0)
        self.portA.connect("10.0.0.3", 9)
        self.portA.write(b"x")
        self.network.flush()
        self.assertEqual(self.a.refused, 1)

    def test_stopListening(self) -> None:
        # Unbinds once, stops the protocol once; a closed port cannot write.
        self.portB.stopListening()
        self.portB.loseConnection()
        self.assertEqual(self.b.stopped, 1)
        self.assertFalse(self.portB.connected)
        self.portA.write(b"x", ("10.0.0.3", 7000))
        self.network.flush()
        self.assertEqual(self.b.received, [])
        self.assertRaises(AssertionError, self.portB.write, b"x", ("10.0.0.2", 1))

    def test_multicast(self) -> None:
        # Multicast ports share a port, hear the groups they joined and
        # unicast to their host.
        first, second = Recorder(), Recorder()
        reactor = self.network.host("10.0.0.5")
        p1 = reactor.listenMulticast(5350, first, interface="224.0.0.1")
        p2 = reactor.listenMulticast(5350, second, listenMultiple=True)
        self.successResultOf(p1.joinGroup("224.0.0.1"))
        self.assertEqual(p1.host, "10.0.0.5")
        self.portA.write(b"all", ("224.0.0.1", 5350))
        self.portA.write(b"one", ("10.0.0.5", 5350))
        self.network.flush()
        self.assertEqual([d for d, _ in first.received], [b"all", b"one"])
        self.assertEqual([d for d, _ in second.received], [b"one"])
        self.successResultOf(p1.leaveGroup("224.0.0.1"))
        p2.stopListening()
        self.portA.write(b"again", ("224.0.0.1", 5350))
        self.network.flush()
        self.assertEqual(len(first.received), 2)
        self.assertNotIn(p2, self.network.multicastPorts)

    def test_time(self) -> None:
        reactor = self.network.host(HOST)
        calls: list[int] = []
        call = reactor.callLater(2, calls.append, 1)
        self.assertEqual(reactor.getDelayedCalls(), [call])
        self.clock.advance(2)
        self.assertEqual((calls, reactor.seconds()), ([1], 2.0))


class ScriptedGatewayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.host = Recorder()
        self.port = self.network.host(HOST).listenUDP(0, self.host)

    def ask(self, request: ExternalAddressRequest | MapRequest) -> list[object]:
        self.host.received.clear()
        self.port.write(request.encode(), (GATEWAY, 5351))
        self.network.flush()
        return [decodeResponse(d) for d, _ in self.host.received]

    def test_answers(self) -> None:
        # A well-behaved gateway (RFC 6886 s3.2, s3.3, s3.4).
        self.assertEqual(
            self.ask(ExternalAddressRequest()),
            [ExternalAddressResponse(0, 100, EXTERNAL)],
        )
        self.assertEqual(
            self.ask(MapRequest(Transport.TCP, 80, 8080, 60)),
            [MapResponse(Transport.TCP, 0, 100, 80, 8080, 60)],
        )
        self.assertEqual(
            self.ask(MapRequest(Transport.UDP, 80, 0, 60)),
            [MapResponse(Transport.UDP, 0, 100, 80, 50000, 60)],
        )
        self.assertEqual(
            self.ask(MapRequest(Transport.UDP, 80, 0, 0)),
            [MapResponse(Transport.UDP, 0, 100, 80, 0, 0)],
        )
        source = (HOST, self.port.port)
        self.assertEqual(self.gateway.requests[0], (ExternalAddressRequest(), source))
        self.assertEqual(len(self.gateway.requests), 4)

    def test_scripted(self) -> None:
        # The test sets the epoch, the lifetime granted, the address and
        # the whole reply.
        self.gateway.epoch = 7
        self.gateway.granted = 30
        self.gateway.external = EXTERNAL + 1
        self.assertEqual(
            self.ask(ExternalAddressRequest()),
            [ExternalAddressResponse(0, 7, EXTERNAL + 1)],
        )
        self.assertEqual(
            self.ask(MapRequest(Transport.TCP, 80, 80, 7200)),
            [MapResponse(Transport.TCP, 0, 7, 80, 80, 30)],
        )
        self.gateway.reply = lambda request: []
        self.assertEqual(self.ask(ExternalAddressRequest()), [])
        self.gateway.reply = lambda request: [b"\x00\x80\x00\x03" + bytes(8)] * 2
        self.assertEqual(
            self.ask(ExternalAddressRequest()),
            [ExternalAddressResponse(3, 0, "0.0.0.0")] * 2,
        )

    def test_unsupportedVersion(self) -> None:
        # RFC 6886 s3.5 (Errata 3618), RFC 6887 s9: a packet of another
        # version (here PCP's ANNOUNCE, version 2) gets the 8-byte reply:
        # version 0, opcode 128, result 1, the epoch.  It is not a request
        # for reply(), which is not called.
        self.gateway.epoch = 1234
        called: list[object] = []

        def reply(request: object) -> list[bytes]:
            called.append(request)
            return []

        self.gateway.reply = reply
        packet = announceRequest(IPv4Address(HOST)).encode()
        self.port.write(packet, (GATEWAY, 5351))
        self.port.write(b"\x01\x00", (GATEWAY, 5351))
        self.network.flush()
        expected = b"\x00\x80\x00\x01" + (1234).to_bytes(4, "big")
        self.assertEqual([d for d, _ in self.host.received], [expected] * 2)
        self.assertTrue(isNATPMPUnsupportedVersion(expected))
        source = (HOST, self.port.port)
        self.assertEqual(
            self.gateway.unsupported, [(packet, source), (b"\x01\x00", source)]
        )
        self.assertEqual(self.gateway.requests, [])
        self.assertEqual(called, [])

    def test_autoFallsBack(self) -> None:
        # It stands in for a NAT-PMP-only gateway under "auto": the PCP
        # request is refused, and the same call is made in NAT-PMP.
        mapper = mapperFor(
            self.network.host(HOST),
            GATEWAY,
            "auto",
            memory=ProtocolMemory(),
            nonces=MemoryNonceStore(),
            monotonic=self.network.clock.seconds,
        )
        assert isinstance(mapper, NegotiatingMapper)
        d = mapper.addMapping(Transport.TCP, 7000, 7000, 600)
        self.network.flush()
        mapping = self.successResultOf(d)
        self.assertEqual(mapping.externalPort, 7000)
        self.assertEqual(len(self.gateway.unsupported), 1)
        self.assertEqual(
            [r for r, _ in self.gateway.requests],
            [MapRequest(Transport.TCP, 7000, 7000, 600)],
        )
