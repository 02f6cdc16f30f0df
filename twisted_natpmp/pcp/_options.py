# -*- test-case-name: tests.pcp.test_wire -*-
"""
PCP options (RFC 6887 s7.3, s13): THIRD_PARTY, PREFER_FAILURE and FILTER as
typed values, any other option kept as its code and bytes.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address
from typing import ClassVar

from .._types import IPAddress
from ._fields import MAX_PORT, Opcode, decodeAddress, encodeAddress
from ._results import MalformedPacket, ResultCode

__all__ = [
    "FilterOption",
    "Option",
    "OptionCode",
    "PreferFailureOption",
    "ThirdPartyOption",
    "UnknownOption",
    "decodeOptions",
    "encodeOptions",
]

_OPTION_HEADER = struct.Struct("!BBH")  # code, reserved, length
_FILTER = struct.Struct("!BBH16s")  # reserved, prefix length, port, address
# RFC 6887 s7.3: codes 0-127 are mandatory to process, 128-255 optional.
_FIRST_OPTIONAL = 128
_MAX_PREFIX = 128
# RFC 6887 s13.3 (as bodgit/natpmpd checks it): an IPv4-mapped remote
# address takes prefix 0 or one of 96-128, the IPv4 prefix plus 96.
_MAPPED_PREFIX_BITS = 96


class OptionCode(IntEnum):
    """
    The option codes of RFC 6887 s13.
    """

    THIRD_PARTY = 1
    PREFER_FAILURE = 2
    FILTER = 3


@dataclass(frozen=True, slots=True)
class ThirdPartyOption:
    """
    THIRD_PARTY (RFC 6887 s13.1): the request is made for another host.

    @ivar internalAddress: that host's address.
    """

    code: ClassVar[int] = OptionCode.THIRD_PARTY
    internalAddress: IPAddress

    def encodeData(self) -> bytes:
        """
        @return: the option's data, without header or padding.
        """
        return encodeAddress(self.internalAddress)


@dataclass(frozen=True, slots=True)
class PreferFailureOption:
    """
    PREFER_FAILURE (RFC 6887 s13.2): answer CANNOT_PROVIDE_EXTERNAL rather
    than map another external port or address than the one suggested.
    """

    code: ClassVar[int] = OptionCode.PREFER_FAILURE

    def encodeData(self) -> bytes:
        """
        @return: the option's data: none.
        """
        return b""


@dataclass(frozen=True, slots=True)
class FilterOption:
    """
    FILTER (RFC 6887 s13.3): only these remote peers may use the mapping.

    @ivar prefixLength: how many leading bits of C{remoteAddress} are
        compared, counted in the 128-bit form (96 + n for an IPv4 /n); 0
        removes every filter.
    @ivar remotePort: the remote peer's port, 0 for any.
    @ivar remoteAddress: the remote peer's address (prefix).
    """

    code: ClassVar[int] = OptionCode.FILTER
    prefixLength: int
    remotePort: int
    remoteAddress: IPAddress

    def __post_init__(self) -> None:
        if not 0 <= self.prefixLength <= _MAX_PREFIX:
            raise ValueError(f"prefix length {self.prefixLength} is not 0-128")
        if not 0 <= self.remotePort <= MAX_PORT:
            raise ValueError(f"port {self.remotePort} is out of range")

    def encodeData(self) -> bytes:
        """
        @return: the option's data, without header or padding.
        """
        return _FILTER.pack(
            0, self.prefixLength, self.remotePort, encodeAddress(self.remoteAddress)
        )


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """
    An option this library does not know, kept as received.

    @ivar code: its option code (not one of L{OptionCode}).
    @ivar data: its data, without padding.
    """

    code: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise ValueError(f"option code {self.code} is not 0-255")
        if self.code in OptionCode._value2member_map_:
            raise ValueError(f"option code {self.code} is known: use its class")
        if len(self.data) > 0xFFFF:
            raise ValueError("option data longer than 65535 bytes")

    @property
    def mandatory(self) -> bool:
        """
        Whether a server must understand the option to process the request
        (RFC 6887 s7.3: codes 0-127).
        """
        return self.code < _FIRST_OPTIONAL

    def encodeData(self) -> bytes:
        """
        @return: the option's data, without header or padding.
        """
        return self.data


#: Any PCP option.
Option = ThirdPartyOption | PreferFailureOption | FilterOption | UnknownOption

# RFC 6887 s13.1-s13.3: the opcodes each option is valid for, and whether it
# may appear more than once.
_RULES: dict[int, tuple[frozenset[Opcode], bool]] = {
    OptionCode.THIRD_PARTY: (frozenset({Opcode.MAP, Opcode.PEER}), False),
    OptionCode.PREFER_FAILURE: (frozenset({Opcode.MAP}), False),
    OptionCode.FILTER: (frozenset({Opcode.MAP}), True),
}


def _padded(length: int) -> int:
    # RFC 6887 s7.3: the length excludes the padding to a multiple of 4.
    return (length + 3) & ~3


def encodeOptions(options: tuple[Option, ...]) -> bytes:
    """
    Options as they follow the opcode data: each a 4-byte header, its data
    and zero padding to a multiple of 4 (RFC 6887 s7.3).

    @param options: the options, in order.
    @return: the encoded options.
    """
    parts = []
    for option in options:
        data = option.encodeData()
        parts.append(_OPTION_HEADER.pack(option.code, 0, len(data)))
        parts.append(data.ljust(_padded(len(data)), b"\0"))
    return b"".join(parts)


def _malformed(reason: str, packet: bytes, request: bool = True) -> MalformedPacket:
    code = ResultCode.MALFORMED_OPTION if request else None
    return MalformedPacket(reason, packet, code)


def _decodeOne(code: int, data: bytes, packet: bytes, request: bool) -> Option:
    if code == OptionCode.THIRD_PARTY:
        if len(data) != 16:
            raise _malformed(
                f"THIRD_PARTY option of {len(data)} bytes", packet, request
            )
        return ThirdPartyOption(decodeAddress(data))
    if code == OptionCode.PREFER_FAILURE:
        if data:
            raise _malformed(
                f"PREFER_FAILURE option of {len(data)} bytes", packet, request
            )
        return PreferFailureOption()
    if code == OptionCode.FILTER:
        if len(data) != _FILTER.size:
            raise _malformed(f"FILTER option of {len(data)} bytes", packet, request)
        _, prefixLength, port, field = _FILTER.unpack(data)
        address = decodeAddress(field)
        if prefixLength > _MAX_PREFIX or (
            isinstance(address, IPv4Address) and 0 < prefixLength < _MAPPED_PREFIX_BITS
        ):
            raise _malformed(f"FILTER prefix length {prefixLength}", packet, request)
        return FilterOption(prefixLength, port, address)
    return UnknownOption(code, data)


def decodeOptions(
    packet: bytes, offset: int, opcode: Opcode, request: bool
) -> tuple[Option, ...]:
    """
    The options of a message, from C{offset} to its end.

    The padding's contents are not checked, nor is the reserved byte
    (RFC 6887 s7.3).

    @param packet: the whole message, already checked to be a multiple of 4
        bytes long.
    @param offset: where the options begin (after the opcode data).
    @param opcode: the message's opcode.
    @param request: whether the message is a request.  In a request an
        unknown mandatory option is refused with UNSUPP_OPTION, and a known
        option on an opcode it is not valid for, or repeated when it may
        not be, with MALFORMED_OPTION (RFC 6887 s7.3; miniupnpd answers
        MALFORMED_REQUEST to a misplaced PREFER_FAILURE).  Responses are not
        judged: a client ignores what it does not know.
    @return: the options, in order.
    @raise MalformedPacket: an option's length is wrong or runs past the end
        of the message (MALFORMED_OPTION in a request, L{None} in a
        response), or a rule above is broken.
    """
    options: list[Option] = []
    seen: set[int] = set()
    end = len(packet)
    while offset < end:
        if end - offset < _OPTION_HEADER.size:
            raise _malformed("truncated option header", packet, request)
        code, _, length = _OPTION_HEADER.unpack_from(packet, offset)
        start = offset + _OPTION_HEADER.size
        if start + length > end:
            raise _malformed(
                f"option {code} of {length} bytes runs past the end", packet, request
            )
        option = _decodeOne(code, packet[start : start + length], packet, request)
        if request:
            _judge(option, opcode, seen, packet)
        options.append(option)
        offset = start + _padded(length)
    return tuple(options)


def _judge(option: Option, opcode: Opcode, seen: set[int], packet: bytes) -> None:
    code = option.code
    if isinstance(option, UnknownOption):
        if option.mandatory:
            # RFC 6887 s7.3: an unsupported mandatory option is refused.
            raise MalformedPacket(
                f"unsupported mandatory option {code}",
                packet,
                ResultCode.UNSUPP_OPTION,
            )
        return
    opcodes, repeatable = _RULES[code]
    name = OptionCode(code).name
    if opcode not in opcodes:
        raise _malformed(f"{name} option on a {opcode.name} request", packet)
    if code in seen and not repeatable:
        raise _malformed(f"{name} option more than once", packet)
    seen.add(code)
