"""
Seeded mutations of NAT-PMP messages, for the flooder (L{tools.impair.flood})
and the in-memory fuzz tests: every kind of valid request and response with
edge values in every field, and bit flips, cuts, splices and new version or
opcode bytes made from them.

Standard library only.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

#: The external address in the valid responses mutated.
EXTERNAL_ADDRESS = "192.0.3.1"
#: Edge values (RFC 6886 s3.3, s3.4).
EDGE_PORTS = (0, 1, 1023, 1024, 5000, 65535)
EDGE_LIFETIMES = (0, 1, 7200, 2**32 - 1)
#: The longest packet made (longer than any NAT-PMP or PCP message, and
#: than the PCP maximum of 1100 bytes).
MAX_LENGTH = 1100

_MAP_REQUEST = struct.Struct("!BBHHHI")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
_HEADER = struct.Struct("!BBHI")


def validRequests() -> list[bytes]:
    """
    Every kind of request, with edge values in every field.
    """
    requests = [b"\x00\x00"]
    for opcode in (1, 2):
        for internal in EDGE_PORTS:
            for external in (0, 5000, 65535):
                for lifetime in EDGE_LIFETIMES:
                    requests.append(
                        _MAP_REQUEST.pack(0, opcode, 0, internal, external, lifetime)
                    )
    return requests


def validResponses() -> list[bytes]:
    """
    Every kind of response, with edge values in every field.
    """
    responses = []
    for epoch in (0, 1, 2**32 - 1):
        for result in range(6):
            responses.append(
                _HEADER.pack(0, 128, result, epoch) + socket.inet_aton(EXTERNAL_ADDRESS)
            )
        for opcode in (129, 130):
            for internal in EDGE_PORTS:
                for lifetime in EDGE_LIFETIMES:
                    responses.append(
                        _MAP_RESPONSE.pack(
                            0, opcode, 0, epoch, internal, 65535, lifetime
                        )
                    )
            responses.append(_HEADER.pack(0, opcode, 4, epoch))
        # RFC 6886 s3.5 with Errata 3618 (opcode 128) and as printed (0).
        responses.append(_HEADER.pack(0, 128, 1, epoch))
        responses.append(_HEADER.pack(0, 0, 1, epoch))
        # A PCP ANNOUNCE response (RFC 6887 s14.1).
        responses.append(
            bytes((2, 0x80, 0, 0)) + struct.pack("!II", 0, epoch) + bytes(12)
        )
    return responses


def mutate(rng: random.Random, packet: bytes, others: list[bytes]) -> bytes:
    """
    One seeded mutation of C{packet}: flipped bits, an edge byte, a cut, an
    extension, a splice with another packet, a new version or opcode.
    """
    data = bytearray(packet)
    kind = rng.randrange(8)
    if kind == 0 and data:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:
        data[rng.randrange(len(data))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
    elif kind == 2:
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 3:
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 4:
        other = rng.choice(others)
        cut = rng.randrange(len(data) + 1)
        data = data[:cut] + other[rng.randrange(len(other) + 1) :]
    elif kind == 5 and data:
        data[0] = rng.randrange(256)
    elif kind == 6 and len(data) > 1:
        data[1] = rng.randrange(256)
    else:
        data = data + data
    return bytes(data[:MAX_LENGTH])


def mutations(seed: int, valid: list[bytes], count: int) -> Iterator[bytes]:
    """
    C{count} seeded mutations of C{valid} packets, some mutated twice.
    """
    rng = random.Random(seed)
    for _ in range(count):
        packet = mutate(rng, rng.choice(valid), valid)
        if rng.random() < 0.3:
            packet = mutate(rng, packet, valid)
        yield packet


def isMapRequest(packet: bytes) -> bool:
    """
    Whether C{packet} is a whole NAT-PMP map request (RFC 6886 s3.3).
    """
    return len(packet) >= 12 and packet[0] == 0 and packet[1] in (1, 2)
