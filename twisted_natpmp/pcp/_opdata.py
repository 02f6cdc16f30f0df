# -*- test-case-name: tests.pcp.test_wire -*-
"""
The opcode data of PCP's MAP (RFC 6887 s11.1) and PEER (s12.1) messages;
ANNOUNCE (s14.1) has none.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .._types import IPAddress, Transport
from ._fields import (
    HEADER_SIZE,
    MAX_PORT,
    NONCE_SIZE,
    Opcode,
    checkRange,
    decodeAddress,
    encodeAddress,
    transportFor,
)

__all__ = ["MapData", "OpcodeData", "PeerData", "checkData", "dataSize", "decodeData"]

# RFC 6887 s11.1: nonce, protocol, 3 reserved, internal port, external port,
# external address.
_MAP_DATA = struct.Struct("!12sB3xHH16s")
# RFC 6887 s12.1: MAP's fields, then remote port, 2 reserved, remote address.
_PEER_DATA = struct.Struct("!12sB3xHH16sH2x16s")


def _checkMapFields(data: MapData | PeerData) -> None:
    """
    Check the fields PEER shares with MAP (RFC 6887 s11.1, s12.1).

    @raise ValueError: one is out of range.
    """
    if len(data.nonce) != NONCE_SIZE:
        raise ValueError(f"nonce of {len(data.nonce)} bytes, not 12")
    checkRange("protocol", data.protocol, 0xFF)
    checkRange("internal port", data.internalPort, MAX_PORT)
    checkRange("external port", data.externalPort, MAX_PORT)


@dataclass(frozen=True, slots=True)
class MapData:
    """
    The opcode data of a MAP request or response (RFC 6887 s11.1).

    @ivar nonce: the mapping nonce, 12 bytes, the same for every renewal
        and the deletion (RFC 6887 s11.1).
    @ivar protocol: the IANA protocol number (see L{transport}); 0 for all.
    @ivar internalPort: the internal port (0 for all ports, with protocol 0).
    @ivar externalPort: the suggested (request) or assigned (response)
        external port; 0 for no preference.
    @ivar externalAddress: the suggested or assigned external address; the
        family's all-zeros address (L{noPreference}) for no preference.
    """

    nonce: bytes
    protocol: int
    internalPort: int
    externalPort: int
    externalAddress: IPAddress

    def __post_init__(self) -> None:
        _checkMapFields(self)

    @property
    def transport(self) -> Transport | None:
        """
        The transport L{protocol} names, or L{None} (all, or one this
        library does not map).
        """
        return transportFor(self.protocol)

    def encode(self) -> bytes:
        """
        @return: the 36 bytes of opcode data.
        """
        return _MAP_DATA.pack(
            self.nonce,
            self.protocol,
            self.internalPort,
            self.externalPort,
            encodeAddress(self.externalAddress),
        )


@dataclass(frozen=True, slots=True)
class PeerData:
    """
    The opcode data of a PEER request or response (RFC 6887 s12.1): MAP's
    fields, then the remote peer.

    @ivar nonce: the mapping nonce, 12 bytes.
    @ivar protocol: the IANA protocol number.
    @ivar internalPort: the internal port.
    @ivar externalPort: the suggested or assigned external port.
    @ivar externalAddress: the suggested or assigned external address.
    @ivar remotePort: the remote peer's port.
    @ivar remoteAddress: the remote peer's address.
    """

    nonce: bytes
    protocol: int
    internalPort: int
    externalPort: int
    externalAddress: IPAddress
    remotePort: int
    remoteAddress: IPAddress

    def __post_init__(self) -> None:
        _checkMapFields(self)
        checkRange("remote port", self.remotePort, MAX_PORT)

    @property
    def transport(self) -> Transport | None:
        """
        The transport L{protocol} names, or L{None}.
        """
        return transportFor(self.protocol)

    def encode(self) -> bytes:
        """
        @return: the 56 bytes of opcode data.
        """
        return _PEER_DATA.pack(
            self.nonce,
            self.protocol,
            self.internalPort,
            self.externalPort,
            encodeAddress(self.externalAddress),
            self.remotePort,
            encodeAddress(self.remoteAddress),
        )


#: The opcode data of a message: none for ANNOUNCE.
OpcodeData = MapData | PeerData | None

_DATA_TYPES: dict[Opcode, type[MapData] | type[PeerData] | None] = {
    Opcode.ANNOUNCE: None,
    Opcode.MAP: MapData,
    Opcode.PEER: PeerData,
}


def checkData(opcode: Opcode, data: OpcodeData) -> None:
    """
    Check that a message's data suits its opcode (L{None} is left to the
    message to judge).

    @raise ValueError: it does not.
    """
    expected = _DATA_TYPES[opcode]
    if data is not None and type(data) is not expected:
        raise ValueError(f"{opcode.name} with {type(data).__name__}")


def decodeData(opcode: Opcode, packet: bytes) -> OpcodeData:
    """
    The opcode data of a message, which follows the 24-byte header.

    @param opcode: the message's opcode.
    @param packet: the whole message, at least L{dataSize} bytes past the
        header.
    @return: the data, L{None} for ANNOUNCE.
    """
    if opcode is Opcode.MAP:
        nonce, protocol, internal, external, address = _MAP_DATA.unpack_from(
            packet, HEADER_SIZE
        )
        return MapData(nonce, protocol, internal, external, decodeAddress(address))
    if opcode is Opcode.PEER:
        (nonce, protocol, internal, external, address, remotePort, remote) = (
            _PEER_DATA.unpack_from(packet, HEADER_SIZE)
        )
        return PeerData(
            nonce,
            protocol,
            internal,
            external,
            decodeAddress(address),
            remotePort,
            decodeAddress(remote),
        )
    return None


def dataSize(opcode: Opcode) -> int:
    """
    @return: the size of an opcode's data: 36 for MAP, 56 for PEER, 0 for
        ANNOUNCE.
    """
    if opcode is Opcode.MAP:
        return _MAP_DATA.size
    if opcode is Opcode.PEER:
        return _PEER_DATA.size
    return 0
