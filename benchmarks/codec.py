"""
Figure 1: the wire codec.  Encode and decode each message type, against a
bare C{struct.pack}/C{struct.unpack} loop of the same bytes (the floor: no
validation, no objects).  Target: within 3x of the bare loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from twisted_natpmp import Transport
from twisted_natpmp.natpmp._wire import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Message,
    decodeRequest,
    decodeResponse,
)

from ._report import Figure, Target, ratio
from ._sizes import Sizes
from ._timing import interleaved

TARGET = Target("<=", 3)

#: Each message, its decoder, and the struct layout and fields a bare loop
#: packs and unpacks to make the same bytes.
CASES: list[tuple[Message, Callable[[bytes], object], str, tuple[object, ...]]] = [
    (ExternalAddressRequest(), decodeRequest, "!BB", (0, 0)),
    (MapRequest(Transport.UDP, 5000, 5000, 7200), decodeRequest, "!BBHHHI",
     (0, 1, 0, 5000, 5000, 7200)),
    (ExternalAddressResponse(0, 12345, IPv4Address("192.0.3.77")), decodeResponse,
     "!BBHI4s", (0, 128, 0, 12345, IPv4Address("192.0.3.77").packed)),
    (MapResponse(Transport.TCP, 0, 12345, 5000, 5001, 7200), decodeResponse,
     "!BBHIHHI", (0, 130, 0, 12345, 5000, 5001, 7200)),
    (ErrorResponse(128, 1, 12345), decodeResponse, "!BBHI", (0, 128, 1, 12345)),
]  # fmt: skip


def _ours(message: Message, decode: Callable[[bytes], object]) -> Callable[[int], None]:
    encode = message.encode

    def loop(count: int) -> None:
        for _ in range(count):
            decode(encode())

    return loop


def _bare(layout: str, fields: tuple[object, ...]) -> Callable[[int], None]:
    codec = struct.Struct(layout)
    pack, unpack = codec.pack, codec.unpack

    def loop(count: int) -> None:
        for _ in range(count):
            unpack(pack(*fields))

    return loop


def _check(message: Message, decode: Callable[[bytes], object], layout: str,
           fields: tuple[object, ...]) -> None:  # fmt: skip
    """
    Both loops must handle the same bytes, and ours must round-trip.
    """
    packet = message.encode()
    if struct.pack(layout, *fields) != packet or decode(packet) != message:
        raise AssertionError(f"the codec loops disagree on {message!r}")


def run(sizes: Sizes) -> list[Figure]:
    figures = []
    for message, decode, layout, fields in CASES:
        _check(message, decode, layout, fields)
        kind = type(message).__name__
        ours, bare = interleaved(
            [_ours(message, decode), _bare(layout, fields)], sizes.codecCount
        )
        figures.append(
            Figure(
                f"codec.{kind}.rate",
                ours,
                "messages/s",
                f"{kind}: encode+decode",
            )
        )
        figures.append(
            Figure(
                f"codec.{kind}.bare_rate",
                bare,
                "messages/s",
                f"{kind}: bare struct pack+unpack",
            )
        )
        figures.append(
            ratio(
                f"codec.{kind}.cost_ratio",
                (f"time per {kind} encode+decode", 1 / ours),
                ("time per bare struct pack+unpack of the same bytes", 1 / bare),
                f"{kind}: our time / bare struct time",
                TARGET,
            )
        )
    return figures
