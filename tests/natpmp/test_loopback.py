"""
Our client against our gateway over real UDP on 127.0.0.1, with the real
reactor.  The gateway keeps time on a L{Clock} (its epoch, expiry and
announcements), so nothing here waits on the wall clock; its announcements
go to a loopback listener, never to 224.0.0.1.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from twisted_natpmp.backends import MemoryBackend
from twisted_natpmp.errors import OutOfResourcesError
from twisted_natpmp.natpmp._wire import (
    ExternalAddressResponse,
    Protocol,
    decodeResponse,
)
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient
from twisted_natpmp.server import ANNOUNCE_INTERVALS, GatewayService

LOOPBACK = "127.0.0.1"
EXTERNAL = IPv4Address("192.0.3.77")
#: Short retransmissions: the gateway is local and answers at once.
QUICK = (0.25, 0.5, 1.0, 2.0)


class Listener(DatagramProtocol):
    """
    Collects datagrams; fires C{waiting} Deferreds as they arrive.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._waiting: list[tuple[int, Deferred[bytes]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)
        for count, d in list(self._waiting):
            if len(self.received) >= count:
                self._waiting.remove((count, d))
                d.callback(self.received[count - 1])

    def nth(self, count: int) -> Deferred[bytes]:
        """
        Fire with the C{count}th datagram (1-based), now or when it comes.
        """
        d: Deferred[bytes] = Deferred()
        if len(self.received) >= count:
            d.callback(self.received[count - 1])
        else:
            self._waiting.append((count, d))
        return d


class LoopbackTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.backend = MemoryBackend()
        self.announcements = Listener()
        announcePort = cast(Any, reactor).listenUDP(
            0, self.announcements, interface=LOOPBACK
        )
        self.addCleanup(announcePort.stopListening)
        self.service = GatewayService(
            reactor,
            [f"{LOOPBACK}/8"],
            EXTERNAL,
            port=0,
            backend=self.backend,
            maxLifetime=3600,
            maxMappingsPerClient=3,
            announceTo=(LOOPBACK, announcePort.getHost().port),
            clock=self.clock,
        )
        self.service.startService()
        self.addCleanup(self._stopService)
        self.gatewayPort = self.service.ports[0].getHost().port  # type: ignore[attr-defined]
        self.client = self.makeClient()

    def _stopService(self) -> Deferred[object] | None:
        if self.service.running:
            return self.service.stopService()
        return None

    def makeClient(self) -> NATPMPClient:
        client = listenClient(
            reactor,
            LOOPBACK,
            interface=LOOPBACK,
            gatewayPort=self.gatewayPort,
            timeouts=QUICK,
        )
        self.addCleanup(client.stop)
        return client

    @inlineCallbacks
    def test_externalAddress(self) -> Any:
        """
        The client learns the configured external address (RFC 6886 s3.2).
        """
        address = yield self.client.externalAddress()
        self.assertEqual(address, EXTERNAL)
        self.assertEqual(self.client.lastExternalAddress, EXTERNAL)

    @inlineCallbacks
    def test_mapRenewDelete(self) -> Any:
        """
        Map, renew (same external port, RFC 6886 s3.3), delete (s3.4),
        with the gateway's epoch in each reply (s3.6).
        """
        mapping = yield self.client.addMapping(Protocol.TCP, 6000, 7000, 7200)
        self.assertEqual(
            (mapping.transport, mapping.internalPort, mapping.externalPort),
            (Protocol.TCP, 6000, 7000),
        )
        # RFC 6886 s3.3: the gateway MAY reduce the lifetime.
        self.assertEqual(mapping.lifetime, 3600)
        self.assertEqual(mapping.epoch, 0)
        self.assertEqual(
            self.backend.forwards, {(Protocol.TCP, 7000): (IPv4Address(LOOPBACK), 6000)}
        )
        self.clock.advance(1800)
        renewed = yield self.client.addMapping(Protocol.TCP, 6000, 9000, 3600)
        self.assertEqual(renewed.externalPort, 7000)
        self.assertEqual(renewed.epoch, 1800)
        yield self.client.deleteMapping(Protocol.TCP, 6000)
        self.assertEqual(self.backend.forwards, {})
        # Deleting again succeeds (RFC 6886 s3.4).
        yield self.client.deleteMapping(Protocol.TCP, 6000)

    @inlineCallbacks
    def test_deleteAll(self) -> Any:
        """
        Deleting all of one protocol leaves the other (RFC 6886 s3.4).
        """
        yield self.client.addMapping(Protocol.UDP, 6000)
        yield self.client.addMapping(Protocol.UDP, 6001, 0)
        yield self.client.addMapping(Protocol.TCP, 6000)
        yield self.client.deleteAllMappings(Protocol.UDP)
        self.assertEqual(list(self.backend.forwards), [(Protocol.TCP, 6000)])

    @inlineCallbacks
    def test_outOfResources(self) -> Any:
        """
        Beyond the per-client limit the client gets result 4 as
        L{OutOfResourcesError} (RFC 6886 s3.5).
        """
        for port in (1, 2, 3):
            yield self.client.addMapping(Protocol.UDP, port, 0)
        error = yield self.assertFailure(
            self.client.addMapping(Protocol.UDP, 4, 0), OutOfResourcesError
        )
        self.assertEqual(error.resultCode, 4)

    @inlineCallbacks
    def test_expiry(self) -> Any:
        """
        A mapping the client does not renew expires on the gateway (RFC 6886
        s3.3); asking again then creates it afresh.
        """
        yield self.client.addMapping(Protocol.UDP, 6000, 7000, 60)
        self.clock.advance(59)
        self.assertEqual(len(self.backend.forwards), 1)
        self.clock.advance(1)
        self.assertEqual(self.backend.forwards, {})
        again = yield self.client.addMapping(Protocol.UDP, 6000, 7000, 60)
        self.assertEqual((again.externalPort, again.epoch), (7000, 60))

    @inlineCallbacks
    def test_announcements(self) -> Any:
        """
        The gateway announces its external address 10 times on the RFC 6886
        s3.2.1 schedule, with the epoch updated in each, from its port; the
        client accepts the announced epoch.
        """
        first = decodeResponse((yield self.announcements.nth(1)))
        assert isinstance(first, ExternalAddressResponse)
        self.assertEqual((first.externalAddress, first.epoch), (EXTERNAL, 0))
        self.assertFalse(self.client.noteEpoch(first.epoch))
        for interval in ANNOUNCE_INTERVALS:
            self.clock.advance(interval)
        yield self.announcements.nth(10)
        self.clock.advance(1000)
        epochs = [decodeResponse(p).epoch for p in self.announcements.received]
        self.assertEqual(epochs, [0, 0, 0, 1, 3, 7, 15, 31, 63, 127])

    @inlineCallbacks
    def test_restartDetected(self) -> Any:
        """
        A restarted gateway starts a new epoch at 0 (RFC 6886 s3.6), and our
        client sees that it lost its state.
        """
        losses: list[None] = []
        self.client.addStateLossObserver(lambda: losses.append(None))
        self.clock.advance(100)
        yield self.client.externalAddress()
        self.assertEqual(losses, [])
        yield self.service.stopService()
        self.service.port = self.gatewayPort
        self.service.startService()
        yield self.client.externalAddress()
        self.assertEqual(losses, [None])

    @inlineCallbacks
    def test_junkDoesNotStopServer(self) -> Any:
        """
        Malformed packets over real UDP are dropped; the gateway keeps
        answering.
        """
        junk = Listener()
        port = cast(Any, reactor).listenUDP(0, junk, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        for packet in (
            b"",
            b"\x00",
            b"\x00\x80" + bytes(10),
            b"\x00\x02\x00",
            b"\x00\xff" * 50,
        ):
            port.write(packet, (LOOPBACK, self.gatewayPort))
        # An unknown opcode is answered (result 5), after the junk: so the
        # junk has been read by then.
        port.write(b"\x00\x05", (LOOPBACK, self.gatewayPort))
        reply = yield junk.nth(1)
        self.assertEqual(reply[:4], b"\x00\x85\x00\x05")
        address = yield self.client.externalAddress()
        self.assertEqual(address, EXTERNAL)
        self.assertEqual(len(junk.received), 1)
