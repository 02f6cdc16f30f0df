"""
Tests for the answering side of L{twisted_natpmp.pcp._wire}: what
L{decodeResponse} accepts and refuses, L{errorResponse}, the NAT-PMP
fallback reply, and the table between PCP result codes and the errors by
meaning.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.pcp._wire import (
    RESULT_FOR_ERROR,
    MalformedPacket,
    MapData,
    Opcode,
    Response,
    ResultCode,
    UnknownOption,
    decodeRequest,
    decodeResponse,
    describeResult,
    errorForResult,
    errorResponse,
    isNATPMPUnsupportedVersion,
    isShortLived,
    resultForError,
)

from ..vectors import loadCases

CASES = loadCases()
PCP_MAP = next(case for name, case in CASES.items() if name.startswith("PCP"))
assert PCP_MAP.response is not None
MAP_RESPONSE: bytes = PCP_MAP.response
NONCE = bytes(range(12))


def withHeader(packet: bytes, **fields: int) -> bytes:
    """
    C{packet} with some header bytes replaced, by offset name.
    """
    offsets = {"version": 0, "opcode": 1, "result": 3}
    changed = bytearray(packet)
    for name, value in fields.items():
        changed[offsets[name]] = value
    return bytes(changed)


class ResponseDecodingTests(SynchronousTestCase):
    def test_size(self) -> None:
        # RFC 6887 s8.3: a response of fewer than 24 bytes, more than 1100,
        # or not a multiple of 4 is dropped.
        for packet in (
            MAP_RESPONSE[:20],
            MAP_RESPONSE[:58],
            MAP_RESPONSE + bytes(1044),
        ):
            error = self.assertRaises(MalformedPacket, decodeResponse, packet)
            self.assertIsNone(error.resultCode)

    def test_requestDropped(self) -> None:
        # RFC 6887 s8.3: a client drops a message with the R bit clear.
        self.assertRaises(MalformedPacket, decodeResponse, PCP_MAP.request)

    def test_unknownOpcode(self) -> None:
        # RFC 6887 s7.2: a response to an opcode never sent is dropped.
        packet = withHeader(MAP_RESPONSE, opcode=0x83)
        self.assertRaises(MalformedPacket, decodeResponse, packet)

    def test_otherVersion(self) -> None:
        # RFC 6887 s9: another version is read only as UNSUPP_VERSION, whose
        # version byte says what the server speaks; header only.
        packet = withHeader(MAP_RESPONSE, version=3, result=1)
        self.assertEqual(
            decodeResponse(packet),
            Response(Opcode.MAP, ResultCode.UNSUPP_VERSION, 3600, 17, version=3),
        )
        packet = withHeader(MAP_RESPONSE, version=3)
        self.assertRaises(MalformedPacket, decodeResponse, packet)

    def test_miniupnpdVersionZeroReply(self) -> None:
        # RFC 6887 s9, as miniupnpd departs from it: its version-0 answer to a
        # malformed request (opcode 0x80, result 3) is neither PCP nor proof
        # of a NAT-PMP-only server.
        packet = bytes.fromhex("00800003") + bytes(20)
        self.assertRaises(MalformedPacket, decodeResponse, packet)
        self.assertFalse(isNATPMPUnsupportedVersion(packet))
        self.assertFalse(isNATPMPUnsupportedVersion(packet[:8]))

    def test_shortError(self) -> None:
        # RFC 6887 s7.2, s8.3: an error answered with the bare header still
        # says what went wrong; a success must carry its data (s11.1).
        packet = withHeader(MAP_RESPONSE[:24], result=ResultCode.ADDRESS_MISMATCH)
        response = decodeResponse(packet)
        self.assertIsNone(response.data)
        self.assertIsInstance(response.error, errors.AddressMismatchError)
        self.assertRaises(MalformedPacket, decodeResponse, MAP_RESPONSE[:24])

    def test_unknownResult(self) -> None:
        # RFC 6887 s7.4: a code it does not define is kept as a number.
        response = decodeResponse(withHeader(MAP_RESPONSE, result=99))
        self.assertEqual(response.resultCode, 99)
        self.assertNotIsInstance(response.resultCode, ResultCode)
        self.assertIsInstance(response.error, errors.UnknownResultError)

    def test_optionsNotJudged(self) -> None:
        # RFC 6887 s7.3: judging options is the server's work; a client keeps
        # an unknown mandatory option rather than drop the answer.
        response = decodeResponse(MAP_RESPONSE + bytes.fromhex("7f000000"))
        self.assertEqual(response.options, (UnknownOption(0x7F, b""),))
        # A malformed option is dropped with the rest, not answered.
        error = self.assertRaises(
            MalformedPacket, decodeResponse, MAP_RESPONSE + bytes.fromhex("01000000")
        )
        self.assertIsNone(error.resultCode)

    def test_reservedIgnored(self) -> None:
        # RFC 6887 s7.2: the reserved bytes are not checked.
        packet = MAP_RESPONSE[:2] + b"\xff" + MAP_RESPONSE[3:12] + b"\xff" * 12
        self.assertEqual(
            decodeResponse(packet + MAP_RESPONSE[24:]), decodeResponse(MAP_RESPONSE)
        )


class ErrorResponseTests(SynchronousTestCase):
    def test_copiesRequest(self) -> None:
        # RFC 6887 s8.2: the error answer is a copy of the request with the
        # response header written over it: the nonce, ports and options stay
        # (a MAP error is 60 bytes, not the bare header).
        packet = errorResponse(PCP_MAP.request, ResultCode.ADDRESS_MISMATCH, 0, 17)
        self.assertEqual(
            packet[:24], bytes.fromhex("0281000c0000000000000011") + bytes(12)
        )
        self.assertEqual(packet[24:], PCP_MAP.request[24:])
        response = decodeResponse(packet)
        self.assertEqual(
            response.data,
            MapData(NONCE, 6, 7000, 7000, IPv4Address(0)),
        )

    def test_padded(self) -> None:
        # RFC 6887 s8.2: shorter than 24 bytes: padded to 24 with zeros; not a
        # multiple of 4: padded to the next one; longer than 1100: cut.
        short = errorResponse(b"\x02\x01\xff", ResultCode.MALFORMED_REQUEST, 0, 5)
        self.assertEqual(short, bytes.fromhex("02810003000000000000000500") + bytes(11))
        odd = errorResponse(
            PCP_MAP.request + b"\xaa\xbb", ResultCode.MALFORMED_REQUEST, 0, 5
        )
        self.assertEqual(len(odd), 64)
        self.assertEqual(odd[60:], b"\xaa\xbb\0\0")
        long = errorResponse(PCP_MAP.request * 20, ResultCode.MALFORMED_REQUEST, 0, 5)
        self.assertEqual(len(long), 1100)
        self.assertEqual(long[24:], (PCP_MAP.request * 20)[24:1100])

    def test_version(self) -> None:
        # RFC 6887 s9: UNSUPP_VERSION carries the version the server speaks.
        request = withHeader(PCP_MAP.request, version=3)
        error = self.assertRaises(MalformedPacket, decodeRequest, request)
        assert error.resultCode is not None
        packet = errorResponse(request, error.resultCode, 0, 9)
        self.assertEqual(packet[:4], bytes.fromhex("02810001"))
        self.assertEqual(len(packet), 60)

    def test_unknownOpcode(self) -> None:
        # RFC 6887 s8.2: the opcode is echoed even when not understood.
        request = withHeader(PCP_MAP.request[:24], opcode=5)
        packet = errorResponse(request, ResultCode.UNSUPP_OPCODE, 0, 9)
        self.assertEqual(packet[:4], bytes.fromhex("02850004"))
        self.assertEqual(len(packet), 24)


class NATPMPFallbackTests(SynchronousTestCase):
    def test_unsupportedVersion(self) -> None:
        # RFC 6887 s9, RFC 6886 s3.5: a NAT-PMP-only gateway answers 8 bytes of
        # version 0 with result 1; its opcode byte is 0, 128 or 128 plus the
        # request's opcode (erratum 3618).
        for opcode in (0x00, 0x80, 0x81):
            packet = bytes([0, opcode, 0, 1]) + bytes.fromhex("0000002a")
            self.assertTrue(isNATPMPUnsupportedVersion(packet))

    def test_otherReplies(self) -> None:
        # RFC 6887 s9: another shape is no proof of NAT-PMP.
        reply = bytes.fromhex("0080000100000000")
        self.assertFalse(isNATPMPUnsupportedVersion(reply + bytes(4)))
        self.assertFalse(isNATPMPUnsupportedVersion(b"\x02" + reply[1:]))
        self.assertFalse(isNATPMPUnsupportedVersion(bytes.fromhex("0080010100000000")))
        # miniupnpd's NAT-PMP "unsupported opcode": result 5.
        unknown = CASES["unknown opcode 3 (8-byte reply, result 5)"].response
        assert unknown is not None
        self.assertFalse(isNATPMPUnsupportedVersion(unknown))
        self.assertFalse(isNATPMPUnsupportedVersion(MAP_RESPONSE))


class ResultTests(SynchronousTestCase):
    def test_errorClasses(self) -> None:
        # RFC 6887 s7.4: each code 1-13 stands for one error by meaning,
        # carrying the code, the protocol and the error's lifetime.
        expected = {
            1: errors.UnsupportedVersionError,
            2: errors.NotAuthorizedError,
            3: errors.MalformedRequestError,
            4: errors.UnsupportedOpcodeError,
            5: errors.UnsupportedOptionError,
            6: errors.MalformedOptionError,
            7: errors.NetworkFailureError,
            8: errors.OutOfResourcesError,
            9: errors.UnsupportedProtocolError,
            10: errors.UserExceededQuotaError,
            11: errors.CannotProvideExternalError,
            12: errors.AddressMismatchError,
            13: errors.ExcessiveRemotePeersError,
        }
        for code, errorClass in expected.items():
            error = errorForResult(code, 30)
            self.assertIs(type(error), errorClass)
            self.assertEqual(
                (error.resultCode, error.protocol, error.lifetime), (code, "pcp", 30)
            )
            self.assertEqual(RESULT_FOR_ERROR[errorClass], code)
            self.assertEqual(resultForError(errorClass()), code)
        self.assertEqual(len(RESULT_FOR_ERROR), 13)

    def test_unknown(self) -> None:
        # RFC 6887 s7.4: a code it does not define.
        error = errorForResult(14, 0)
        self.assertIs(type(error), errors.UnknownResultError)
        self.assertEqual(error.resultCode, 14)
        self.assertIn("unknown result code 14", str(error))

    def test_successIsNoError(self) -> None:
        self.assertRaises(ValueError, errorForResult, 0)

    def test_resultForError(self) -> None:
        # A NAT-PMP-numbered error is answered by meaning (NAT-PMP's 3 is
        # PCP's 7); a subclass by its nearest ancestor; a bare refusal and an
        # unknown code as NOT_AUTHORIZED; PCP's own code as itself.
        natpmp = errors.NetworkFailureError(3, protocol="natpmp")
        self.assertEqual(resultForError(natpmp), ResultCode.NETWORK_FAILURE)

        class Quota(errors.UserExceededQuotaError):
            pass

        self.assertEqual(resultForError(Quota()), ResultCode.USER_EX_QUOTA)
        self.assertEqual(
            resultForError(errors.GatewayError()), ResultCode.NOT_AUTHORIZED
        )
        unknown = errors.UnknownResultError()
        self.assertEqual(resultForError(unknown), ResultCode.NOT_AUTHORIZED)
        pcp = errors.GatewayError(8, protocol="pcp")
        self.assertEqual(resultForError(pcp), ResultCode.NO_RESOURCES)

    def test_shortLived(self) -> None:
        # RFC 6887 s7.4: 7, 8 and 10 are short-lived, the others long (11 is
        # unclassed: the errors' own table makes it short).
        short = {code for code in range(1, 20) if isShortLived(code)}
        self.assertEqual(short, {7, 8, 10, 11})

    def test_describe(self) -> None:
        self.assertEqual(describeResult(0), "success")
        self.assertEqual(describeResult(12), "address mismatch")
        self.assertEqual(describeResult(200), "unknown result code 200")
