# -*- test-case-name: tests.pcp.test_wire -*-
"""
PCP (RFC 6887) messages and their wire encoding, for clients and gateways
alike.

Pure code: no I/O, no reactor, no logging.  A L{Request} or L{Response} is
an immutable value with an C{encode()} method; L{decodeRequest} and
L{decodeResponse} turn bytes back into them, raising L{MalformedPacket}
with a reason and, for a request, the result code a gateway answers with
(see L{errorResponse}).  The constants, address fields and options live in
C{_fields}, C{_opdata}, C{_options} and C{_results} and are re-exported here: import
everything from this module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._types import IPAddress
from ..errors import GatewayError
from ._fields import (
    ALL_PROTOCOLS,
    CLIENT_PORT,
    HEADER_SIZE,
    MAX_SIZE,
    MAX_UINT32,
    NONCE_SIZE,
    PROTOCOL_NUMBERS,
    RESPONSE_BIT,
    SERVER_PORT,
    VERSION,
    Opcode,
    checkRange,
    decodeAddress,
    encodeAddress,
    noPreference,
    protocolNumber,
    transportFor,
)
from ._opdata import (
    MapData,
    OpcodeData,
    PeerData,
    checkData,
    dataSize,
    decodeData,
)
from ._options import (
    FilterOption,
    Option,
    OptionCode,
    PreferFailureOption,
    ThirdPartyOption,
    UnknownOption,
    decodeOptions,
    encodeOptions,
)
from ._results import (
    RESULT_FOR_ERROR,
    MalformedPacket,
    ResultCode,
    describeResult,
    errorForResult,
    isShortLived,
    resultForError,
)

__all__ = [
    "ALL_PROTOCOLS",
    "CLIENT_PORT",
    "HEADER_SIZE",
    "MAX_SIZE",
    "NONCE_SIZE",
    "PROTOCOL_NUMBERS",
    "RESULT_FOR_ERROR",
    "SERVER_PORT",
    "VERSION",
    "FilterOption",
    "MalformedPacket",
    "MapData",
    "Opcode",
    "OpcodeData",
    "Option",
    "OptionCode",
    "PeerData",
    "PreferFailureOption",
    "Request",
    "Response",
    "ResultCode",
    "ThirdPartyOption",
    "UnknownOption",
    "decodeAddress",
    "decodeRequest",
    "decodeResponse",
    "describeResult",
    "encodeAddress",
    "errorForResult",
    "errorResponse",
    "isNATPMPUnsupportedVersion",
    "isShortLived",
    "noPreference",
    "protocolNumber",
    "resultForError",
    "transportFor",
]

# RFC 6887 s7.1: version, R bit and opcode, reserved, lifetime, client address.
_REQUEST_HEADER = struct.Struct("!BBHI16s")
# RFC 6887 s7.2: version, R bit and opcode, reserved, result, lifetime, epoch,
# 12 reserved bytes.
_RESPONSE_HEADER = struct.Struct("!BBBBII12x")
_OPCODE_MASK = 0x7F
_NATPMP_REPLY = struct.Struct("!BBH")  # version, opcode, 16-bit result
_NATPMP_REPLY_SIZE = 8
_NATPMP_UNSUPPORTED_VERSION = 1


def _finish(packet: bytes) -> bytes:
    # RFC 6887 s7: no message is longer than 1100 bytes.
    if len(packet) > MAX_SIZE:
        raise ValueError(f"message of {len(packet)} bytes exceeds {MAX_SIZE}")
    return packet


@dataclass(frozen=True, slots=True)
class Request:
    """
    A PCP request (RFC 6887 s7.1), always version 2.

    @ivar opcode: what is asked.
    @ivar lifetime: the requested lifetime in seconds (0 deletes; ANNOUNCE
        sends 0).
    @ivar clientAddress: the client's own address, as the server will see
        it as the packet's source (RFC 6887 s8.2).
    @ivar data: the opcode data: L{MapData} for MAP, L{PeerData} for PEER,
        L{None} for ANNOUNCE.
    @ivar options: the options, in order.
    """

    opcode: Opcode
    lifetime: int
    clientAddress: IPAddress
    data: OpcodeData = None
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        checkRange("lifetime", self.lifetime, MAX_UINT32)
        checkData(self.opcode, self.data)
        if (self.data is None) != (self.opcode is Opcode.ANNOUNCE):
            raise ValueError(f"{self.opcode.name} request without its data")

    def encode(self) -> bytes:
        """
        @return: the request's bytes.
        @raise ValueError: it would be longer than 1100 bytes.
        """
        header = _REQUEST_HEADER.pack(
            VERSION, self.opcode, 0, self.lifetime, encodeAddress(self.clientAddress)
        )
        data = b"" if self.data is None else self.data.encode()
        return _finish(header + data + encodeOptions(self.options))


@dataclass(frozen=True, slots=True)
class Response:
    """
    A PCP response (RFC 6887 s7.2).

    @ivar opcode: the request's opcode.
    @ivar resultCode: a L{ResultCode}, or the plain number of one RFC 6887
        does not define.
    @ivar lifetime: on success the granted lifetime; on error how long the
        error is expected to last (RFC 6887 s7.2).
    @ivar epoch: the server's epoch time, in seconds (RFC 6887 s8.5).
    @ivar data: the opcode data (the assigned external port and address of a
        MAP), L{None} for ANNOUNCE and for an error response too short to
        carry it.
    @ivar options: the options, in order.
    @ivar version: 2, or (only with UNSUPP_VERSION, header only) the version
        the server speaks (RFC 6887 s9).
    """

    opcode: Opcode
    resultCode: int
    lifetime: int
    epoch: int
    data: OpcodeData = None
    options: tuple[Option, ...] = ()
    version: int = VERSION

    def __post_init__(self) -> None:
        checkRange("result code", self.resultCode, 0xFF)
        checkRange("lifetime", self.lifetime, MAX_UINT32)
        checkRange("epoch", self.epoch, MAX_UINT32)
        checkRange("version", self.version, 0xFF)
        checkData(self.opcode, self.data)
        if (
            self.resultCode == ResultCode.SUCCESS
            and self.data is None
            and self.opcode is not Opcode.ANNOUNCE
        ):
            raise ValueError(f"successful {self.opcode.name} response without data")
        if self.version != VERSION and (
            self.resultCode != ResultCode.UNSUPP_VERSION
            or self.data is not None
            or self.options
        ):
            raise ValueError(f"version {self.version} is only for UNSUPP_VERSION")

    @property
    def error(self) -> GatewayError | None:
        """
        The error the response reports (see L{errorForResult}), or L{None}
        for success.
        """
        if self.resultCode == ResultCode.SUCCESS:
            return None
        return errorForResult(self.resultCode, self.lifetime)

    def encode(self) -> bytes:
        """
        @return: the response's bytes.
        @raise ValueError: it would be longer than 1100 bytes.
        """
        header = _RESPONSE_HEADER.pack(
            self.version,
            RESPONSE_BIT | self.opcode,
            0,
            self.resultCode,
            self.lifetime,
            self.epoch,
        )
        data = b"" if self.data is None else self.data.encode()
        return _finish(header + data + encodeOptions(self.options))


def _checkSize(packet: bytes, resultCode: ResultCode | None) -> None:
    # RFC 6887 s7, s8.3: 24 to 1100 bytes, a multiple of 4.
    size = len(packet)
    if size < HEADER_SIZE:
        raise MalformedPacket(f"{size} bytes is too short", packet, resultCode)
    if size > MAX_SIZE:
        raise MalformedPacket(f"{size} bytes is too long", packet, resultCode)
    if size % 4:
        raise MalformedPacket(
            f"{size} bytes is not a multiple of 4", packet, resultCode
        )


def _opcode(packet: bytes, resultCode: ResultCode | None) -> Opcode:
    number = packet[1] & _OPCODE_MASK
    try:
        return Opcode(number)
    except ValueError:
        raise MalformedPacket(
            f"unsupported opcode {number}", packet, resultCode
        ) from None


def decodeRequest(packet: bytes) -> Request:
    """
    Decode a request, as a gateway receives it.

    Checked in RFC 6887 s8.2's order: shorter than 2 bytes, or the R bit
    set: dropped (C{resultCode} L{None}); a version other than 2:
    UNSUPP_VERSION; the size (24 to 1100, a multiple of 4):
    MALFORMED_REQUEST; the opcode: UNSUPP_OPCODE; opcode data cut short:
    MALFORMED_REQUEST; then the options (see L{decodeOptions}).  Reserved
    fields are not checked.  Version 0 is NAT-PMP's: dispatch it there
    before calling this.

    @param packet: the UDP payload.
    @return: the request.
    @raise MalformedPacket: the packet is not an acceptable request; its
        C{resultCode} says how to answer.
    """
    if len(packet) < 2 or packet[1] & RESPONSE_BIT:
        raise MalformedPacket("not a request", packet, None)
    if packet[0] != VERSION:
        raise MalformedPacket(
            f"unsupported version {packet[0]}", packet, ResultCode.UNSUPP_VERSION
        )
    _checkSize(packet, ResultCode.MALFORMED_REQUEST)
    opcode = _opcode(packet, ResultCode.UNSUPP_OPCODE)
    _, _, _, lifetime, client = _REQUEST_HEADER.unpack_from(packet)
    offset = HEADER_SIZE + dataSize(opcode)
    if len(packet) < offset:
        raise MalformedPacket(f"{opcode.name} request of {len(packet)} bytes", packet)
    return Request(
        opcode,
        lifetime,
        decodeAddress(client),
        decodeData(opcode, packet),
        decodeOptions(packet, offset, opcode, request=True),
    )


def decodeResponse(packet: bytes) -> Response:
    """
    Decode a response, as a client receives it.

    RFC 6887 s8.3: 24 to 1100 bytes, a multiple of 4, with the R bit set.
    A response in another version is accepted only as UNSUPP_VERSION, and
    decoded as its header alone (RFC 6887 s9).  An error response too
    short for its opcode data has none.  Options are decoded but not
    judged; reserved fields are not checked.  Check
    L{isNATPMPUnsupportedVersion} first: NAT-PMP's 8-byte reply is
    rejected here.

    @param packet: the UDP payload.
    @return: the response.
    @raise MalformedPacket: the packet is not an acceptable response (its
        C{resultCode} is L{None}: a client drops it).
    """
    _checkSize(packet, None)
    if not packet[1] & RESPONSE_BIT:
        raise MalformedPacket("not a response", packet, None)
    opcode = _opcode(packet, None)
    version, _, _, result, lifetime, epoch = _RESPONSE_HEADER.unpack_from(packet)
    try:
        resultCode: int = ResultCode(result)
    except ValueError:
        resultCode = result
    if version != VERSION:
        if resultCode != ResultCode.UNSUPP_VERSION:
            raise MalformedPacket(f"unsupported version {version}", packet, None)
        return Response(opcode, resultCode, lifetime, epoch, version=version)
    offset = HEADER_SIZE + dataSize(opcode)
    if len(packet) < offset:
        if resultCode == ResultCode.SUCCESS:
            raise MalformedPacket(
                f"{opcode.name} response of {len(packet)} bytes", packet, None
            )
        return Response(opcode, resultCode, lifetime, epoch)
    return Response(
        opcode,
        resultCode,
        lifetime,
        epoch,
        decodeData(opcode, packet),
        decodeOptions(packet, offset, opcode, request=False),
    )


def errorResponse(
    request: bytes, resultCode: ResultCode, lifetime: int, epoch: int
) -> bytes:
    """
    A gateway's error response to a rejected request, built from its bytes
    (RFC 6887 s8.2): up to 1100 bytes of the request are copied, padded
    with zeros to at least 24 bytes and to a multiple of 4, then the header
    is overwritten: version 2, the R bit, the result code, the lifetime, the
    epoch, and the reserved bytes zeroed.  The opcode data and options stay
    where they were, so the client can match the answer (and clients that
    need a 60-byte MAP answer get one).

    @param request: the request's bytes, at least 2 long (shorter ones get
        no answer).
    @param resultCode: the error (typically L{MalformedPacket.resultCode}).
    @param lifetime: how long the error is expected to last.
    @param epoch: the server's epoch time.
    @return: the response's bytes.
    """
    body = request[:MAX_SIZE]
    size = max(HEADER_SIZE, (len(body) + 3) & ~3)
    body = body.ljust(size, b"\0")
    header = _RESPONSE_HEADER.pack(
        VERSION, RESPONSE_BIT | (body[1] & _OPCODE_MASK), 0, resultCode, lifetime, epoch
    )
    return header + body[HEADER_SIZE:]


def isNATPMPUnsupportedVersion(packet: bytes) -> bool:
    """
    Whether a reply to a PCP request is a NAT-PMP-only gateway's
    "unsupported version" (RFC 6887 s9; RFC 6886 s3.5): exactly 8 bytes,
    version 0, result 1 in the 16-bit field of bytes 2-3 (so byte 3 reads
    as PCP's UNSUPP_VERSION too).  Its opcode byte is not checked: servers
    send 0, 128 or 128 plus the request's opcode (erratum 3618).
    miniupnpd's version-0 answer to a malformed request (result 3) is not
    one.

    @param packet: the UDP payload.
    @return: C{True} if the client should speak NAT-PMP to this gateway.
    """
    if len(packet) != _NATPMP_REPLY_SIZE:
        return False
    version, _, result = _NATPMP_REPLY.unpack_from(packet)
    return bool(version == 0 and result == _NATPMP_UNSUPPORTED_VERSION)
