"""
Figure 3: our gateway under load, by the size of its table.

For each table size (filled through the table's API with other clients'
mappings), a bare blocking-socket load generator on loopback sends
external-address requests, then map/delete pairs (a map request and the
deletion of the same port, alternately), first one at a time, then with a
window of requests in flight.  The gateway runs in a process of its own
(L{_gatewayrun}), logging every mapping change to a file as C{twistd}
would.  The sizes take turns, round after round.

The same requests are then answered in this process, straight through
L{NATPMPGateway.respond} (no sockets, no log file): the gateway's own cost
per request, with less noise.

Target: the cost per request with 100,000 mappings within 1.5x of the cost
with 100.  Memory per mapping is measured with C{tracemalloc}: the table
and the in-memory backend together.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Callable, Sequence

from twisted.internet.task import Clock

from twisted_natpmp.server import MappingTable, MemoryBackend, NATPMPGateway

from . import _udp
from ._context import Context
from ._fill import fillTable
from ._gatewayrun import EXTERNAL_ADDRESS
from ._report import Figure, Target, ratio
from ._timing import ROUNDS, interleaved

TARGET = Target("<=", 1.5)
UNIT = "requests/s"
#: The load generator's own ports (above those the fill takes).
LOAD_PORTS = range(60000, 60064)
#: Requests sent, unmeasured, before each measured loop (an even number,
#: so that map/delete pairs stay whole).
WARM_UP = 100
#: Where the in-process requests come from.
SOURCE = ("127.0.0.1", 40000)

KINDS = {
    "external": ("external-address", [_udp.EXTERNAL_ADDRESS]),
    "map_delete": ("map/delete", _udp.mapAndDelete(LOAD_PORTS)),
}


def _loops(
    sock: socket.socket, packets: Sequence[bytes], window: int
) -> dict[str, Callable[[int], None]]:
    return {
        "one_at_a_time": lambda n: _udp.oneAtATime(sock, packets, n),
        f"window{window}": lambda n: _udp.windowed(sock, packets, n, window),
    }


def _overUDP(context: Context) -> dict[tuple[int, str, str], float]:
    """
    Rates over UDP by (table size, kind, mode); the sizes take turns, round
    after round, refilling the table each time, so that a burst of load on
    the machine does not fall on one size only.
    """
    sizes = context.sizes
    gateway = context.gateway()
    rates: dict[tuple[int, str, str], float] = {}
    # An even count leaves every map/delete pair complete.
    count = sizes.serverRequests // 2 * 2
    for _ in range(ROUNDS):
        for size in sizes.tableSizes:
            gateway.fill(size)
            with _udp.connect(gateway.address, gateway.port) as sock:
                for kind, (_, packets) in KINDS.items():
                    for mode, loop in _loops(sock, packets, sizes.window).items():
                        loop(WARM_UP)
                        rate = interleaved([loop], count, rounds=1)[0]
                        key = (size, kind, mode)
                        rates[key] = max(rates.get(key, 0.0), rate)
            if gateway.count() != size:
                raise RuntimeError(f"the table holds {gateway.count()}, not {size}")
    return rates


def _inProcess(context: Context) -> dict[tuple[int, str], float]:
    """
    Rates of L{NATPMPGateway.respond} by (table size, kind): one gateway
    per size, all measured in alternation.
    """
    gateways = {}
    keys, loops = [], []
    try:
        for size in context.sizes.tableSizes:
            gateway = gateways[size] = NATPMPGateway(
                context.reactor,
                EXTERNAL_ADDRESS,
                ["127.0.0.0/8"],
                maxMappingsPerClient=1000,
            )
            fillTable(gateway.table, size)
            for kind, (_, packets) in KINDS.items():
                keys.append((size, kind))
                loops.append(_respondLoop(gateway, packets))
        count = context.sizes.serverRequests * 2
        return dict(zip(keys, interleaved(loops, count), strict=True))
    finally:
        for gateway in gateways.values():
            gateway.stop()


def _respondLoop(
    gateway: NATPMPGateway, packets: Sequence[bytes]
) -> Callable[[int], None]:
    respond = gateway.respond

    def loop(count: int) -> None:
        cycle = len(packets)
        for i in range(count):
            if respond(packets[i % cycle], SOURCE) is None:
                raise RuntimeError("the gateway did not answer")

    return loop


def bytesPerMapping(count: int) -> float:
    """
    The memory a table and its in-memory backend take per mapping, by
    C{tracemalloc}.
    """
    tracemalloc.start()
    try:
        table = MappingTable(Clock(), MemoryBackend())
        before = tracemalloc.get_traced_memory()[0]
        fillTable(table, count)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if len(table) != count:
        raise RuntimeError(f"the table holds {len(table)}, not {count}")
    return (after - before) / count


async def run(context: Context) -> list[Figure]:
    sizes = context.sizes
    small, large = sizes.tableSizes[0], sizes.tableSizes[-1]
    modes = ["one_at_a_time", f"window{sizes.window}"]
    udp = _overUDP(context)
    figures = []
    for size in sizes.tableSizes:
        for kind, (label, _) in KINDS.items():
            for mode in modes:
                how = (
                    "one at a time" if mode == modes[0] else f"{sizes.window} in flight"
                )
                figures.append(
                    Figure(
                        f"server.udp.{size}.{kind}.{mode}",
                        udp[(size, kind, mode)],
                        UNIT,
                        f"{size:,} mappings: {label}, {how}",
                    )
                )
    local = _inProcess(context)
    for size in sizes.tableSizes:
        for kind, (label, _) in KINDS.items():
            figures.append(
                Figure(
                    f"server.inprocess.{size}.{kind}",
                    local[(size, kind)],
                    UNIT,
                    f"{size:,} mappings: {label}, in process (respond())",
                )
            )

    def cost(size: int, what: str, rate: float) -> tuple[str, float]:
        return (f"time per {what} request with {size:,} mappings", 1 / rate)

    for kind, (label, _) in KINDS.items():
        for mode in modes:
            figures.append(
                ratio(
                    f"server.udp.cost_ratio.{kind}.{mode}",
                    cost(large, f"{label} ({mode})", udp[(large, kind, mode)]),
                    cost(small, f"{label} ({mode})", udp[(small, kind, mode)]),
                    f"cost {large:,} / {small:,} mappings: {label}, {mode}",
                    TARGET,
                )
            )
        figures.append(
            ratio(
                f"server.inprocess.cost_ratio.{kind}",
                cost(large, f"{label} (in process)", local[(large, kind)]),
                cost(small, f"{label} (in process)", local[(small, kind)]),
                f"cost {large:,} / {small:,} mappings: {label}, in process",
                TARGET,
            )
        )
    figures.append(
        Figure(
            "server.memory.bytes_per_mapping",
            bytesPerMapping(sizes.memoryMappings),
            "bytes",
            f"memory per mapping ({sizes.memoryMappings:,} mappings, tracemalloc)",
            note="table and in-memory backend together",
        )
    )
    return figures
