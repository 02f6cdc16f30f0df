"""
Tests for L{twisted_natpmp.pcp.client.PCPClient}: MAP, renewal, deletion,
ANNOUNCE and the rules of RFC 6887 around them, on a L{Clock} and the
in-memory UDP network, against L{ScriptedPCPServer}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp import errors
from twisted_natpmp._types import (
    Mapping,
    ProtocolName,
    Transport,
)
from twisted_natpmp.interfaces import IExternalAddressQuery, IPortMapper
from twisted_natpmp.pcp._nonces import MemoryNonceStore, NonceKey, NonceStore
from twisted_natpmp.pcp._retransmit import errorRetryDelay
from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    PreferFailureOption,
    Request,
    Response,
    UnknownOption,
)

from ._gateway import EXTERNAL
from ._helpers import GATEWAY, HOST, ClientTestsMixin, silent

KEY = NonceKey(IPv4Address(GATEWAY), Transport.TCP, 7000)


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
