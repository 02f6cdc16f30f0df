"""
Tests for the gateway's dispatch with PCP on: which version goes where, and
what a malformed PCP packet gets (RFC 6887 s8.3, s9; RFC 6886 s1.1), byte
for byte.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_natpmp.pcp._wire import Opcode, PeerData, Request, ResultCode

from ._helpers import CLIENT, OTHER
from ._pcp import CLIENT6, PCPGatewayMixin, announcePacket, mapPacket


def header(version: int, opcode: int, result: int, lifetime: int, epoch: int) -> bytes:
    return struct.pack("!BBBBII12x", version, opcode, 0, result, lifetime, epoch)


class VersionTests(PCPGatewayMixin):
    def test_natpmpIsVersionZero(self) -> None:
        """
        Version 0 is NAT-PMP's (RFC 6886 s1.1): an external address request
        gets NAT-PMP's 12-byte answer.
        """
        # RFC 6886 s1.1
        self.assertEqual(
            self.raw(b"\x00\x00"), bytes.fromhex("0080000000000000c000034d")
        )

    def test_versionOneNever(self) -> None:
        """
        Version 1 is never used (RFC 6886 s1.1): it gets NAT-PMP's
        Unsupported Version (opcode 128, Errata 3618), the highest version
        below it that the gateway speaks, not PCP's answer.
        """
        # RFC 6886 s1.1
        reply = self.raw(b"\x01" + mapPacket(80)[1:])
        self.assertEqual(reply, bytes.fromhex("0080000100000000"))

    def test_higherVersion(self) -> None:
        """
        A version above 2 gets UNSUPP_VERSION naming version 2, in a copy
        of the request, with the long error lifetime (RFC 6887 s9, s7.4).
        """
        # RFC 6887 s9
        request = b"\x03" + mapPacket(80)[1:]
        reply = self.raw(request)
        assert reply is not None
        self.assertEqual(reply[:24], header(2, 0x81, 1, 1800, 0))
        self.assertEqual(reply[24:], request[24:])

    def test_higherVersionShort(self) -> None:
        """
        A short packet of a higher version is answered too, padded to the
        24-byte header (RFC 6887 s9, s8.3).
        """
        # RFC 6887 s9
        self.assertEqual(self.raw(b"\x07\x01\x00"), header(2, 0x81, 1, 1800, 0))

    def test_tooShort(self) -> None:
        """
        A version-2 request shorter than 24 bytes gets MALFORMED_REQUEST,
        padded to 24 bytes, with version 2 (not miniupnpd's version-0
        reply) (RFC 6887 s8.3).
        """
        # RFC 6887 s8.2
        request = mapPacket(80)[:12]
        self.assertEqual(self.raw(request), header(2, 0x81, 3, 1800, 0))

    def test_notMultipleOfFour(self) -> None:
        """
        A request whose size is not a multiple of 4 gets MALFORMED_REQUEST,
        padded with zeros to the next multiple (RFC 6887 s8.3).
        """
        # RFC 6887 s8.2
        request = mapPacket(80) + b"\x01\x02"
        reply = self.raw(request)
        assert reply is not None
        self.assertEqual(len(reply), 64)
        self.assertEqual(reply[:24], header(2, 0x81, 3, 1800, 0))
        self.assertEqual(reply[24:], request[24:] + b"\x00\x00")

    def test_tooLong(self) -> None:
        """
        A request longer than 1100 bytes gets MALFORMED_REQUEST in a copy of
        its first 1100 bytes (RFC 6887 s7, s8.3).
        """
        # RFC 6887 s8.2
        request = mapPacket(80) + b"\x80\x00\x04\x00" + bytes(1024) + bytes(20)
        reply = self.raw(request)
        assert reply is not None
        self.assertEqual(len(reply), 1100)
        self.assertEqual(reply[3], ResultCode.MALFORMED_REQUEST)

    def test_responsesDropped(self) -> None:
        """
        A packet with the R bit set is dropped, and counted (RFC 6887
        s8.3).
        """
        # RFC 6887 s8.2
        packet = bytearray(announcePacket())
        packet[1] |= 0x80
        self.assertIsNone(self.raw(bytes(packet)))
        self.assertEqual(self.gateway.drops.reasons["a response, not a request"], 1)

    def test_tinyDropped(self) -> None:
        """
        Packets too short to hold an opcode are dropped (RFC 6887 s8.3).
        """
        # RFC 6887 s8.2
        self.assertIsNone(self.raw(b"\x02"))
        self.assertIsNone(self.raw(b""))

    def test_unknownOpcode(self) -> None:
        """
        An unknown opcode gets UNSUPP_OPCODE in a copy of the request (RFC
        6887 s8.3).
        """
        # RFC 6887 s8.2
        request = b"\x02\x05" + announcePacket()[2:]
        self.assertEqual(self.raw(request), header(2, 0x85, 4, 1800, 0))

    def test_peerUnsupported(self) -> None:
        """
        PEER gets UNSUPP_OPCODE: the backends make inbound forwards only
        (RFC 6887 s12, s8.3).
        """
        # RFC 6887 s12
        request = Request(
            Opcode.PEER,
            600,
            IPv4Address(CLIENT),
            PeerData(bytes(12), 6, 80, 0, IPv4Address(0), 443, IPv4Address("8.8.8.8")),
        ).encode()
        reply = self.raw(request)
        assert reply is not None
        self.assertEqual(reply[:24], header(2, 0x82, 4, 1800, 0))
        self.assertEqual(reply[24:], request[24:])

    def test_pcpOff(self) -> None:
        """
        With PCP off, a PCP request gets NAT-PMP's 8-byte Unsupported
        Version, so a PCP client falls back at once (RFC 6886 s1.1).
        """
        # RFC 6886 s1.1
        self.gateway = self.makeGateway(pcp=False)
        self.assertEqual(self.raw(mapPacket(80)), bytes.fromhex("0080000100000000"))

    def test_ipv6NatpmpDropped(self) -> None:
        """
        NAT-PMP is IPv4's (RFC 6886 s1): from an IPv6 source it is dropped.
        """
        # RFC 6886 s1
        self.assertIsNone(self.raw(b"\x00\x00", CLIENT6))

    def test_ipv6OutsideDropped(self) -> None:
        """
        A PCP request from an IPv6 source outside the internal networks is
        dropped (RFC 6887 s8.3).
        """
        # RFC 6887 s8.2
        self.assertIsNone(self.raw(announcePacket("2001:db8:99::2"), "2001:db8:99::2"))

    def test_mappedSource(self) -> None:
        """
        An IPv4 source seen as IPv4-mapped IPv6 (a dual-stack socket) is the
        IPv4 host (RFC 6887 s8.2).
        """
        # RFC 6887 s8.2
        reply = self.raw(announcePacket(OTHER), f"::ffff:{OTHER}")
        assert reply is not None
        self.assertEqual(reply[3], ResultCode.SUCCESS)

    @settings(max_examples=300)
    @given(st.binary(max_size=80))
    def test_anyBytes(self, packet: bytes) -> None:
        """
        Whatever arrives, the answer is a well-formed response of NAT-PMP
        (version 0) or PCP (version 2, a multiple of 4, 24-1100 bytes), or
        none (RFC 6887 s8.3).
        """
        # RFC 6887 s8.2
        reply = self.raw(packet)
        if reply is None:
            return
        self.assertTrue(reply[1] & 0x80)
        if reply[0] == 0:
            self.assertIn(packet[0], (0, 1))
        else:
            self.assertEqual(reply[0], 2)
            self.assertEqual(len(reply) % 4, 0)
            self.assertTrue(24 <= len(reply) <= 1100)
