"""
Tests for L{twisted_natpmp.pcp._wire}: the golden packets of a real
miniupnpd, hand-built packets of every message type and option, the packets
decoding must reject (with the result code a gateway answers), error
responses and the NAT-PMP fallback reply.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._wire import (
    FilterOption,
    MalformedPacket,
    MapData,
    Opcode,
    PeerData,
    PreferFailureOption,
    Request,
    Response,
    ResultCode,
    ThirdPartyOption,
    UnknownOption,
    decodeAddress,
    decodeRequest,
    decodeResponse,
    encodeAddress,
    noPreference,
    protocolNumber,
    transportFor,
)

from ..vectors import loadAnnouncements, loadCases

CASES = loadCases()
PCP_MAP = next(case for name, case in CASES.items() if name.startswith("PCP"))
CLIENT = IPv4Address("10.77.0.2")
EXTERNAL = IPv4Address("192.0.3.77")
NONCE = bytes(range(12))
MAPPED_CLIENT = bytes.fromhex("00000000000000000000ffff0a4d0002")


def hexBytes(text: str) -> bytes:
    """
    Bytes from hexadecimal written with spaces between fields.
    """
    return bytes.fromhex(text.replace(" ", ""))


def mapRequest(*options: bytes) -> bytes:
    """
    The captured MAP request with C{options} (already encoded) appended.
    """
    return PCP_MAP.request + b"".join(options)


class GoldenPacketTests(SynchronousTestCase):
    """
    The PCP packets exchanged with miniupnpd 2.3.1.
    """

    def test_mapRequest(self) -> None:
        # RFC 6887 s7.1, s11.1: the request the capture sent, built here.
        request = Request(
            Opcode.MAP,
            3600,
            CLIENT,
            MapData(NONCE, 6, 7000, 7000, noPreference(CLIENT)),
        )
        self.assertEqual(request.encode(), PCP_MAP.request)
        self.assertEqual(decodeRequest(PCP_MAP.request), request)

    def test_mapResponse(self) -> None:
        # RFC 6887 s7.2, s11.1: miniupnpd's answer, with its epoch of 17.
        assert PCP_MAP.response is not None
        response = decodeResponse(PCP_MAP.response)
        self.assertEqual(
            response,
            Response(
                Opcode.MAP,
                ResultCode.SUCCESS,
                3600,
                17,
                MapData(NONCE, 6, 7000, 7000, EXTERNAL),
            ),
        )
        self.assertIsNone(response.error)
        assert isinstance(response.data, MapData)
        self.assertEqual(response.data.transport, Transport.TCP)
        self.assertEqual(response.encode(), PCP_MAP.response)

    def test_announce(self) -> None:
        # RFC 6887 s14.1: the unsolicited ANNOUNCE multicast at start and on an
        # address change: 24 bytes, opcode 0x80, result 0, lifetime 0.
        pcp = [packet for packet in loadAnnouncements() if packet[0] == 2]
        self.assertEqual(len(pcp), 2)
        for packet in pcp:
            response = decodeResponse(packet)
            self.assertEqual(response, Response(Opcode.ANNOUNCE, 0, 0, 0))
            self.assertEqual(response.encode(), packet)

    def test_natpmpRepliesAreNotPCP(self) -> None:
        # RFC 6887 s8.3: none of NAT-PMP's replies in the capture decodes as
        # PCP (shorter than 24 bytes, or version 0).
        for case in CASES.values():
            if case is PCP_MAP or case.response is None:
                continue
            self.assertRaises(MalformedPacket, decodeResponse, case.response)


class EncodingTests(SynchronousTestCase):
    """
    Hand-built packets.
    """

    def test_announceRequest(self) -> None:
        # RFC 6887 s14.1: an ANNOUNCE request is the bare 24-byte header.
        request = Request(Opcode.ANNOUNCE, 0, CLIENT)
        self.assertEqual(
            request.encode(), hexBytes("02 00 0000 00000000") + MAPPED_CLIENT
        )

    def test_peerRequest(self) -> None:
        # RFC 6887 s12.1: MAP's fields, remote port, 2 reserved, remote address.
        remote = IPv6Address("2001:db8::9")
        request = Request(
            Opcode.PEER,
            120,
            IPv6Address("2001:db8::2"),
            PeerData(NONCE, 17, 5000, 0, IPv6Address(0), 443, remote),
        )
        expected = (
            hexBytes("02 02 0000 00000078")
            + IPv6Address("2001:db8::2").packed
            + NONCE
            + hexBytes("11 000000 1388 0000")
            + bytes(16)
            + hexBytes("01bb 0000")
            + remote.packed
        )
        self.assertEqual(request.encode(), expected)
        self.assertEqual(len(expected), 80)
        self.assertEqual(decodeRequest(expected), request)

    def test_options(self) -> None:
        # RFC 6887 s7.3, s13.1-s13.3: code, reserved, length without the
        # padding, data padded with zeros to a multiple of 4.
        options = (
            ThirdPartyOption(IPv4Address("10.77.0.9")),
            PreferFailureOption(),
            FilterOption(120, 80, IPv4Address("198.51.100.0")),
            UnknownOption(200, b"abc"),
        )
        request = Request(
            Opcode.MAP,
            3600,
            CLIENT,
            MapData(NONCE, 6, 7000, 7000, noPreference(CLIENT)),
            options,
        )
        expected = PCP_MAP.request + hexBytes(
            "01 00 0010 00000000000000000000ffff0a4d0009"
            "02 00 0000"
            "03 00 0014 00 78 0050 00000000000000000000ffffc6336400"
            "c8 00 0003 616263 00"
        )
        self.assertEqual(request.encode(), expected)
        self.assertEqual(decodeRequest(expected), request)

    def test_addresses(self) -> None:
        # RFC 6887 s5: IPv4 as ::ffff:a.b.c.d; the all-zeros addresses differ
        # by family.
        self.assertEqual(encodeAddress(CLIENT), MAPPED_CLIENT)
        self.assertEqual(decodeAddress(MAPPED_CLIENT), CLIENT)
        self.assertEqual(encodeAddress(IPv6Address(0)), bytes(16))
        self.assertEqual(decodeAddress(bytes(16)), IPv6Address(0))
        self.assertEqual(
            decodeAddress(hexBytes("00000000000000000000ffff00000000")),
            IPv4Address(0),
        )
        self.assertEqual(noPreference(CLIENT), IPv4Address(0))
        self.assertEqual(noPreference(IPv6Address("2001:db8::2")), IPv6Address(0))

    def test_mappedPrefixChecksAll96Bits(self) -> None:
        # RFC 6887 s5: all of the first 96 bits are checked, not only 81-96.
        field = hexBytes("00010000000000000000ffff0a4d0002")
        self.assertEqual(decodeAddress(field), IPv6Address(field))

    def test_transports(self) -> None:
        # RFC 6887 s11.1: IANA protocol numbers; 0 means all protocols.
        self.assertEqual(protocolNumber(Transport.TCP), 6)
        self.assertEqual(protocolNumber(Transport.UDP), 17)
        self.assertIs(transportFor(6), Transport.TCP)
        self.assertIs(transportFor(17), Transport.UDP)
        self.assertIsNone(transportFor(0))
        self.assertIsNone(transportFor(132))

    def test_tooLong(self) -> None:
        # RFC 6887 s7: a message is at most 1100 bytes.
        options = tuple(UnknownOption(200, bytes(100)) for _ in range(11))
        request = Request(Opcode.ANNOUNCE, 0, CLIENT, None, options)
        self.assertRaises(ValueError, request.encode)
        self.assertEqual(
            len(Request(Opcode.ANNOUNCE, 0, CLIENT, None, options[:10]).encode()),
            24 + 10 * 104,
        )

    def test_invalidValues(self) -> None:
        self.assertRaises(ValueError, MapData, NONCE[:11], 6, 1, 1, CLIENT)
        self.assertRaises(ValueError, MapData, NONCE, 6, 70000, 1, CLIENT)
        self.assertRaises(ValueError, Request, Opcode.MAP, 0, CLIENT)
        self.assertRaises(
            ValueError,
            Request,
            Opcode.PEER,
            0,
            CLIENT,
            MapData(NONCE, 6, 1, 1, CLIENT),
        )
        self.assertRaises(ValueError, Request, Opcode.ANNOUNCE, -1, CLIENT)
        self.assertRaises(ValueError, Response, Opcode.MAP, 0, 120, 0)
        self.assertRaises(ValueError, Response, Opcode.ANNOUNCE, 0, 0, 0, version=3)
        self.assertRaises(ValueError, UnknownOption, 1, b"")
        self.assertRaises(ValueError, FilterOption, 129, 0, CLIENT)


class RequestRejectionTests(SynchronousTestCase):
    """
    What L{decodeRequest} refuses, and the result code a gateway answers.
    """

    def assertRejected(self, packet: bytes, code: ResultCode | None) -> None:
        error = self.assertRaises(MalformedPacket, decodeRequest, packet)
        self.assertEqual(error.resultCode, code)
        self.assertEqual(error.packet, packet)

    def test_dropped(self) -> None:
        # RFC 6887 s8.2: shorter than 2 bytes, or the R bit set: no answer.
        self.assertRejected(b"", None)
        self.assertRejected(b"\x02", None)
        assert PCP_MAP.response is not None
        self.assertRejected(PCP_MAP.response, None)

    def test_version(self) -> None:
        # RFC 6887 s9: another version gets UNSUPP_VERSION (1 is never PCP's,
        # RFC 6886 s1.1), before any other check.
        self.assertRejected(b"\x03" + PCP_MAP.request[1:], ResultCode.UNSUPP_VERSION)
        self.assertRejected(b"\x01\x01", ResultCode.UNSUPP_VERSION)

    def test_size(self) -> None:
        # RFC 6887 s7, s8.3: 24 to 1100 bytes, a multiple of 4.
        for size in (2, 12, 20, 62, 1104):
            packet = (PCP_MAP.request * 20)[:size]
            self.assertRejected(packet, ResultCode.MALFORMED_REQUEST)
        self.assertEqual(
            len(decodeRequest(PCP_MAP.request + hexBytes("80000000") * 260).options),
            260,
        )

    def test_opcode(self) -> None:
        # RFC 6887 s7.1: an unknown opcode gets UNSUPP_OPCODE.
        packet = b"\x02\x03" + PCP_MAP.request[2:24]
        self.assertRejected(packet, ResultCode.UNSUPP_OPCODE)

    def test_shortData(self) -> None:
        # RFC 6887 s11.1: a MAP request carries 36 bytes of data.
        self.assertRejected(PCP_MAP.request[:56], ResultCode.MALFORMED_REQUEST)
        peer = b"\x02\x02" + PCP_MAP.request[2:]
        self.assertRejected(peer + bytes(16), ResultCode.MALFORMED_REQUEST)

    def test_reservedIgnored(self) -> None:
        # RFC 6887 s7.1, s11.1: reserved fields are not checked.
        packet = bytearray(PCP_MAP.request)
        packet[2:4] = b"\xff\xff"
        packet[37:40] = b"\xff\xff\xff"
        self.assertEqual(decodeRequest(bytes(packet)), decodeRequest(PCP_MAP.request))

    def test_optionOverrun(self) -> None:
        # RFC 6887 s7.3: an option longer than what is left is malformed.
        self.assertRejected(
            mapRequest(hexBytes("80 00 0005 00000000")), ResultCode.MALFORMED_OPTION
        )

    def test_optionLength(self) -> None:
        # RFC 6887 s13.1-s13.3: each known option has one length.
        for option in (
            "01 00 0004 0a4d0009",
            "02 00 0004 00000000",
            "03 00 0010" + "00" * 16,
        ):
            self.assertRejected(
                mapRequest(hexBytes(option)), ResultCode.MALFORMED_OPTION
            )

    def test_unknownMandatory(self) -> None:
        # RFC 6887 s7.3: codes 0-127 must be understood: UNSUPP_OPTION.
        self.assertRejected(
            mapRequest(hexBytes("7f 00 0000")), ResultCode.UNSUPP_OPTION
        )

    def test_unknownOptional(self) -> None:
        # RFC 6887 s7.3: codes 128-255 may be ignored; kept for the caller.
        request = decodeRequest(mapRequest(hexBytes("80 00 0001 ff000000")))
        self.assertEqual(request.options, (UnknownOption(128, b"\xff"),))
        [option] = request.options
        assert isinstance(option, UnknownOption)
        self.assertFalse(option.mandatory)
        self.assertTrue(UnknownOption(127, b"").mandatory)

    def test_optionOpcodes(self) -> None:
        # RFC 6887 s13.2, s13.3: PREFER_FAILURE and FILTER are MAP's only;
        # s13.1: THIRD_PARTY is MAP's and PEER's.
        peer = Request(
            Opcode.PEER,
            0,
            CLIENT,
            PeerData(NONCE, 6, 1, 1, CLIENT, 2, CLIENT),
        ).encode()
        self.assertRejected(peer + hexBytes("02 00 0000"), ResultCode.MALFORMED_OPTION)
        third = hexBytes("01 00 0010 00000000000000000000ffff0a4d0009")
        self.assertEqual(len(decodeRequest(peer + third).options), 1)
        announce = Request(Opcode.ANNOUNCE, 0, CLIENT).encode()
        self.assertRejected(announce + third, ResultCode.MALFORMED_OPTION)

    def test_repeats(self) -> None:
        # RFC 6887 s7.3, s13: an option repeated where it may not be is
        # malformed; FILTER may repeat.
        third = hexBytes("01 00 0010 00000000000000000000ffff0a4d0009")
        self.assertRejected(mapRequest(third, third), ResultCode.MALFORMED_OPTION)
        prefer = hexBytes("02 00 0000")
        self.assertRejected(mapRequest(prefer, prefer), ResultCode.MALFORMED_OPTION)
        filter = hexBytes("03 00 0014 00 00 0000" + "00" * 16)
        self.assertEqual(len(decodeRequest(mapRequest(filter, filter)).options), 2)

    def test_filterPrefix(self) -> None:
        # RFC 6887 s13.3: a prefix is at most 128 bits; an IPv4 filter's is
        # 96 plus the IPv4 prefix (or 0).
        v6 = "20010db8000000000000000000000000"
        v4 = "00000000000000000000ffffc6336400"
        for prefix, address in (("81", v6), ("60", v4), ("5f", v4)):
            option = hexBytes(f"03 00 0014 00 {prefix} 0000 {address}")
            if prefix == "60":
                self.assertEqual(len(decodeRequest(mapRequest(option)).options), 1)
            else:
                self.assertRejected(mapRequest(option), ResultCode.MALFORMED_OPTION)
