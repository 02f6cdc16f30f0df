"""
Hardening of the PCP side: a bounded flood of PCP requests, valid and
mutated, from many internal sources, against a gateway with the limits
C{twistd natpmp-gateway} sets (RFC 6887 s18 asks a server to withstand
this), on a L{Clock}.
"""

from __future__ import annotations

import random
import time
from ipaddress import IPv4Address

from twisted_natpmp.pcp._wire import (
    FilterOption,
    MapData,
    Opcode,
    Option,
    PreferFailureOption,
    Request,
    UnknownOption,
)

from ._pcp import PCPGatewayMixin

#: The flood's bounds: packets, and seconds of wall-clock time.
PACKETS = 20_000
SECONDS = 20.0


def flood(seed: int) -> list[tuple[bytes, str]]:
    """
    (packet, source) pairs: MAP requests from 250 hosts for random ports,
    lifetimes and options, half of them mutated at a random byte.
    """
    rng = random.Random(seed)
    options: list[tuple[Option, ...]] = [
        (),
        (PreferFailureOption(),),
        (UnknownOption(200, b"x"),),
        (FilterOption(128, 0, IPv4Address("198.51.100.1")),),
    ]
    packets = []
    for _ in range(PACKETS):
        host = f"10.77.0.{rng.randrange(2, 252)}"
        data = MapData(
            rng.randbytes(12) if rng.random() < 0.1 else bytes(12),
            rng.choice([6, 17, 0, 132]),
            rng.randrange(0, 65536),
            rng.randrange(0, 65536),
            IPv4Address(0),
        )
        request = Request(
            Opcode.MAP,
            rng.choice([0, 1, 120, 3600, 2**32 - 1]),
            IPv4Address(host),
            data,
            rng.choice(options),
        ).encode()
        if rng.random() < 0.5:
            mutated = bytearray(request)
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            request = bytes(mutated)
        packets.append((request, host))
    return packets


class FloodTests(PCPGatewayMixin):
    def test_flood(self) -> None:
        """
        A flood never raises, leaves every client within its limit and the
        gateway within its own, and logs in aggregate: a line per mapping
        made, and a few for the drops and refusals, not one per refusal
        (RFC 6887 s18).
        """
        # RFC 6887 s18
        self.gateway = self.makeGateway(
            maxMappingsPerClient=16, maxMappings=2000, requestRate=50.0
        )
        started = time.monotonic()
        answered = 0
        for packet, host in flood(15):
            if time.monotonic() - started > SECONDS:
                self.fail(f"the flood took over {SECONDS} s")
            if self.raw(packet, host) is not None:
                answered += 1
            self.clock.advance(0.001)
        self.assertGreater(answered, PACKETS // 4)
        table = self.gateway.table
        self.assertLessEqual(len(table), 2000)
        for i in range(2, 252):
            held = table.mappingsOf(IPv4Address(f"10.77.0.{i}"))
            self.assertLessEqual(len(held), 16)
        others = [e for e in self.logged if "event" not in e]
        self.assertLess(len(others), 50)
        self.assertGreater(self.gateway.refusals.total, 1000)
