"""
Tests for L{twisted_natpmp.pcp.client.PCPClient}: matching, the window,
retransmission, the fallback cue, epochs and IPv6, on a L{Clock} and the
in-memory UDP network, against L{ScriptedPCPServer}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    ProtocolName,
    Transport,
)
from twisted_natpmp.interfaces import Probe
from twisted_natpmp.pcp._nonces import NonceKey
from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    Request,
    Response,
    decodeRequest,
)

from ._gateway import EXTERNAL, NATPMP_UNSUPPORTED
from ._helpers import GATEWAY, ClientTestsMixin, silent

KEY = NonceKey(IPv4Address(GATEWAY), Transport.TCP, 7000)


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


class LossLogTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpNetwork()
        self.client = self.makeClient()

    def test_aggregated(self) -> None:
        # RFC 6887 s8.5: every loss is told to the observers, but a flood of
        # them (forged responses, a gateway restarting again and again)
        # costs one warning at once and one summary an interval.
        with capturedLogs() as events:
            for n in range(40):
                self.server.epoch = 5000 if n % 2 else 5
                self.successResultOf(self.flushed(self.client.probe()))
            self.clock.advance(60)
        self.assertEqual(len(self.losses), 39)
        warnings = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(len(warnings), 2, [formatEvent(e) for e in warnings])
        self.assertIn("39 packets", formatEvent(warnings[1]))


class WellFormedTests(SynchronousTestCase):
    @given(
        st.sampled_from(Transport),
        st.integers(1, 65535),
        st.one_of(st.none(), st.integers(1, 65535)),
        st.integers(1, 2**32 - 1),
        st.booleans(),
    )
    def test_neverMalformed(
        self,
        transport: Transport,
        internalPort: int,
        externalPort: int | None,
        lifetime: int,
        exactPort: bool,
    ) -> None:
        # PROTOCOL.md A2.12: miniupnpd answers a malformed request (not a
        # multiple of 4, too short) with a version-0 packet, so the client
        # never sends one (RFC 6887 s7, s8.3): whatever it is asked, each
        # request decodes as a version-2 request of 24 to 1100 bytes.
        helper = ClientTestsMixin()
        helper.setUpNetwork()
        client = helper.makeClient()
        client.addMapping(
            transport, internalPort, externalPort, lifetime, (1,), exactPort=exactPort
        )
        client.deleteMapping(transport, internalPort, (1,))
        client.probe((1,))
        helper.network.flush()
        helper.clock.advance(1)
        packets = [d.data for d in helper.network.sentTo((GATEWAY, 5351))]
        self.assertGreaterEqual(len(packets), 3)
        for packet in packets:
            self.assertEqual(len(packet) % 4, 0)
            self.assertTrue(24 <= len(packet) <= 1100)
            self.assertEqual(packet[0], 2)
            decodeRequest(packet)
