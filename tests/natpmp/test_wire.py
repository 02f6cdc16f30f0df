"""
Tests for L{twisted_natpmp.natpmp._wire}: the golden packets of a real miniupnpd,
and the packets decoding must reject (the messages as values, and their
round trips, in L{tests.natpmp.test_wirevalues}).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    Protocol,
    ResultCode,
    UnsupportedOpcode,
    UnsupportedVersion,
    decodeRequest,
    decodeResponse,
    describeResult,
    encode,
)

from ..vectors import loadAnnouncements, loadCases

CASES = loadCases()
EXTERNAL = IPv4Address("192.0.3.77")


class GoldenVectorTests(SynchronousTestCase):
    """
    Packets captured from miniupnpd 2.3.1 decode to the values the capture's
    notes give, and canonical ones re-encode to the same bytes.
    """

    def case(self, name: str) -> tuple[bytes, bytes]:
        case = CASES[name]
        assert case.response is not None
        return case.request, case.response

    def test_externalAddress(self) -> None:
        request, response = self.case("external address")
        self.assertEqual(decodeRequest(request), ExternalAddressRequest())
        decoded = decodeResponse(response)
        self.assertEqual(decoded, ExternalAddressResponse(0, 14, EXTERNAL))
        self.assertEqual(encode(ExternalAddressRequest()), request)
        self.assertEqual(encode(decoded), response)

    def test_mapTCP(self) -> None:
        # RFC 6886 s3.3: a TCP mapping request is opcode 2; the reply 130.
        request, response = self.case("map tcp 6000->6000 lifetime 7200")
        self.assertEqual(
            decodeRequest(request), MapRequest(Protocol.TCP, 6000, 6000, 7200)
        )
        decoded = decodeResponse(response)
        self.assertEqual(decoded, MapResponse(Protocol.TCP, 0, 14, 6000, 6000, 7200))
        self.assertEqual(encode(decodeRequest(request)), request)
        self.assertEqual(encode(decoded), response)

    def test_mapUDPAnyPort(self) -> None:
        # RFC 6886 s3.3: suggested external port 0 lets the gateway choose.
        request, response = self.case(
            "map udp 6001, suggested external 0, lifetime 7200"
        )
        self.assertEqual(
            decodeRequest(request), MapRequest(Protocol.UDP, 6001, 0, 7200)
        )
        self.assertEqual(
            decodeResponse(response), MapResponse(Protocol.UDP, 0, 14, 6001, 6001, 7200)
        )
        self.assertEqual(encode(decodeResponse(response)), response)

    def test_renewal(self) -> None:
        # RFC 6886 s3.3: a renewal is the same request; it keeps the port.
        request, response = self.case("renew tcp 6000")
        self.assertEqual(request, self.case("map tcp 6000->6000 lifetime 7200")[0])
        self.assertEqual(decodeResponse(response).externalPort, 6000)  # type: ignore[union-attr]

    def test_lifetimes(self) -> None:
        for name, lifetime in [
            ("map tcp 6002 lifetime 1", 1),
            (
                "map tcp 6003 lifetime 4000000000 (granted as asked: this router"
                " does not cap)",
                4000000000,
            ),
        ]:
            request, response = self.case(name)
            decoded = decodeResponse(response)
            assert isinstance(decoded, MapResponse)
            self.assertEqual(decoded.lifetime, lifetime)
            self.assertEqual(decodeRequest(request).lifetime, lifetime)  # type: ignore[union-attr]
            self.assertEqual(encode(decoded), response)

    def test_delete(self) -> None:
        # RFC 6886 s3.4: deletion is lifetime 0 with suggested external port 0;
        # the reply has external port 0 and lifetime 0, even when nothing was
        # mapped.
        for name in [
            "delete tcp 6000 (lifetime 0, suggested external 0)",
            "delete tcp 6000 again, nothing mapped (still success)",
        ]:
            request, response = self.case(name)
            self.assertEqual(
                decodeRequest(request), MapRequest(Protocol.TCP, 6000, 0, 0)
            )
            self.assertEqual(
                decodeResponse(response), MapResponse(Protocol.TCP, 0, 14, 6000, 0, 0)
            )
            self.assertEqual(encode(MapRequest(Protocol.TCP, 6000, 0, 0)), request)

    def test_deleteAll(self) -> None:
        # RFC 6886 s3.4: internal port 0, external 0, lifetime 0; reply port 0.
        request, response = self.case("delete all udp (internal 0, lifetime 0)")
        self.assertEqual(decodeRequest(request), MapRequest(Protocol.UDP, 0, 0, 0))
        self.assertEqual(
            decodeResponse(response), MapResponse(Protocol.UDP, 0, 14, 0, 0, 0)
        )

    def test_unknownOpcodeShortReply(self) -> None:
        # RFC 6886 s3.5 asks for the request echoed with result 5; miniupnpd
        # sends an 8-byte header instead, which we tolerate.
        for name in [
            "unknown opcode 3 (8-byte reply, result 5)",
            "unknown opcode 3, 12 bytes",
        ]:
            request, response = self.case(name)
            exc = self.assertRaises(UnsupportedOpcode, decodeRequest, request)
            self.assertEqual(exc.opcode, 3)
            self.assertEqual(
                decodeResponse(response),
                ErrorResponse(131, ResultCode.UNSUPPORTED_OPCODE, 15),
            )

    def test_versionOne(self) -> None:
        # RFC 6886 s3.5: a gateway answers another version with result 1.
        request = CASES[
            "version 1 request (this router stays silent; RFC 6886 s3.5 asks for"
            " result 1)"
        ].request
        exc = self.assertRaises(UnsupportedVersion, decodeRequest, request)
        self.assertEqual(exc.version, 1)

    def test_tooShort(self) -> None:
        self.assertRaises(
            MalformedPacket, decodeRequest, CASES["1-byte packet"].request
        )
        exc = self.assertRaises(
            MalformedPacket,
            decodeRequest,
            CASES["11-byte map request (too short)"].request,
        )
        self.assertIn("too short", exc.reason)

    def test_trailingBytes(self) -> None:
        # Be liberal: trailing bytes are ignored, as miniupnpd does.
        request, response = self.case(
            "13-byte map request (one byte too many: this router answers anyway)"
        )
        self.assertEqual(
            decodeRequest(request), MapRequest(Protocol.TCP, 6005, 6005, 7200)
        )
        self.assertEqual(decodeResponse(response).epoch, 16)
        request, response = self.case(
            "external address request with 10 bytes of trailing junk (answered)"
        )
        self.assertEqual(decodeRequest(request), ExternalAddressRequest())
        self.assertEqual(
            decodeResponse(response), ExternalAddressResponse(0, 16, EXTERNAL)
        )
        self.assertEqual(decodeResponse(response + b"\x00" * 4).epoch, 16)

    def test_responseSentToGateway(self) -> None:
        # RFC 6886 s3.5: a packet with opcode >= 128 is not a request.
        request = CASES["a response (opcode 128) sent to the router"].request
        exc = self.assertRaises(MalformedPacket, decodeRequest, request)
        self.assertIn("response", exc.reason)

    def test_reservedFieldIgnored(self) -> None:
        # RFC 6886 s3.3: the reserved field is ignored on receipt.
        request, response = self.case(
            "map with non-zero reserved field (answered, field ignored)"
        )
        self.assertEqual(
            decodeRequest(request), MapRequest(Protocol.TCP, 6006, 6006, 7200)
        )
        self.assertEqual(request[2:4], b"\xff\xff")
        self.assertEqual(encode(decodeRequest(request))[2:4], b"\x00\x00")

    def test_errorReplyCarriesRequest(self) -> None:
        # RFC 6886 s3.5: an error reply still echoes the internal port.
        request, response = self.case(
            "map with internal port 0 and lifetime 7200 (result 2, not"
            " authorized/refused)"
        )
        decoded = decodeResponse(response)
        self.assertEqual(
            decoded,
            MapResponse(Protocol.TCP, ResultCode.NOT_AUTHORIZED, 17, 0, 0, 7200),
        )

    def test_pcpIsNotNATPMP(self) -> None:
        # A PCP (version 2) packet is neither a NAT-PMP request nor response.
        request = CASES[
            "PCP (version 2) MAP tcp 7000 lifetime 3600, client 10.77.0.2 as"
            " ::ffff:10.77.0.2, nonce 000102..0b"
        ]
        exc = self.assertRaises(UnsupportedVersion, decodeRequest, request.request)
        self.assertEqual(exc.version, 2)
        assert request.response is not None
        self.assertRaises(MalformedPacket, decodeResponse, request.response)

    def test_announcements(self) -> None:
        # RFC 6886 s3.2.1: the announcement is an external-address response.
        pcpStart, natpmp, pcp = loadAnnouncements()
        self.assertEqual(
            decodeResponse(natpmp), ExternalAddressResponse(0, 5, EXTERNAL)
        )
        self.assertRaises(MalformedPacket, decodeResponse, pcpStart)
        self.assertEqual(pcp, pcpStart)

    def test_everyCaseParses(self) -> None:
        """
        No captured packet makes either decoder fail with anything but
        L{MalformedPacket}.
        """
        self.assertEqual(len(CASES), 20)
        for case in CASES.values():
            for packet in (case.request, case.response or b""):
                for decode in (decodeRequest, decodeResponse):
                    try:
                        decode(packet)
                    except MalformedPacket:
                        pass


class UnsupportedVersionReplyTests(SynchronousTestCase):
    """
    RFC 6886 s3.5 with Errata 3618: the unsupported-version reply carries
    opcode 128, but servers also send 0 or 128 plus the request's opcode;
    every form decodes.
    """

    def test_opcodes(self) -> None:
        for opcode in (0, 128, 129, 130):
            packet = bytes([0, opcode, 0, 1, 0, 0, 0, 9])
            self.assertEqual(
                decodeResponse(packet),
                ErrorResponse(opcode, ResultCode.UNSUPPORTED_VERSION, 9),
            )

    def test_encode(self) -> None:
        self.assertEqual(
            ErrorResponse(128, 1, 3).encode(), bytes.fromhex("0080000100000003")
        )


class DecodeResponseRejectsTests(SynchronousTestCase):
    """
    Responses that are too short or go the wrong way are rejected with a
    reason; nothing else is raised.
    """

    def assertRejected(self, packet: bytes, reason: str) -> None:
        exc = self.assertRaises(MalformedPacket, decodeResponse, packet)
        self.assertIn(reason, exc.reason)
        self.assertEqual(exc.packet, packet)

    def test_short(self) -> None:
        self.assertRejected(b"", "too short")
        self.assertRejected(b"\x00\x80\x00", "too short")
        # A successful external-address response needs 12 bytes.
        self.assertRejected(bytes.fromhex("00800000000000"), "too short")
        self.assertRejected(bytes.fromhex("0080000000000001c00003"), "too short")
        # A successful mapping response needs 16 bytes.
        self.assertRejected(bytes.fromhex("008200000000000e177017700000"), "too short")

    def test_version(self) -> None:
        self.assertRejected(bytes.fromhex("01800000000000010a000001"), "version 1")

    def test_request(self) -> None:
        self.assertRejected(bytes.fromhex("0002000017701770"), "request")

    def test_unknownOpcode(self) -> None:
        self.assertRejected(bytes.fromhex("0083000000000001"), "unknown opcode 131")

    def test_describe(self) -> None:
        self.assertEqual(describeResult(4), "out of resources")
        self.assertEqual(describeResult(77), "unknown result code 77")
