# -*- test-case-name: tests.natpmp.test_wire -*-
"""
NAT-PMP (RFC 6886) messages and their wire encoding: the messages of
L{twisted_natpmp.natpmp._messages}, re-exported, and their decoders.

Pure code: no I/O, no reactor, no logging.  Every message type is an
immutable value with an C{encode()} method; L{decodeRequest} and
L{decodeResponse} turn bytes back into messages, raising L{MalformedPacket}
(or one of its subclasses) with a reason that says what was wrong.

Decoding is liberal where RFC 6886 is silent: trailing bytes are ignored and
the reserved field of a mapping request is not checked.  Only packets that
are too short, carry an unknown version or opcode, or go the wrong way are
rejected.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from .._types import Transport
from ..errors import (
    GatewayError,
    NetworkFailureError,
    NotAuthorizedError,
    OutOfResourcesError,
    UnknownResultError,
    UnsupportedOpcodeError,
    UnsupportedVersionError,
)
from . import _messages
from ._messages import (
    _EXTERNAL_RESPONSE,
    _EXTERNAL_RESPONSE_OPCODE,
    _HEADER,
    _MAP_REQUEST,
    _MAP_RESPONSE,
    _OP_EXTERNAL_ADDRESS,
    _RESPONSE_BIT,
    ANNOUNCE_GROUP,
    CLIENT_PORT,
    OPCODES,
    RECOMMENDED_LIFETIME,
    RESPONSE_BIT,
    SERVER_PORT,
    VERSION,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Message,
    Protocol,
    Request,
    Response,
    _new,
    encode,
)
from ._results import (
    MalformedPacket,
    ResultCode,
    UnsupportedOpcode,
    UnsupportedVersion,
    describeResult,
)

# Bound by assignment, not by import: CPython 3.11 compiles a method call on
# an imported name as an attribute load (it expects a module), which makes
# the decoders' dict lookups slower.
_PROTOCOLS = _messages._PROTOCOLS

__all__ = [
    "ANNOUNCE_GROUP",
    "CLIENT_PORT",
    "OPCODES",
    "RECOMMENDED_LIFETIME",
    "RESPONSE_BIT",
    "RESULT_FOR_ERROR",
    "SERVER_PORT",
    "VERSION",
    "Transport",
    "ErrorResponse",
    "ExternalAddressRequest",
    "ExternalAddressResponse",
    "MalformedPacket",
    "MapRequest",
    "MapResponse",
    "Message",
    "Protocol",
    "Request",
    "Response",
    "ResultCode",
    "UnsupportedOpcode",
    "UnsupportedVersion",
    "decodeRequest",
    "decodeResponse",
    "describeResult",
    "encode",
    "errorForResult",
]

#: Decoded external addresses, by their 4 bytes: a gateway reports the same
#: one again and again, and building an IPv4Address is the dearest part of
#: decoding.  Bounded, since the bytes come from the network.
_ADDRESSES: dict[bytes, IPv4Address] = {}
_ADDRESS_CACHE_SIZE = 256


def _newAddress(raw: bytes) -> IPv4Address:
    """
    Build and cache the address for C{raw}, which is not in the cache.
    """
    if len(_ADDRESSES) >= _ADDRESS_CACHE_SIZE:
        _ADDRESSES.clear()
    address = _ADDRESSES[raw] = IPv4Address(raw)
    return address


def decodeRequest(packet: bytes) -> Request:
    """
    Decode a packet sent to a gateway.

    @raise UnsupportedVersion: the version is not 0.
    @raise UnsupportedOpcode: the opcode is below 128 and unknown.
    @raise MalformedPacket: the packet is too short, or is a response.
    """
    if len(packet) >= _MAP_REQUEST_SIZE:
        # The common case first: a whole mapping request.
        version, opcode, _, internal, external, lifetime = _unpackMapRequest(packet)
        protocol = _PROTOCOLS.get(opcode)
        if version == VERSION and protocol is not None:
            return _new(MapRequest, (protocol, internal, external, lifetime))  # type: ignore[no-any-return]
    if len(packet) < 2:
        raise MalformedPacket(f"packet of {len(packet)} bytes is too short", packet)
    version, opcode = packet[0], packet[1]
    if version != VERSION:
        raise UnsupportedVersion(version, packet)
    if opcode == _OP_EXTERNAL_ADDRESS:
        return _EXTERNAL_ADDRESS_REQUEST
    if opcode & _RESPONSE_BIT:
        raise MalformedPacket(f"opcode {opcode} is a response, not a request", packet)
    if opcode not in _PROTOCOLS:
        raise UnsupportedOpcode(opcode, packet)
    raise MalformedPacket(
        f"mapping request of {len(packet)} bytes is too short"
        f" (needs {_MAP_REQUEST.size})",
        packet,
    )


_EXTERNAL_ADDRESS_REQUEST = ExternalAddressRequest()
_unpackMapRequest = _MAP_REQUEST.unpack_from
_unpackMapResponse = _MAP_RESPONSE.unpack_from
_unpackExternalResponse = _EXTERNAL_RESPONSE.unpack_from
_unpackHeader = _HEADER.unpack_from
_RESPONSE_PROTOCOLS = {_RESPONSE_BIT | opcode: t for t, opcode in OPCODES.items()}
# Plain ints for the hot paths: enum member lookups cost more than the rest.
_HEADER_SIZE = _HEADER.size
_EXTERNAL_RESPONSE_SIZE = _EXTERNAL_RESPONSE.size
_MAP_REQUEST_SIZE = _MAP_REQUEST.size
_MAP_RESPONSE_SIZE = _MAP_RESPONSE.size
_SUCCESS = int(ResultCode.SUCCESS)
_UNSUPPORTED_VERSION = int(ResultCode.UNSUPPORTED_VERSION)


def decodeResponse(packet: bytes) -> Response:
    """
    Decode a packet sent by a gateway.

    Accepts the unsupported-version reply with opcode 0, 128 or 128 plus a
    request opcode (Errata 3618), and ignores trailing bytes.

    @raise MalformedPacket: the packet is too short, has a version other than
        0, is a request, or has an unknown opcode.
    """
    # Each layout is tried whole, longest first: one struct call both
    # checks and reads the packet.
    size = len(packet)
    if size >= _MAP_RESPONSE_SIZE:
        version, opcode, result, epoch, internal, external, lifetime = (
            _unpackMapResponse(packet)
        )
        protocol = _RESPONSE_PROTOCOLS.get(opcode)
        if version == VERSION and protocol is not None:
            fields = (protocol, result, epoch, internal, external, lifetime)
            return _new(MapResponse, fields)  # type: ignore[no-any-return]
    if size >= _EXTERNAL_RESPONSE_SIZE:
        version, opcode, result, epoch, raw = _unpackExternalResponse(packet)
        if version == VERSION and opcode == _EXTERNAL_RESPONSE_OPCODE:
            address = _ADDRESSES.get(raw) or _newAddress(raw)
            return _new(ExternalAddressResponse, (result, epoch, address))  # type: ignore[no-any-return]
    if size >= _HEADER_SIZE:
        version, opcode, result, epoch = _unpackHeader(packet)
        if (
            version == VERSION
            and result != _SUCCESS
            and (
                opcode & _RESPONSE_BIT
                # RFC 6886 s3.5 as printed, before Errata 3618: opcode 0.
                or (opcode == 0 and result == _UNSUPPORTED_VERSION)
            )
        ):
            return _new(ErrorResponse, (opcode, result, epoch))  # type: ignore[no-any-return]
    raise _rejectedResponse(packet)


def _rejectedResponse(packet: bytes) -> MalformedPacket:
    """
    Say why L{decodeResponse} could not decode C{packet}.
    """
    size = len(packet)
    if size < 2:
        return MalformedPacket(f"packet of {size} bytes is too short", packet)
    version, opcode = packet[0], packet[1]
    if version != VERSION:
        return MalformedPacket(f"unsupported version {version}", packet)
    if size < _HEADER.size:
        return MalformedPacket(
            f"response of {size} bytes is too short (needs {_HEADER.size})", packet
        )
    if not opcode & _RESPONSE_BIT:
        return MalformedPacket(f"opcode {opcode} is a request, not a response", packet)
    request = opcode ^ _RESPONSE_BIT
    if request == _OP_EXTERNAL_ADDRESS or request in _PROTOCOLS:
        return MalformedPacket(
            f"response to opcode {request} of {size} bytes is too short", packet
        )
    return MalformedPacket(f"unknown opcode {opcode}", packet)


def _errorTable() -> dict[int, type[GatewayError]]:
    return {
        ResultCode.UNSUPPORTED_VERSION: UnsupportedVersionError,
        ResultCode.NOT_AUTHORIZED: NotAuthorizedError,
        ResultCode.NETWORK_FAILURE: NetworkFailureError,
        ResultCode.OUT_OF_RESOURCES: OutOfResourcesError,
        ResultCode.UNSUPPORTED_OPCODE: UnsupportedOpcodeError,
    }


_ERRORS = _errorTable()


def errorForResult(resultCode: int) -> GatewayError:
    """
    The error, named by meaning, for a non-zero NAT-PMP result code (RFC
    6886 s3.5); a code the RFC does not define is an L{UnknownResultError}.
    """
    kind = _ERRORS.get(resultCode, UnknownResultError)
    return kind(resultCode, describeResult(resultCode), protocol="natpmp")


#: The NAT-PMP result code for each error meaning a gateway can answer with.
RESULT_FOR_ERROR: dict[type[GatewayError], int] = {
    cls: int(code) for code, cls in _ERRORS.items()
}
