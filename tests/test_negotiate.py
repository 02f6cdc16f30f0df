"""
Tests for L{twisted_natpmp.negotiate}: PCP first, NAT-PMP on the gateway's
8-byte "unsupported version", remembered and re-probed; deletions in the
protocol that made the mapping; L{mapperFor}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp import errors
from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    ProtocolName,
    Transport,
)
from twisted_natpmp.interfaces import IExternalAddressQuery, IPortMapper
from twisted_natpmp.natpmp._wire import MapRequest, MapResponse
from twisted_natpmp.natpmp.client import NATPMPClient
from twisted_natpmp.negotiate import (
    REPROBE_INTERVAL,
    NegotiatingMapper,
    ProtocolMemory,
    mapperFor,
    processMemory,
)
from twisted_natpmp.pcp._nonces import MemoryNonceStore, NonceKey
from twisted_natpmp.pcp.client import PCPClient
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway

from .pcp._gateway import NATPMP_UNSUPPORTED, ScriptedPCPServer

_T = TypeVar("_T")

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"


class Gateway(DatagramProtocol):
    """
    A gateway that dispatches by version byte: 0 to a NAT-PMP server, 2 to
    a PCP server, or, when C{pcp} is L{None}, answers PCP as a NAT-PMP-only
    gateway does.
    """

    def __init__(self) -> None:
        self.natpmp = ScriptedGateway()
        self.pcp: ScriptedPCPServer | None = None
        self.versions: list[int] = []

    def startProtocol(self) -> None:
        self.natpmp.transport = self.transport

    def speakPCP(self) -> ScriptedPCPServer:
        self.pcp = ScriptedPCPServer()
        self.pcp.transport = self.transport
        return self.pcp

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.versions.append(datagram[0])
        if datagram[0] == 0:
            self.natpmp.datagramReceived(datagram, addr)
        elif self.pcp is not None:
            self.pcp.datagramReceived(datagram, addr)
        else:
            assert self.transport is not None
            self.transport.write(NATPMP_UNSUPPORTED, addr)


class NegotiationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = Gateway()
        self.gatewayPort = self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.memory = ProtocolMemory()
        self.nonces = MemoryNonceStore()
        self.mapper = self.make()

    def make(self, **kwargs: Any) -> NegotiatingMapper:
        mapper = mapperFor(
            self.network.host(HOST),
            GATEWAY,
            "auto",
            memory=self.memory,
            nonces=self.nonces,
            monotonic=self.clock.seconds,
            **kwargs,
        )
        assert isinstance(mapper, NegotiatingMapper)
        return mapper

    def flushed(self, d: Deferred[_T]) -> Deferred[_T]:
        self.network.flush()
        return d

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IPortMapper, self.mapper))
        self.assertTrue(verifyObject(IExternalAddressQuery, self.mapper))
        self.assertIs(self.mapper.protocolName, ProtocolName.PCP)

    def test_fallBackInOneRoundTrip(self) -> None:
        # RFC 6887 s9, RFC 6886 s3.5: the 8-byte version-0 result-1 reply
        # makes the same call in NAT-PMP at once.
        m = self.successResultOf(
            self.flushed(self.mapper.addMapping(Transport.TCP, 7000))
        )
        self.assertIs(m.protocolName, ProtocolName.NATPMP)
        self.assertEqual(self.gateway.versions, [2, 0])
        self.assertEqual(self.clock.seconds(), 0)
        self.assertIs(self.mapper.protocolName, ProtocolName.NATPMP)
        # Remembered: the next call goes straight to NAT-PMP.
        self.successResultOf(self.flushed(self.mapper.probe()))
        self.assertEqual(self.gateway.versions, [2, 0, 0])

    def test_rememberedPerGateway(self) -> None:
        # The memory outlives one mapper (the service makes new ones).
        self.successResultOf(self.flushed(self.mapper.probe()))
        other = self.make()
        self.assertIs(other.protocolName, ProtocolName.NATPMP)
        self.successResultOf(self.flushed(other.probe()))
        self.assertEqual(self.gateway.versions, [2, 0, 0])

    def test_reprobedAfterInterval(self) -> None:
        self.successResultOf(self.flushed(self.mapper.probe()))
        self.clock.advance(REPROBE_INTERVAL)
        self.gateway.speakPCP()
        p = self.successResultOf(self.flushed(self.mapper.probe()))
        self.assertIs(p.protocolName, ProtocolName.PCP)
        self.assertEqual(self.gateway.versions, [2, 0, 2])

    def test_reprobedAfterRestart(self) -> None:
        # RFC 6886 s3.6: a NAT-PMP epoch that shows a restart, and a PCP
        # ANNOUNCE, both have the next request made in PCP again.
        self.gateway.natpmp.epoch = 5000
        self.successResultOf(self.flushed(self.mapper.probe()))
        self.gateway.natpmp.epoch = 1
        self.successResultOf(self.flushed(self.mapper.probe()))
        self.assertIs(self.mapper.protocolName, ProtocolName.PCP)
        self.successResultOf(self.flushed(self.mapper.probe()))
        self.assertEqual(self.gateway.versions, [2, 0, 0, 2, 0])
        announce = Announcement(AnnouncementKind.PCP, 0, None, (GATEWAY, 5351))
        self.assertIs(self.mapper.protocolName, ProtocolName.NATPMP)
        self.mapper.announced(announce)
        self.assertIs(self.mapper.protocolName, ProtocolName.PCP)

    def test_pcpGateway(self) -> None:
        self.gateway.speakPCP()
        m = self.successResultOf(
            self.flushed(self.mapper.addMapping(Transport.UDP, 9000))
        )
        self.assertIs(m.protocolName, ProtocolName.PCP)
        self.assertEqual(self.gateway.versions, [2])

    def test_deleteWithTheMaker(self) -> None:
        # PROTOCOL.md A2.14: a mapping is deleted in the protocol that made
        # it, whatever is chosen now.
        self.successResultOf(self.flushed(self.mapper.addMapping(Transport.TCP, 1)))
        server = self.gateway.speakPCP()
        self.memory.forget(self.mapper.gateway)
        self.successResultOf(self.flushed(self.mapper.addMapping(Transport.TCP, 2)))
        self.memory.rememberNATPMP(self.mapper.gateway, self.clock.seconds())
        del self.gateway.versions[:]
        self.successResultOf(self.flushed(self.mapper.deleteMapping(Transport.TCP, 2)))
        self.assertEqual(self.gateway.versions, [2])
        self.assertEqual(server.held, {})
        self.memory.forget(self.mapper.gateway)
        self.successResultOf(self.flushed(self.mapper.deleteMapping(Transport.TCP, 1)))
        self.assertEqual(self.gateway.versions, [2, 0])

    def test_deleteByKeptNonce(self) -> None:
        # Another process mapped it in PCP: its nonce is kept, so PCP
        # deletes it, even when this one would speak NAT-PMP.
        server = self.gateway.speakPCP()
        first = self.make()
        self.successResultOf(self.flushed(first.addMapping(Transport.UDP, 5)))
        self.memory.rememberNATPMP(first.gateway, self.clock.seconds())
        second = self.make()
        del self.gateway.versions[:]
        self.successResultOf(self.flushed(second.deleteMapping(Transport.UDP, 5)))
        self.assertEqual(self.gateway.versions, [2])
        self.assertEqual(server.held, {})

    def test_deleteMappings(self) -> None:
        self.successResultOf(self.flushed(self.mapper.addMapping(Transport.TCP, 1)))
        self.gateway.speakPCP()
        self.memory.forget(self.mapper.gateway)
        self.successResultOf(self.flushed(self.mapper.addMapping(Transport.TCP, 2)))
        del self.gateway.versions[:]
        d = self.mapper.deleteMappings([(Transport.TCP, 1), (Transport.TCP, 2)])
        result = self.successResultOf(self.flushed(d))
        self.assertEqual(result, {(Transport.TCP, 1): None, (Transport.TCP, 2): None})
        self.assertEqual(sorted(self.gateway.versions), [0, 2])

    def test_neither(self) -> None:
        # A gateway that answers neither fails as a silent one does.
        self.network.drop = lambda datagram: True
        d = self.mapper.addMapping(Transport.TCP, 1, timeouts=(1,))
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)
        self.assertIs(self.mapper.protocolName, ProtocolName.PCP)

    def test_refusedNamesBoth(self) -> None:
        # RFC 6886 s3.5: a NAT-PMP gateway answers PCP with "unsupported
        # version"; ICMP port unreachable means neither is spoken, and the
        # error says both.
        self.gatewayPort.stopListening()
        d = self.flushed(self.mapper.addMapping(Transport.TCP, 1))
        error = self.failureResultOf(d, errors.NotSupportedError).value
        self.assertEqual(
            str(error),
            f"gateway {GATEWAY} does not speak PCP or NAT-PMP (ICMP port unreachable)",
        )
        self.assertIs(self.mapper.protocolName, ProtocolName.PCP)

    def test_exactPortOverNATPMP(self) -> None:
        # NAT-PMP has no PREFER_FAILURE: another port granted is deleted
        # again, and the call fails as PCP's would.
        self.successResultOf(self.flushed(self.mapper.probe()))

        def elsewhere(request: Any) -> list[bytes]:
            if request.lifetime == 0:
                return self.gateway.natpmp.answer(request)
            return [MapResponse(request.transport, 0, 100, 80, 81, 7200).encode()]

        self.gateway.natpmp.reply = elsewhere
        self.failureResultOf(
            self.flushed(self.mapper.addMapping(Transport.TCP, 80, exactPort=True)),
            errors.CannotProvideExternalError,
        )
        requests = [r for r, _ in self.gateway.natpmp.requests]
        lifetimes = [r.lifetime for r in requests if isinstance(r, MapRequest)]
        self.assertEqual(lifetimes, [7200, 0])

    def test_deleteUnknownFallsBack(self) -> None:
        # A mapping of unknown origin (no memory, no nonce) is deleted in
        # the protocol chosen, with the same fallback.
        self.successResultOf(self.flushed(self.mapper.deleteMapping(Transport.UDP, 9)))
        self.assertEqual(self.gateway.versions, [2, 0])
        [(request, _)] = self.gateway.natpmp.requests
        assert isinstance(request, MapRequest)
        self.assertEqual((request.internalPort, request.lifetime), (9, 0))

    def test_announcementsByKind(self) -> None:
        # RFC 6886 s3.6 and RFC 6887 s8.5: each announcement is judged by
        # the client of its protocol, and a loss heard by either reaches
        # the observers.
        losses: list[None] = []
        self.mapper.addStateLossObserver(lambda: losses.append(None))
        nat = AnnouncementKind.NATPMP
        self.assertFalse(
            self.mapper.announced(Announcement(nat, 5000, None, (GATEWAY, 5351)))
        )
        self.assertTrue(
            self.mapper.announced(Announcement(nat, 1, None, (GATEWAY, 5351)))
        )
        assert self.mapper.natpmp is not None
        self.assertEqual(self.mapper.natpmp.epochTracker.lastEpoch, 1)
        pcp = AnnouncementKind.PCP
        self.assertFalse(
            self.mapper.announced(Announcement(pcp, 9000, None, (GATEWAY, 5351)))
        )
        self.assertEqual(self.mapper.pcp.conversation.epochTracker.lastEpoch, 9000)
        self.assertEqual(losses, [None])

    def test_retryObservers(self) -> None:
        # Retransmissions of either client are heard.
        retries: list[tuple[str, int]] = []
        self.mapper.addRetryObserver(lambda what, n, _: retries.append((what, n)))
        self.network.drop = lambda datagram: True
        d = self.mapper.probe(timeouts=(1, 1))
        self.clock.advance(1)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)
        self.assertEqual(retries, [("the PCP ANNOUNCE request", 2)])

    def test_badTransport(self) -> None:
        # A bad argument fails the Deferred; nothing is sent.
        self.failureResultOf(self.mapper.addMapping("sctp", 1), ValueError)  # type: ignore[arg-type]
        self.failureResultOf(self.mapper.deleteMapping("sctp", 1), ValueError)  # type: ignore[arg-type]
        self.assertEqual(self.network.log, [])

    def test_stop(self) -> None:
        self.successResultOf(self.mapper.stop())
        self.assertEqual(self.network.ports.get((HOST, 40000)), None)
        self.assertEqual(
            [p for p in self.network.ports if p[0] == HOST], [], self.network.ports
        )


class MapperForTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.host = self.network.host(HOST)

    def test_forced(self) -> None:
        nonces = MemoryNonceStore()
        self.assertIsInstance(
            mapperFor(self.host, GATEWAY, "pcp", nonces=nonces), PCPClient
        )
        self.assertIsInstance(mapperFor(self.host, GATEWAY, "natpmp"), NATPMPClient)

    def test_bad(self) -> None:
        self.assertRaises(ValueError, mapperFor, self.host, GATEWAY, "upnp")
        self.assertRaises(ValueError, mapperFor, self.host, "2001:db8::1", "natpmp")

    def test_ipv6Auto(self) -> None:
        # NAT-PMP is IPv4 only: auto on an IPv6 gateway is PCP alone.
        mapper = mapperFor(
            self.network.host("2001:db8::2"),
            "2001:db8::1",
            nonces=MemoryNonceStore(),
        )
        assert isinstance(mapper, NegotiatingMapper)
        self.assertIsNone(mapper.natpmp)
        self.assertIs(mapper.protocolName, ProtocolName.PCP)

    def test_processMemory(self) -> None:
        # Without a memory given, every mapper of the process shares one.
        mapper = mapperFor(self.host, GATEWAY, nonces=MemoryNonceStore())
        assert isinstance(mapper, NegotiatingMapper)
        self.assertIs(mapper.memory, processMemory)

    def test_nonceKeyUsesGateway(self) -> None:
        nonces = MemoryNonceStore()
        mapper = mapperFor(self.host, GATEWAY, nonces=nonces)
        assert isinstance(mapper, NegotiatingMapper)
        nonces.remember(NonceKey(IPv4Address(GATEWAY), Transport.TCP, 1), bytes(12))
        self.assertIs(mapper._origin((Transport.TCP, 1)), ProtocolName.PCP)
        self.assertIsNone(mapper._origin((Transport.TCP, 2)))
