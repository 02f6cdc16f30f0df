# -*- test-case-name: tests.natpmp.test_wire -*-
"""
NAT-PMP (RFC 6886) messages, their constants and their encoding; the
result codes and the decoding errors are in
L{twisted_natpmp.natpmp._results}, the decoders in
L{twisted_natpmp.natpmp._wire}, which re-exports all of this: import from
there.

Pure code: no I/O, no reactor, no logging.  Every message type is an
immutable value with an C{encode()} method.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from .._types import Transport

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

#: The bit a gateway sets in the opcode of every response (RFC 6886 s3.2).
RESPONSE_BIT = 128

_OP_EXTERNAL_ADDRESS = 0
_RESPONSE_BIT = RESPONSE_BIT

_HEADER = struct.Struct("!BBHI")  # version, opcode, result, epoch
_EXTERNAL_RESPONSE = struct.Struct("!BBHI4s")
_packExternalResponse = struct.Struct("!BBHII").pack
_MAP_REQUEST = struct.Struct("!BBHHHI")  # version, op, reserved, int, ext, life
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
_packMapRequest = _MAP_REQUEST.pack
_packMapResponse = _MAP_RESPONSE.pack
_packHeader = _HEADER.pack
_EXTERNAL_RESPONSE_OPCODE = RESPONSE_BIT | 0

_MAX16 = 0xFFFF
_MAX32 = 0xFFFFFFFF


#: NAT-PMP's name for a transport, kept for existing callers: the
#: protocol-neutral L{Transport}.  The codec translates it to the request
#: opcode (RFC 6886 s3.3: UDP 1, TCP 2).
Protocol = Transport

#: The request opcode of each transport (RFC 6886 s3.3).
OPCODES: dict[Transport, int] = {Transport.UDP: 1, Transport.TCP: 2}


def _transport(value: Transport | int) -> Transport:
    """
    A transport, given as one or as its NAT-PMP opcode.

    @raise ValueError: C{value} is neither.
    """
    if isinstance(value, Transport):
        return value
    try:
        return _PROTOCOLS[value]
    except (KeyError, TypeError):
        raise ValueError(
            f"{value!r} is not a NAT-PMP mapping opcode (1 or 2)"
        ) from None


def _checkRange(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value!r} is out of range 0-{maximum}")


_new = tuple.__new__
_OPCODE_OF = OPCODES
_PROTOCOLS = {opcode: t for t, opcode in OPCODES.items()}


class _Message(tuple):  # type: ignore[type-arg]
    """
    The base of every message: an immutable tuple of its fields that is
    equal only to a message of the same type and fields.

    Messages are tuples so that decoding builds them at the speed of
    C{struct.unpack}; the public constructors check every field, while the
    decoders, whose values come out of C{struct} in range, skip that.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self)))


class _ExternalAddressRequestFields(NamedTuple):
    pass


class ExternalAddressRequest(_ExternalAddressRequestFields, _Message):
    """
    Ask the gateway for its external IPv4 address (RFC 6886 s3.2).
    """

    __slots__ = ()
    opcode = _OP_EXTERNAL_ADDRESS

    def __repr__(self) -> str:
        return "ExternalAddressRequest()"

    def encode(self) -> bytes:
        return _EXTERNAL_REQUEST


_EXTERNAL_REQUEST = bytes((VERSION, _OP_EXTERNAL_ADDRESS))


class _MapRequestFields(NamedTuple):
    transport: Transport
    internalPort: int
    suggestedExternalPort: int
    lifetime: int


class MapRequest(_MapRequestFields, _Message):
    """
    Create, renew or delete a mapping (RFC 6886 s3.3, s3.4).

    A lifetime of 0 deletes; internal port 0 with lifetime 0 deletes all of
    the client's mappings of C{transport}.

    @ivar transport: the transport to map (also known as C{protocol}).
    @ivar internalPort: the port on the client.
    @ivar suggestedExternalPort: the external port the client would like; 0
        lets the gateway choose.
    @ivar lifetime: the requested lifetime in seconds.
    """

    __slots__ = ()

    def __new__(
        cls,
        transport: Transport | int,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
    ) -> MapRequest:
        _checkRange("internal port", internalPort, _MAX16)
        _checkRange("suggested external port", suggestedExternalPort, _MAX16)
        _checkRange("lifetime", lifetime, _MAX32)
        fields = (_transport(transport), internalPort, suggestedExternalPort, lifetime)
        return _new(cls, fields)  # type: ignore[no-any-return]

    @property
    def protocol(self) -> Transport:
        """
        The old name of L{transport}, kept for existing callers.
        """
        return self[0]  # type: ignore[no-any-return]

    @property
    def opcode(self) -> int:
        return _OPCODE_OF[self[0]]

    def encode(self) -> bytes:
        return _packMapRequest(
            VERSION, _OPCODE_OF[self[0]], 0, self[1], self[2], self[3]
        )


class _ExternalAddressResponseFields(NamedTuple):
    resultCode: int
    epoch: int
    externalAddress: IPv4Address


class ExternalAddressResponse(_ExternalAddressResponseFields, _Message):
    """
    The gateway's external address (RFC 6886 s3.2); also the packet a
    gateway multicasts as an announcement (s3.2.1).

    @ivar resultCode: 0 on success; the address must be ignored otherwise.
    @ivar epoch: seconds since start of epoch (s3.6).
    @ivar externalAddress: the gateway's external IPv4 address.
    """

    __slots__ = ()
    opcode = _RESPONSE_BIT | _OP_EXTERNAL_ADDRESS

    def __new__(
        cls, resultCode: int, epoch: int, externalAddress: IPv4Address | str | int
    ) -> ExternalAddressResponse:
        _checkRange("result code", resultCode, _MAX16)
        _checkRange("epoch", epoch, _MAX32)
        if not isinstance(externalAddress, IPv4Address):
            externalAddress = IPv4Address(externalAddress)
        return _new(cls, (resultCode, epoch, externalAddress))  # type: ignore[no-any-return]

    def encode(self) -> bytes:
        # The address as a 32-bit integer: the same bytes as its packed form.
        return _packExternalResponse(
            VERSION, _EXTERNAL_RESPONSE_OPCODE, self[0], self[1], int(self[2])
        )


class _MapResponseFields(NamedTuple):
    transport: Transport
    resultCode: int
    epoch: int
    internalPort: int
    externalPort: int
    lifetime: int


class MapResponse(_MapResponseFields, _Message):
    """
    The answer to a L{MapRequest} (RFC 6886 s3.3).

    @ivar transport: the transport of the request answered (also known as
        C{protocol}).
    @ivar resultCode: 0 on success.
    @ivar epoch: seconds since start of epoch (s3.6).
    @ivar internalPort: the request's internal port, echoed.
    @ivar externalPort: the external port granted (0 on deletion or error).
    @ivar lifetime: the lifetime granted, in seconds.
    """

    __slots__ = ()

    def __new__(
        cls,
        transport: Transport | int,
        resultCode: int,
        epoch: int,
        internalPort: int,
        externalPort: int,
        lifetime: int,
    ) -> MapResponse:
        _checkRange("result code", resultCode, _MAX16)
        _checkRange("epoch", epoch, _MAX32)
        _checkRange("internal port", internalPort, _MAX16)
        _checkRange("external port", externalPort, _MAX16)
        _checkRange("lifetime", lifetime, _MAX32)
        fields = (
            _transport(transport),
            resultCode,
            epoch,
            internalPort,
            externalPort,
            lifetime,
        )
        return _new(cls, fields)  # type: ignore[no-any-return]

    @property
    def protocol(self) -> Transport:
        """
        The old name of L{transport}, kept for existing callers.
        """
        return self[0]  # type: ignore[no-any-return]

    @property
    def opcode(self) -> int:
        return _RESPONSE_BIT | _OPCODE_OF[self[0]]

    def encode(self) -> bytes:
        return _packMapResponse(
            VERSION,
            _RESPONSE_BIT | _OPCODE_OF[self[0]],
            self[1],
            self[2],
            self[3],
            self[4],
            self[5],
        )


class _ErrorResponseFields(NamedTuple):
    opcode: int
    resultCode: int
    epoch: int


class ErrorResponse(_ErrorResponseFields, _Message):
    """
    An 8-byte response that carries only the common header: the
    unsupported-version reply (RFC 6886 s3.5, Errata 3618: opcode 128, though
    servers in the wild also send 0 or 128 plus the request's opcode), or a
    short unsupported-opcode reply.

    @ivar opcode: the opcode byte as sent.
    @ivar resultCode: a non-zero result code.
    @ivar epoch: seconds since start of epoch.
    """

    __slots__ = ()

    def __new__(cls, opcode: int, resultCode: int, epoch: int) -> ErrorResponse:
        _checkRange("opcode", opcode, 0xFF)
        _checkRange("result code", resultCode, _MAX16)
        _checkRange("epoch", epoch, _MAX32)
        return _new(cls, (opcode, resultCode, epoch))  # type: ignore[no-any-return]

    def encode(self) -> bytes:
        return _packHeader(VERSION, self[0], self[1], self[2])


Request = ExternalAddressRequest | MapRequest
Response = ExternalAddressResponse | MapResponse | ErrorResponse
Message = Request | Response


def encode(message: Message) -> bytes:
    """
    Encode any NAT-PMP message.
    """
    return message.encode()
