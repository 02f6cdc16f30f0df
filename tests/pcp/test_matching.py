"""
Tests for L{twisted_natpmp.pcp._matching}: reading a gateway's datagram
and matching it to a request.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._build import announceRequest, deleteRequest, mapRequest
from twisted_natpmp.pcp._matching import (
    NATPMPUnsupportedVersion,
    decodeReply,
    describeRequest,
    matches,
)
from twisted_natpmp.pcp._wire import MalformedPacket, MapData, Opcode, Response

CLIENT = IPv4Address("10.0.0.2")
NONCE = bytes(range(12))
MAP = mapRequest(CLIENT, NONCE, Transport.TCP, 80, 3600, 80)
DELETE = deleteRequest(CLIENT, NONCE, Transport.TCP, 80)


def granted(lifetime: int = 3600, result: int = 0, nonce: bytes = NONCE) -> Response:
    data = MapData(nonce, 6, 80, 80, IPv4Address("192.0.3.77"))
    return Response(Opcode.MAP, result, lifetime, 1, data)


class DecodeTests(SynchronousTestCase):
    def test_natpmpUnsupported(self) -> None:
        # RFC 6887 s9: exactly 8 bytes, version 0, result 1, any opcode
        # (erratum 3618).
        for opcode in (0, 0x80, 0x81):
            packet = bytes([0, opcode, 0, 1]) + (77).to_bytes(4, "big")
            self.assertEqual(decodeReply(packet), NATPMPUnsupportedVersion(77))

    def test_otherVersionZero(self) -> None:
        # miniupnpd's version-0 answer to a malformed request is no proof
        # of NAT-PMP (PROTOCOL.md A2.12).
        self.assertRaises(
            MalformedPacket, decodeReply, bytes([0, 0x80, 0, 3]) + bytes(20)
        )
        self.assertRaises(
            MalformedPacket, decodeReply, bytes([0, 0x80, 0, 3, 0, 0, 0, 0])
        )

    @given(st.binary(max_size=1200))
    def test_anyBytes(self, packet: bytes) -> None:
        # No exception but the codec's own on any bytes.
        try:
            decodeReply(packet)
        except MalformedPacket:
            pass


class MatchTests(SynchronousTestCase):
    def test_map(self) -> None:
        # RFC 6887 s11.1: opcode, nonce, protocol and internal port.
        self.assertTrue(matches(MAP, granted()))
        self.assertFalse(matches(MAP, granted(nonce=bytes(12))))
        self.assertFalse(matches(announceRequest(CLIENT), granted()))
        self.assertFalse(matches(MAP, Response(Opcode.ANNOUNCE, 0, 0, 1)))

    def test_deletionAndGrantApart(self) -> None:
        self.assertFalse(matches(DELETE, granted()))
        self.assertTrue(matches(DELETE, granted(0)))
        self.assertFalse(matches(MAP, granted(0)))
        # An error answers either.
        self.assertTrue(matches(DELETE, granted(30, 8)))
        self.assertTrue(matches(MAP, granted(0, 2)))

    def test_headerOnly(self) -> None:
        # An error without the MAP data, and UNSUPP_VERSION in another
        # version (RFC 6887 s9), match by opcode.
        self.assertTrue(matches(MAP, Response(Opcode.MAP, 3, 0, 1)))
        self.assertTrue(matches(MAP, Response(Opcode.MAP, 1, 0, 1, version=3)))
        self.assertTrue(matches(MAP, NATPMPUnsupportedVersion(1)))

    def test_describe(self) -> None:
        self.assertEqual(
            describeRequest(MAP), "the PCP TCP mapping request for port 80"
        )
        self.assertEqual(describeRequest(DELETE), "the PCP TCP deletion of port 80")
        self.assertEqual(
            describeRequest(announceRequest(CLIENT)), "the PCP ANNOUNCE request"
        )
