"""
Tests for L{twisted_natpmp.pcp.client.PCPClient}: MAP, renewal, deletion,
ANNOUNCE and the rules of RFC 6887 around them, on a L{Clock} and the
in-memory UDP network, against L{ScriptedPCPServer}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp import errors
from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    Mapping,
    ProtocolName,
    Transport,
)
from twisted_natpmp.interfaces import IExternalAddressQuery, IPortMapper, Probe
from twisted_natpmp.pcp._nonces import MemoryNonceStore, NonceKey, NonceStore
from twisted_natpmp.pcp._retransmit import errorRetryDelay
from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    PreferFailureOption,
    Request,
    Response,
    UnknownOption,
    decodeRequest,
)
from twisted_natpmp.pcp.client import PCPClient, listenPCPClient
from twisted_natpmp.testing import MemoryUDPNetwork

from ._gateway import EXTERNAL, NATPMP_UNSUPPORTED, ScriptedPCPServer

_T = TypeVar("_T")

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"
KEY = NonceKey(IPv4Address(GATEWAY), Transport.TCP, 7000)


def silent(request: Request, packet: bytes, addr: Any) -> list[bytes]:
    return []


class ClientTestsMixin:
    network: MemoryUDPNetwork
    server: ScriptedPCPServer
    nonces: MemoryNonceStore
    client: PCPClient

    def setUpNetwork(self, gateway: str = GATEWAY, host: str = HOST) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.server = ScriptedPCPServer()
        self.network.host(gateway).listenUDP(5351, self.server)
        self.nonces = MemoryNonceStore()
        self.losses: list[None] = []

    def makeClient(self, host: str = HOST, **kwargs: Any) -> PCPClient:
        kwargs.setdefault("nonces", self.nonces)
        kwargs.setdefault("random", lambda: 0.5)
        kwargs.setdefault("monotonic", self.clock.seconds)
        client = listenPCPClient(
            self.network.host(host), kwargs.pop("gateway", GATEWAY), **kwargs
        )
        client.addStateLossObserver(lambda: self.losses.append(None))
        return client

    def flushed(self, d: Deferred[_T]) -> Deferred[_T]:
        self.network.flush()
        return d

    def sent(self) -> list[Request]:
        return [decodeRequest(d.data) for d in self.network.sentTo((GATEWAY, 5351))]


class MapTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpNetwork()
        self.client = self.makeClient()

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IPortMapper, self.client))
        self.assertTrue(verifyObject(IExternalAddressQuery, self.client))
        self.assertIs(self.client.protocolName, ProtocolName.PCP)

    def test_map(self) -> None:
        # RFC 6887 s11.1, s8.2: a 60-byte MAP with the socket's own address
        # as the client address, the mapping's nonce, the internal port
        # suggested and the IPv4 all-zeros address for no preference.
        mapping = self.successResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 7000, lifetime=3600))
        )
        self.assertEqual(
            mapping,
            Mapping(
                Transport.TCP,
                7000,
                7000,
                3600,
                1000,
                EXTERNAL,
                3600 * (0.5 + 0.125 * 0.5),
                ProtocolName.PCP,
            ),
        )
        [packet] = self.network.sentTo((GATEWAY, 5351))
        self.assertEqual(len(packet.data), 60)
        [request] = self.sent()
        self.assertEqual(request.clientAddress, IPv4Address(HOST))
        assert isinstance(request.data, MapData)
        self.assertEqual(request.data.nonce, self.nonces.get(KEY))
        self.assertEqual(
            (request.data.externalPort, request.data.externalAddress),
            (7000, IPv4Address(0)),
        )
        self.assertEqual(request.options, ())

    def test_renewalPoint(self) -> None:
        # RFC 6887 s11.2.1: the first renewal at a random point in [1/2,
        # 5/8] of the lifetime granted, or of the one asked for if the
        # server granted more.
        for r, expected in [(0.0, 0.5), (0.999999, 0.625)]:
            client = self.makeClient(random=lambda r=r: r)
            m = self.successResultOf(
                self.flushed(client.addMapping(Transport.UDP, 5000, lifetime=1000))
            )
            assert m.renewAfter is not None
            self.assertAlmostEqual(m.renewAfter, 1000 * expected, places=3)
        self.server.minLifetime = 5000
        m = self.successResultOf(
            self.flushed(self.client.addMapping(Transport.UDP, 5001, lifetime=1000))
        )
        self.assertEqual(m.lifetime, 5000)
        self.assertEqual(m.renewAfter, 1000 * (0.5 + 0.0625))

    def test_renewKeepsNonce(self) -> None:
        # RFC 6887 s11.1: the same nonce for every renewal of a mapping, a
        # different one for another mapping.
        for port in (7000, 7000, 7001):
            self.successResultOf(
                self.flushed(self.client.addMapping(Transport.TCP, port))
            )
        nonces = [r.data.nonce for r in self.sent() if isinstance(r.data, MapData)]
        self.assertEqual(nonces[0], nonces[1])
        self.assertNotEqual(nonces[0], nonces[2])
        self.assertEqual(len(nonces[0]), 12)

    def test_deleteWithSameNonce(self) -> None:
        # RFC 6887 s15: the deletion is a MAP of lifetime 0 with the
        # mapping's own nonce; the nonce is then forgotten.
        self.successResultOf(self.flushed(self.client.addMapping(Transport.TCP, 7000)))
        nonce = self.nonces.get(KEY)
        self.successResultOf(
            self.flushed(self.client.deleteMapping(Transport.TCP, 7000))
        )
        deletion = self.sent()[-1]
        assert isinstance(deletion.data, MapData)
        self.assertEqual((deletion.lifetime, deletion.data.nonce), (0, nonce))
        self.assertEqual(self.server.held, {})
        self.assertIsNone(self.nonces.get(KEY))

    def test_deleteNothingLeft(self) -> None:
        # miniupnpd answers NO_RESOURCES to a deletion of nothing (a
        # retransmitted deletion whose first copy was applied): done.
        self.nonces.remember(KEY, bytes(12))
        self.successResultOf(
            self.flushed(self.client.deleteMapping(Transport.TCP, 7000))
        )
        self.assertIsNone(self.nonces.get(KEY))

    def test_deleteTakesOver(self) -> None:
        # No nonce kept (another process lost it): the deletion with a new
        # nonce is refused (NOT_AUTHORIZED), so the mapping is taken over
        # with that nonce (miniupnpd allows it), then deleted.
        other = self.makeClient(nonces=MemoryNonceStore())
        self.successResultOf(self.flushed(other.addMapping(Transport.TCP, 7000)))
        self.successResultOf(
            self.flushed(self.client.deleteMapping(Transport.TCP, 7000))
        )
        self.assertEqual(self.server.held, {})
        lifetimes = [r.lifetime for r in self.sent()]
        self.assertEqual(lifetimes, [7200, 0, 120, 0])

    def test_deleteStrictServer(self) -> None:
        # An RFC-strict server refuses the take-over too: the deletion
        # fails, by meaning.
        self.server.strictNonce = True
        other = self.makeClient(nonces=MemoryNonceStore())
        self.successResultOf(self.flushed(other.addMapping(Transport.TCP, 7000)))
        self.failureResultOf(
            self.flushed(self.client.deleteMapping(Transport.TCP, 7000)),
            errors.NotAuthorizedError,
        )
        self.assertEqual(len(self.server.held), 1)

    def test_noncesOutliveTheClient(self) -> None:
        # natpmp map and natpmp unmap are separate processes: a second
        # client with the same nonce file deletes what the first mapped.
        path = Path(self.mktemp()) / "nonces.json"
        first = self.makeClient(nonces=NonceStore(path))
        self.successResultOf(self.flushed(first.addMapping(Transport.UDP, 9000)))
        self.successResultOf(first.stop())
        second = self.makeClient(nonces=NonceStore(path), takeOver=False)
        self.successResultOf(self.flushed(second.deleteMapping(Transport.UDP, 9000)))
        self.assertEqual(self.server.held, {})

    def test_exactPort(self) -> None:
        # RFC 6887 s13.2: with exactPort, PREFER_FAILURE, and a port held
        # by another host gives CANNOT_PROVIDE_EXTERNAL; without, the next
        # free port (as miniupnpd does).
        self.server.taken = {9100}
        failure = self.failureResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 9100, exactPort=True)),
            errors.CannotProvideExternalError,
        )
        assert isinstance(failure.value, errors.GatewayError)
        self.assertEqual(
            (failure.value.resultCode, failure.value.protocol), (11, "pcp")
        )
        self.assertIn(PreferFailureOption(), self.sent()[0].options)
        m = self.successResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 9100))
        )
        self.assertEqual(m.externalPort, 9101)

    def test_errorLifetimes(self) -> None:
        # RFC 6887 s7.4: the error's lifetime is carried; a short-lived
        # error is retried after it, a long-lived one with lifetime 0 (as
        # miniupnpd sends) not soon.
        def refuse(code: int, lifetime: int) -> None:
            self.server.reply = lambda r, p, a: self.server.error(p, code, lifetime)  # type: ignore[arg-type]

        refuse(8, 30)
        f = self.failureResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 1)),
            errors.OutOfResourcesError,
        )
        assert isinstance(f.value, errors.GatewayError)
        self.assertEqual((f.value.lifetime, errorRetryDelay(f.value)), (30, 30))
        refuse(2, 0)
        f = self.failureResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 1)),
            errors.NotAuthorizedError,
        )
        assert isinstance(f.value, errors.GatewayError)
        self.assertEqual((f.value.lifetime, errorRetryDelay(f.value)), (0, 1800))

    def test_optionsIgnored(self) -> None:
        # RFC 6887 s7.3: an unknown optional option in a response is
        # ignored.
        def withOption(r: Request, p: bytes, a: Any) -> list[bytes]:
            [answer] = self.server.answer(r, p, a)
            extra = UnknownOption(200, b"abc").code
            return [answer + bytes([extra, 0, 0, 3]) + b"abc\0"]

        self.server.reply = withOption
        m = self.successResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 80))
        )
        self.assertEqual(m.externalPort, 80)

    def test_lengthsChecked(self) -> None:
        # RFC 6887 s8.3: a response not a multiple of 4, shorter than 24 or
        # longer than 1100 bytes is dropped (and counted), and the request
        # still waits.
        def bad(r: Request, p: bytes, a: Any) -> list[bytes]:
            [answer] = self.server.answer(r, p, a)
            return [answer + b"\0", answer[:20], answer + bytes(1044)]

        self.server.reply = bad
        d = self.flushed(self.client.addMapping(Transport.TCP, 80, timeouts=(1,)))
        self.assertNoResult(d)
        self.assertEqual(self.client.exchange.drops.total, 3)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_invalidGrant(self) -> None:
        # A success granting external port 0 is no usable mapping.
        def portZero(r: Request, p: bytes, a: Any) -> list[bytes]:
            assert isinstance(r.data, MapData)
            data = MapData(r.data.nonce, 6, 80, 0, EXTERNAL)
            return [Response(Opcode.MAP, 0, 100, 1000, data).encode()]

        self.server.reply = portZero
        self.failureResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 80)),
            errors.InvalidResponseError,
        )

    def test_badArguments(self) -> None:
        self.failureResultOf(
            self.client.addMapping(Transport.TCP, 80, lifetime=0), ValueError
        )
        self.failureResultOf(self.client.addMapping(Transport.TCP, 0), ValueError)
        self.failureResultOf(self.client.deleteMapping(Transport.TCP, 0), ValueError)
        self.assertEqual(self.network.log, [])

    def test_externalAddress(self) -> None:
        # PCP tells the external address only in a MAP response (RFC 6887
        # s11): a short MAP of the client's own port, deleted again.
        address = self.successResultOf(self.flushed(self.client.externalAddress()))
        self.assertEqual(address, EXTERNAL)
        own = self.client.exchange.port.getHost().port  # type: ignore[union-attr]
        self.assertEqual(
            [(r.lifetime, r.data.internalPort) for r in self.sent() if r.data],  # type: ignore[union-attr]
            [(120, own), (0, own)],
        )
        self.assertEqual(self.server.held, {})
        self.assertEqual(self.nonces.nonces, {})

    def test_deleteMappings(self) -> None:
        # At stop, every deletion is sent at once, outside the window.
        for port in range(1, 13):
            self.successResultOf(
                self.flushed(self.client.addMapping(Transport.UDP, port))
            )
        self.server.reply = silent
        d = self.client.deleteMappings([(Transport.UDP, p) for p in range(1, 13)])
        self.assertEqual(len(self.sent()), 24)
        self.server.reply = self.server.answer
        self.clock.advance(0.25)
        self.network.flush()
        result = self.successResultOf(d)
        self.assertEqual(result, {(Transport.UDP, p): None for p in range(1, 13)})
        self.assertEqual(self.server.held, {})

    def test_stop(self) -> None:
        self.server.reply = silent
        d = self.client.addMapping(Transport.TCP, 80)
        self.successResultOf(self.client.stop())
        self.failureResultOf(d)
        self.failureResultOf(self.client.probe())


class MatchingTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpNetwork()
        self.client = self.makeClient()

    def test_otherNonceIgnored(self) -> None:
        # RFC 6887 s11.1, s11.3: a response is matched by opcode, nonce,
        # protocol and internal port; one that differs in any answers
        # nothing.
        def wrong(r: Request, p: bytes, a: Any) -> list[bytes]:
            assert isinstance(r.data, MapData)
            n, proto, port = r.data.nonce, r.data.protocol, r.data.internalPort
            out = []
            for data in (
                MapData(bytes(12), proto, port, port, EXTERNAL),
                MapData(n, 17 if proto == 6 else 6, port, port, EXTERNAL),
                MapData(n, proto, port + 1, port, EXTERNAL),
            ):
                out.append(Response(Opcode.MAP, 0, 100, 1000, data).encode())
            out.append(Response(Opcode.ANNOUNCE, 0, 0, 1000).encode())
            return out

        self.server.reply = wrong
        d = self.flushed(self.client.addMapping(Transport.TCP, 80, timeouts=(1,)))
        self.assertNoResult(d)
        self.assertEqual(self.client.exchange.unanswered.total, 3)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_lateGrantDoesNotConfirmDeletion(self) -> None:
        # A late duplicate of a grant (lifetime not 0) does not answer the
        # deletion of the same mapping.
        self.successResultOf(self.flushed(self.client.addMapping(Transport.TCP, 80)))
        grant = self.network.log[-1].data
        self.server.reply = lambda r, p, a: [grant]
        d = self.flushed(self.client.deleteMapping(Transport.TCP, 80, timeouts=(1,)))
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_window(self) -> None:
        # RFC 6887 has no one-at-a-time rule (unlike RFC 6886 s3.1): up to
        # 8 requests for different mappings are in flight together, the
        # rest queued until a reply frees a place.
        self.server.reply = silent
        ds = [self.client.addMapping(Transport.TCP, p) for p in range(1, 21)]
        self.assertEqual(len(self.sent()), 8)
        self.server.reply = self.server.answer
        self.clock.advance(3)
        self.network.flush()
        for d in ds:
            self.successResultOf(d)
        self.assertEqual(len(self.server.held), 20)

    def test_retransmission(self) -> None:
        # RFC 6887 s8.1.1: resent after 3 s, doubling (no jitter when the
        # random source gives 0.5), until the per-call limit of 128 s.
        self.server.reply = silent
        d = self.client.addMapping(Transport.TCP, 80)
        for _ in range(200):
            self.clock.advance(1)
        times = [p.time for p in self.network.sentTo((GATEWAY, 5351))]
        self.assertEqual(times, [0, 3, 9, 21, 45, 93])
        self.failureResultOf(d, errors.NoResponseError)

    def test_jitter(self) -> None:
        # RFC 6887 s8.1.1: each wait times 1 + RAND, RAND in [-0.1, 0.1].
        client = self.makeClient(random=lambda: 0.0)
        self.server.reply = silent
        d = client.addMapping(Transport.TCP, 80)
        self.clock.advance(2.69)
        self.assertEqual(len(self.sent()), 1)
        self.clock.advance(0.02)
        self.assertEqual(len(self.sent()), 2)
        client.cancelPending()
        self.failureResultOf(d, CancelledError)

    def test_natpmpOnly(self) -> None:
        # RFC 6887 s9: a NAT-PMP-only gateway's 8-byte unsupported version
        # fails the request at once, as a NAT-PMP UnsupportedVersionError.
        self.server.reply = lambda r, p, a: [NATPMP_UNSUPPORTED]
        f = self.failureResultOf(
            self.flushed(self.client.addMapping(Transport.TCP, 80)),
            errors.UnsupportedVersionError,
        )
        assert isinstance(f.value, errors.GatewayError)
        self.assertEqual(f.value.protocol, "natpmp")
        self.assertEqual(self.clock.seconds(), 0)
        self.assertEqual(self.losses, [])

    def test_malformedVersionZeroIsNoFallback(self) -> None:
        # RFC 6887 s8.3; PROTOCOL.md A2.12: miniupnpd's version-0 answer to
        # a malformed request (24 bytes, opcode 128, result 3) is dropped,
        # not taken for NAT-PMP.
        quirk = bytes([0, 0x80, 0, 3]) + bytes(20)
        self.server.reply = lambda r, p, a: [quirk]
        d = self.flushed(self.client.probe(timeouts=(1,)))
        self.assertEqual(self.client.exchange.drops.total, 1)
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)


class EpochTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpNetwork()
        self.client = self.makeClient()

    def test_probe(self) -> None:
        # RFC 6887 s14.1: the probe is a 24-byte ANNOUNCE request.
        probe = self.successResultOf(self.flushed(self.client.probe()))
        self.assertEqual(probe, Probe(ProtocolName.PCP, 1000, None, False))
        [packet] = self.network.sentTo((GATEWAY, 5351))
        self.assertEqual(len(packet.data), 24)
        self.assertEqual(packet.data[:2], b"\x02\x00")

    def test_everyResponseJudged(self) -> None:
        # RFC 6887 s8.5: every response's epoch; backwards by more than
        # 1 s is a loss, and the probe says so.
        self.successResultOf(self.flushed(self.client.probe()))
        self.clock.advance(10)
        self.server.epoch = 1010
        self.successResultOf(self.flushed(self.client.addMapping(Transport.TCP, 80)))
        self.assertEqual(self.losses, [])
        self.server.epoch = 5
        probe = self.successResultOf(self.flushed(self.client.probe()))
        self.assertTrue(probe.stateLost)
        self.assertEqual(self.losses, [None])

    def test_twoSided(self) -> None:
        # RFC 6887 s8.5: a server clock that ran ahead by more than 2 s
        # plus 1/16 is a loss too.
        self.successResultOf(self.flushed(self.client.probe()))
        self.clock.advance(100)
        self.server.epoch = 1000 + 100 + 8
        self.successResultOf(self.flushed(self.client.probe()))
        self.assertEqual(self.losses, [])
        self.clock.advance(100)
        self.server.epoch = 1108 + 100 + 10
        self.assertTrue(
            self.successResultOf(self.flushed(self.client.probe())).stateLost
        )

    def test_announced(self) -> None:
        # RFC 6887 s8.5, s14.1: a PCP ANNOUNCE is judged with the epochs of
        # the responses; a NAT-PMP announcement only against NAT-PMP ones.
        self.successResultOf(self.flushed(self.client.probe()))
        self.clock.advance(10)
        pcp = AnnouncementKind.PCP
        self.assertFalse(
            self.client.announced(Announcement(pcp, 1010, None, (GATEWAY, 5351)))
        )
        nat = AnnouncementKind.NATPMP
        self.assertFalse(
            self.client.announced(Announcement(nat, 3, EXTERNAL, (GATEWAY, 5351)))
        )
        self.assertEqual(self.losses, [])
        self.assertTrue(
            self.client.announced(Announcement(pcp, 0, None, (GATEWAY, 5351)))
        )
        self.assertEqual(self.losses, [None])


class IPv6Tests(ClientTestsMixin, SynchronousTestCase):
    GW6 = "2001:db8::1"
    HOST6 = "2001:db8::2"

    def setUp(self) -> None:
        self.setUpNetwork(gateway=self.GW6)

    def test_pinhole(self) -> None:
        # RFC 6887 s11.1: for IPv6, a pinhole: the socket bound to the
        # address opened, which is the client address and the suggested
        # external address; the server grants the address itself.
        client = self.makeClient(
            host=self.HOST6, gateway=self.GW6, internalAddress=self.HOST6
        )
        m = self.successResultOf(self.flushed(client.addMapping(Transport.TCP, 443)))
        self.assertEqual(m.externalAddress, IPv6Address(self.HOST6))
        self.assertEqual(client.sourceAddress(), IPv6Address(self.HOST6))
        [datagram] = self.network.sentTo((self.GW6, 5351))
        self.assertEqual(datagram.source[0], self.HOST6)
        request = decodeRequest(datagram.data)
        assert isinstance(request.data, MapData)
        self.assertEqual(request.clientAddress, IPv6Address(self.HOST6))
        self.assertEqual(request.data.externalAddress, IPv6Address(self.HOST6))
        key = NonceKey(
            IPv6Address(self.GW6), Transport.TCP, 443, IPv6Address(self.HOST6)
        )
        self.assertIsNotNone(self.nonces.get(key))
        self.successResultOf(self.flushed(client.deleteMapping(Transport.TCP, 443)))
        self.assertEqual(self.server.held, {})
