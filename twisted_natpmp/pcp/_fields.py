# -*- test-case-name: tests.pcp.test_wire -*-
"""
The constants and field encodings PCP messages share (RFC 6887 s5, s7):
sizes, ports, 16-byte addresses with IPv4 in the IPv4-mapped form, and the
IANA protocol numbers that stand for a C{Transport}.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

from .._parse import MAX_PORT, MAX_UINT32
from .._types import IPAddress, Transport

__all__ = [
    "ALL_PROTOCOLS",
    "CLIENT_PORT",
    "HEADER_SIZE",
    "MAX_PORT",
    "MAX_SIZE",
    "MAX_UINT32",
    "NONCE_SIZE",
    "Opcode",
    "PROTOCOL_NUMBERS",
    "RESPONSE_BIT",
    "SERVER_PORT",
    "VERSION",
    "checkRange",
    "decodeAddress",
    "encodeAddress",
    "noPreference",
    "protocolNumber",
    "transportFor",
]

#: The protocol version this package speaks (RFC 6887 s7.1; RFC 6886 s1.1:
#: 0 is NAT-PMP and 1 is never used).
VERSION = 2
#: The UDP port a PCP server listens on (RFC 6887 s19.1).
SERVER_PORT = 5351
#: The UDP port clients hear unsolicited responses on (RFC 6887 s19.1).
CLIENT_PORT = 5350
#: The size of either common header, and the least a message can be
#: (RFC 6887 s7.1, s7.2).
HEADER_SIZE = 24
#: The most a message can be (RFC 6887 s7: 1100 octets of UDP payload).
MAX_SIZE = 1100
#: The size of a mapping nonce: 96 bits (RFC 6887 s11.1).
NONCE_SIZE = 12
#: The top bit of the second byte: set in responses (RFC 6887 s7.1, s7.2).
RESPONSE_BIT = 0x80


class Opcode(IntEnum):
    """
    The opcodes of RFC 6887 s7.1 (ANNOUNCE s14.1, MAP s11, PEER s12).
    """

    ANNOUNCE = 0
    MAP = 1
    PEER = 2


#: The IANA protocol number of each transport (RFC 6887 s11.1).
PROTOCOL_NUMBERS: dict[Transport, int] = {Transport.TCP: 6, Transport.UDP: 17}
#: The protocol number meaning every protocol (RFC 6887 s11.1).
ALL_PROTOCOLS = 0

_TRANSPORTS = {number: transport for transport, number in PROTOCOL_NUMBERS.items()}

# RFC 6887 s5: the first 96 bits of an IPv4-mapped address (RFC 4291).
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def protocolNumber(transport: Transport) -> int:
    """
    The IANA protocol number PCP uses for a transport (RFC 6887 s11.1).

    @param transport: TCP or UDP.
    @return: 6 or 17.
    """
    return PROTOCOL_NUMBERS[transport]


def transportFor(number: int) -> Transport | None:
    """
    The transport an IANA protocol number names.

    @param number: the protocol field of a MAP or PEER message.
    @return: the C{Transport}, or L{None} for 0
        (all protocols) and for protocols this library does not map (SCTP's
        132, for instance).
    """
    return _TRANSPORTS.get(number)


def encodeAddress(address: IPAddress) -> bytes:
    """
    An address as a 16-byte PCP field: IPv4 in the IPv4-mapped form
    C{::ffff:a.b.c.d} (RFC 6887 s5).

    @param address: an IPv4 or IPv6 address.
    @return: 16 bytes.
    """
    if isinstance(address, IPv4Address):
        return _MAPPED_PREFIX + address.packed
    return address.packed


def decodeAddress(field: bytes) -> IPAddress:
    """
    A 16-byte PCP address field as an address.

    RFC 6887 s5: all of the first 96 bits are checked for the IPv4-mapped
    pattern, not only bits 81-96.

    @param field: exactly 16 bytes.
    @return: an L{IPv4Address} for an IPv4-mapped field, else an
        L{IPv6Address} (so the IPv6 all-zeros address C{::} stays IPv6, and
        C{::ffff:0.0.0.0} reads as IPv4's C{0.0.0.0}).
    """
    if field[:12] == _MAPPED_PREFIX:
        return IPv4Address(field[12:16])
    return IPv6Address(field)


def noPreference(address: IPAddress) -> IPAddress:
    """
    The all-zeros address of C{address}'s family: what a request suggests
    when it has no preference (RFC 6887 s5, s11.1).

    @param address: any address of the family wanted (typically the client's
        own).
    @return: C{0.0.0.0} (sent as C{::ffff:0.0.0.0}) or C{::}.
    """
    if isinstance(address, IPv4Address):
        return IPv4Address(0)
    return IPv6Address(0)


def checkRange(name: str, value: int, high: int) -> None:
    """
    Check that a field's value fits.

    @param name: the field, for the message.
    @param value: its value.
    @param high: the highest value it may take.
    @raise ValueError: C{value} is not from 0 to C{high}.
    """
    if not 0 <= value <= high:
        raise ValueError(f"{name} {value} is not 0-{high}")
