"""
NAT-PMP (RFC 6886) messages and their wire encoding.

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

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

#: The UDP port a NAT-PMP gateway listens on (RFC 6886 s3.1).
SERVER_PORT = 5351
#: The UDP port clients listen on for announcements (RFC 6886 s3.2.1).
CLIENT_PORT = 5350
#: The multicast group announcements are sent to (RFC 6886 s3.2.1).
ANNOUNCE_GROUP = "224.0.0.1"
#: The only protocol version this module speaks (RFC 6886 s3).
VERSION = 0
#: The lifetime RFC 6886 s3.3 recommends for a mapping, in seconds.
RECOMMENDED_LIFETIME = 7200

_OP_EXTERNAL_ADDRESS = 0
_RESPONSE_BIT = 128

_HEADER = struct.Struct("!BBHI")  # version, opcode, result, epoch
_EXTERNAL_RESPONSE = struct.Struct("!BBHI4s")
_MAP_REQUEST = struct.Struct("!BBHHHI")  # version, op, reserved, int, ext, life
_MAP_RESPONSE = struct.Struct("!BBHIHHI")

_MAX16 = 0xFFFF
_MAX32 = 0xFFFFFFFF


class Protocol(IntEnum):
    """
    A transport protocol that can be mapped; the value is the request opcode
    (RFC 6886 s3.3).
    """

    UDP = 1
    TCP = 2

    @property
    def label(self) -> str:
        """
        The lower-case name, as used on command lines: C{"udp"} or C{"tcp"}.
        """
        return self.name.lower()


class ResultCode(IntEnum):
    """
    The result codes of RFC 6886 s3.5.
    """

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


_MEANINGS = {
    ResultCode.SUCCESS: "success",
    ResultCode.UNSUPPORTED_VERSION: "unsupported version",
    ResultCode.NOT_AUTHORIZED: "not authorized/refused",
    ResultCode.NETWORK_FAILURE: "network failure",
    ResultCode.OUT_OF_RESOURCES: "out of resources",
    ResultCode.UNSUPPORTED_OPCODE: "unsupported opcode",
}


def describeResult(code: int) -> str:
    """
    Say what a result code means, including codes RFC 6886 does not define.

    @param code: a 16-bit result code as found on the wire.
    @return: e.g. C{"out of resources"} or C{"unknown result code 9"}.
    """
    try:
        return _MEANINGS[ResultCode(code)]
    except ValueError:
        return f"unknown result code {code}"


class MalformedPacket(ValueError):
    """
    A packet could not be decoded as a NAT-PMP message.

    @ivar reason: what was wrong, for a person.
    @ivar packet: the bytes that were rejected.
    """

    def __init__(self, reason: str, packet: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.packet = packet


class UnsupportedVersion(MalformedPacket):
    """
    A request carried a version other than 0; a gateway answers it with
    result 1 (RFC 6886 s3.5).

    @ivar version: the version byte received.
    """

    def __init__(self, version: int, packet: bytes) -> None:
        super().__init__(f"unsupported version {version}", packet)
        self.version = version


class UnsupportedOpcode(MalformedPacket):
    """
    A request carried an opcode below 128 that is not 0, 1 or 2; a gateway
    answers it with result 5 (RFC 6886 s3.5).

    @ivar opcode: the opcode received.
    """

    def __init__(self, opcode: int, packet: bytes) -> None:
        super().__init__(f"unsupported opcode {opcode}", packet)
        self.opcode = opcode


def _checkRange(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value!r} is out of range 0-{maximum}")


@dataclass(frozen=True, slots=True)
class ExternalAddressRequest:
    """
    Ask the gateway for its external IPv4 address (RFC 6886 s3.2).
    """

    opcode = _OP_EXTERNAL_ADDRESS

    def encode(self) -> bytes:
        return bytes((VERSION, _OP_EXTERNAL_ADDRESS))


@dataclass(frozen=True, slots=True)
class MapRequest:
    """
    Create, renew or delete a mapping (RFC 6886 s3.3, s3.4).

    A lifetime of 0 deletes; internal port 0 with lifetime 0 deletes all of
    the client's mappings of C{protocol}.

    @ivar protocol: the protocol to map.
    @ivar internalPort: the port on the client.
    @ivar suggestedExternalPort: the external port the client would like; 0
        lets the gateway choose.
    @ivar lifetime: the requested lifetime in seconds.
    """

    protocol: Protocol
    internalPort: int
    suggestedExternalPort: int
    lifetime: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", Protocol(self.protocol))
        _checkRange("internal port", self.internalPort, _MAX16)
        _checkRange("suggested external port", self.suggestedExternalPort, _MAX16)
        _checkRange("lifetime", self.lifetime, _MAX32)

    @property
    def opcode(self) -> int:
        return int(self.protocol)

    def encode(self) -> bytes:
        return _MAP_REQUEST.pack(
            VERSION,
            self.protocol,
            0,
            self.internalPort,
            self.suggestedExternalPort,
            self.lifetime,
        )


@dataclass(frozen=True, slots=True)
class ExternalAddressResponse:
    """
    The gateway's external address (RFC 6886 s3.2); also the packet a
    gateway multicasts as an announcement (s3.2.1).

    @ivar resultCode: 0 on success; the address must be ignored otherwise.
    @ivar epoch: seconds since start of epoch (s3.6).
    @ivar externalAddress: the gateway's external IPv4 address.
    """

    resultCode: int
    epoch: int
    externalAddress: IPv4Address

    opcode = _RESPONSE_BIT | _OP_EXTERNAL_ADDRESS

    def __post_init__(self) -> None:
        _checkRange("result code", self.resultCode, _MAX16)
        _checkRange("epoch", self.epoch, _MAX32)
        object.__setattr__(self, "externalAddress", IPv4Address(self.externalAddress))

    def encode(self) -> bytes:
        return _EXTERNAL_RESPONSE.pack(
            VERSION,
            self.opcode,
            self.resultCode,
            self.epoch,
            self.externalAddress.packed,
        )


@dataclass(frozen=True, slots=True)
class MapResponse:
    """
    The answer to a L{MapRequest} (RFC 6886 s3.3).

    @ivar protocol: the protocol of the request answered.
    @ivar resultCode: 0 on success.
    @ivar epoch: seconds since start of epoch (s3.6).
    @ivar internalPort: the request's internal port, echoed.
    @ivar externalPort: the external port granted (0 on deletion or error).
    @ivar lifetime: the lifetime granted, in seconds.
    """

    protocol: Protocol
    resultCode: int
    epoch: int
    internalPort: int
    externalPort: int
    lifetime: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", Protocol(self.protocol))
        _checkRange("result code", self.resultCode, _MAX16)
        _checkRange("epoch", self.epoch, _MAX32)
        _checkRange("internal port", self.internalPort, _MAX16)
        _checkRange("external port", self.externalPort, _MAX16)
        _checkRange("lifetime", self.lifetime, _MAX32)

    @property
    def opcode(self) -> int:
        return _RESPONSE_BIT | int(self.protocol)

    def encode(self) -> bytes:
        return _MAP_RESPONSE.pack(
            VERSION,
            self.opcode,
            self.resultCode,
            self.epoch,
            self.internalPort,
            self.externalPort,
            self.lifetime,
        )


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """
    An 8-byte response that carries only the common header: the
    unsupported-version reply (RFC 6886 s3.5, Errata 3618: opcode 128, though
    servers in the wild also send 0 or 128 plus the request's opcode), or a
    short unsupported-opcode reply.

    @ivar opcode: the opcode byte as sent.
    @ivar resultCode: a non-zero result code.
    @ivar epoch: seconds since start of epoch.
    """

    opcode: int
    resultCode: int
    epoch: int

    def __post_init__(self) -> None:
        _checkRange("opcode", self.opcode, 0xFF)
        _checkRange("result code", self.resultCode, _MAX16)
        _checkRange("epoch", self.epoch, _MAX32)

    def encode(self) -> bytes:
        return _HEADER.pack(VERSION, self.opcode, self.resultCode, self.epoch)


Request = ExternalAddressRequest | MapRequest
Response = ExternalAddressResponse | MapResponse | ErrorResponse
Message = Request | Response


def encode(message: Message) -> bytes:
    """
    Encode any NAT-PMP message.
    """
    return message.encode()


def decodeRequest(packet: bytes) -> Request:
    """
    Decode a packet sent to a gateway.

    @raise UnsupportedVersion: the version is not 0.
    @raise UnsupportedOpcode: the opcode is below 128 and unknown.
    @raise MalformedPacket: the packet is too short, or is a response.
    """
    if len(packet) < 2:
        raise MalformedPacket(f"packet of {len(packet)} bytes is too short", packet)
    version, opcode = packet[0], packet[1]
    if version != VERSION:
        raise UnsupportedVersion(version, packet)
    if opcode & _RESPONSE_BIT:
        raise MalformedPacket(f"opcode {opcode} is a response, not a request", packet)
    if opcode == _OP_EXTERNAL_ADDRESS:
        return ExternalAddressRequest()
    if opcode not in (Protocol.UDP, Protocol.TCP):
        raise UnsupportedOpcode(opcode, packet)
    if len(packet) < _MAP_REQUEST.size:
        raise MalformedPacket(
            f"mapping request of {len(packet)} bytes is too short"
            f" (needs {_MAP_REQUEST.size})",
            packet,
        )
    _, _, _, internal, external, lifetime = _MAP_REQUEST.unpack_from(packet)
    return MapRequest(Protocol(opcode), internal, external, lifetime)


def decodeResponse(packet: bytes) -> Response:
    """
    Decode a packet sent by a gateway.

    Accepts the unsupported-version reply with opcode 0, 128 or 128 plus a
    request opcode (Errata 3618), and ignores trailing bytes.

    @raise MalformedPacket: the packet is too short, has a version other than
        0, is a request, or has an unknown opcode.
    """
    size = len(packet)
    if size < 2:
        raise MalformedPacket(f"packet of {size} bytes is too short", packet)
    version, opcode = packet[0], packet[1]
    if version != VERSION:
        raise MalformedPacket(f"unsupported version {version}", packet)
    if size < _HEADER.size:
        raise MalformedPacket(
            f"response of {size} bytes is too short (needs {_HEADER.size})", packet
        )
    _, _, result, epoch = _HEADER.unpack_from(packet)
    if opcode == _OP_EXTERNAL_ADDRESS and result == ResultCode.UNSUPPORTED_VERSION:
        # RFC 6886 s3.5 as printed, before Errata 3618.
        return ErrorResponse(opcode, result, epoch)
    if not opcode & _RESPONSE_BIT:
        raise MalformedPacket(f"opcode {opcode} is a request, not a response", packet)
    request = opcode & ~_RESPONSE_BIT
    if request == _OP_EXTERNAL_ADDRESS and size >= _EXTERNAL_RESPONSE.size:
        address = IPv4Address(packet[8:12])
        return ExternalAddressResponse(result, epoch, address)
    if request in (Protocol.UDP, Protocol.TCP) and size >= _MAP_RESPONSE.size:
        _, _, _, _, internal, external, lifetime = _MAP_RESPONSE.unpack_from(packet)
        return MapResponse(
            Protocol(request), result, epoch, internal, external, lifetime
        )
    if result != ResultCode.SUCCESS:
        return ErrorResponse(opcode, result, epoch)
    if request in (_OP_EXTERNAL_ADDRESS, Protocol.UDP, Protocol.TCP):
        raise MalformedPacket(
            f"response to opcode {request} of {size} bytes is too short", packet
        )
    raise MalformedPacket(f"unknown opcode {opcode}", packet)
