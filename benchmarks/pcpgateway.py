"""
Our gateway answering PCP (RFC 6887), by the size of its table, and
miniupnpd's PCP in the same run.

  - Over UDP: our gateway with PCP on, in a process of its own on a
    loopback address (as L{benchmarks.gateway} runs it, through
    L{benchmarks._gateway.GatewayProcess}, here with C{pcp=True}), filled
    with other clients' mappings to each table size; a bare blocking-socket
    load generator sends PCP MAP requests and their deletions (a MAP of
    lifetime 0 with the same nonce), alternately, one at a time and then
    with a window in flight.  The sizes take turns, round after round.
  - In process: the same requests straight through L{Gateway.respond}: the
    gateway's own cost per request, with less noise.
  - miniupnpd: the same MAP/delete pairs, one at a time and windowed, from
    a LAN host of the interop lab to Debian's miniupnpd in the router
    namespace (its table stays near empty: it deletes in time linear in
    its table, PROTOCOL.md Part B, and does iptables work per mapping).

Target: the cost per request with 100,000 mappings within 1.5x of the cost
with 100.  Every loop is bounded in count; every reply is awaited at most
L{_udp.TIMEOUT} seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, ip_address

from twisted_natpmp import Transport
from twisted_natpmp.pcp._wire import MapData, Opcode, Request, protocolNumber
from twisted_natpmp.server import Gateway

from . import _udp
from ._context import Context
from ._fill import fillTable
from ._gateway import GatewayProcess
from ._gatewayrun import EXTERNAL_ADDRESS
from ._netlab import LabUnavailable, Miniupnpd, lanSocket, netLab
from ._report import Figure, Target, notMeasured, ratio
from ._timing import ROUNDS, interleaved

TARGET = Target("<=", 1.5)
UNIT = "requests/s"
#: The load generator's internal ports (above those the fill takes).
LOAD_PORTS = range(60100, 60164)
#: Requests sent, unmeasured, before each measured loop (even: whole pairs).
WARM_UP = 100
NONCE = bytes(range(12))
#: Where the in-process requests come from.
SOURCE = "127.0.0.1"
#: miniupnpd's port range for the load (its config allows 1024-65535).
MINIUPNPD_PORTS = range(23000, 23032)


def mapAndDelete(
    client: str, ports: Sequence[int], lifetime: int = 3600
) -> list[bytes]:
    """
    For each port, a PCP MAP of UDP suggesting that port, then its deletion
    with the same nonce (RFC 6887 s11, s15), from C{client}.
    """
    address = ip_address(client)
    packets = []
    for port in ports:
        for life in (lifetime, 0):
            data = MapData(
                NONCE, protocolNumber(Transport.UDP), port, port, IPv4Address(0)
            )
            packets.append(Request(Opcode.MAP, life, address, data).encode())
    return packets


def _loops(
    sock: socket.socket, packets: Sequence[bytes], window: int
) -> dict[str, Callable[[int], None]]:
    return {
        "one_at_a_time": lambda n: _udp.oneAtATime(sock, packets, n),
        f"window{window}": lambda n: _udp.windowed(sock, packets, n, window),
    }


def _overUDP(context: Context) -> dict[tuple[int, str], float]:
    sizes = context.sizes
    directory = context.directory / "pcpgateway"
    directory.mkdir(parents=True, exist_ok=True)
    gateway = GatewayProcess(directory, pcp=True)
    rates: dict[tuple[int, str], float] = {}
    count = sizes.serverRequests // 2 * 2
    try:
        for _ in range(ROUNDS):
            for size in sizes.tableSizes:
                gateway.fill(size)
                with _udp.connect(gateway.address, gateway.port) as sock:
                    packets = mapAndDelete(sock.getsockname()[0], LOAD_PORTS)
                    for mode, loop in _loops(sock, packets, sizes.window).items():
                        loop(WARM_UP)
                        rate = interleaved([loop], count, rounds=1)[0]
                        rates[(size, mode)] = max(rates.get((size, mode), 0.0), rate)
                if gateway.count() != size:
                    raise RuntimeError(f"the table holds {gateway.count()}, not {size}")
    finally:
        gateway.stop()
    return rates


def _inProcess(context: Context) -> dict[int, float]:
    gateways = []
    loops = []
    packets = mapAndDelete(SOURCE, LOAD_PORTS)
    try:
        for size in context.sizes.tableSizes:
            gateway = Gateway(
                context.reactor,
                EXTERNAL_ADDRESS,
                ["127.0.0.0/8"],
                maxMappingsPerClient=1000,
                pcp=True,
            )
            gateways.append(gateway)
            fillTable(gateway.table, size)
            loops.append(_respondLoop(gateway, packets))
        count = context.sizes.serverRequests * 2
        rates = interleaved(loops, count)
        return dict(zip(context.sizes.tableSizes, rates, strict=True))
    finally:
        for gateway in gateways:
            gateway.stop()


def _respondLoop(gateway: Gateway, packets: Sequence[bytes]) -> Callable[[int], None]:
    respond = gateway.respond
    source = (SOURCE, 5350)

    def loop(count: int) -> None:
        cycle = len(packets)
        for i in range(count):
            reply = respond(packets[i % cycle], source)
            if reply is None or reply[3] != 0:
                raise RuntimeError("the gateway refused a PCP request")

    return loop


async def _miniupnpd(context: Context) -> dict[str, float]:
    sizes = context.sizes
    count = min(sizes.pcpPorts, 100) // 2 * 2
    rates: dict[str, float] = {}
    async with netLab(context.directory / "pcpgateway-lab") as lab:
        router = Miniupnpd(lab)
        await router.start()
        try:
            with lanSocket(lab) as sock:
                packets = mapAndDelete(sock.getsockname()[0], MINIUPNPD_PORTS)
                for mode, loop in _loops(sock, packets, sizes.window).items():
                    rates[mode] = interleaved([loop], count)[0]
        finally:
            await router.stop()
    return rates


async def run(context: Context) -> list[Figure]:
    sizes = context.sizes
    small, large = sizes.tableSizes[0], sizes.tableSizes[-1]
    modes = ["one_at_a_time", f"window{sizes.window}"]
    udp = _overUDP(context)
    figures = []
    for size in sizes.tableSizes:
        for mode in modes:
            figures.append(
                Figure(
                    f"pcpgateway.udp.{size}.{mode}",
                    udp[(size, mode)],
                    UNIT,
                    f"{size:,} mappings: PCP MAP/delete, {mode}",
                )
            )
    local = _inProcess(context)
    for size in sizes.tableSizes:
        figures.append(
            Figure(
                f"pcpgateway.inprocess.{size}",
                local[size],
                UNIT,
                f"{size:,} mappings: PCP MAP/delete, in process (respond())",
            )
        )
    for mode in modes:
        figures.append(
            ratio(
                f"pcpgateway.udp.cost_ratio.{mode}",
                (f"time per request with {large:,} mappings", 1 / udp[(large, mode)]),
                (f"time per request with {small:,} mappings", 1 / udp[(small, mode)]),
                f"cost {large:,} / {small:,} mappings: PCP MAP/delete, {mode}",
                TARGET,
            )
        )
    figures.append(
        ratio(
            "pcpgateway.inprocess.cost_ratio",
            (f"time per request with {large:,} mappings", 1 / local[large]),
            (f"time per request with {small:,} mappings", 1 / local[small]),
            f"cost {large:,} / {small:,} mappings: PCP MAP/delete, in process",
            TARGET,
        )
    )
    try:
        theirs = await _miniupnpd(context)
    except LabUnavailable as e:
        figures.append(
            notMeasured("pcpgateway.miniupnpd", UNIT, "miniupnpd's PCP", str(e))
        )
        return figures
    for mode in modes:
        figures.append(
            Figure(
                f"pcpgateway.miniupnpd.{mode}",
                theirs[mode],
                UNIT,
                f"miniupnpd 2.3.1: PCP MAP/delete, {mode} (table near empty)",
            )
        )
        figures.append(
            ratio(
                f"pcpgateway.vs_miniupnpd.{mode}",
                (f"our rate with {small:,} mappings", udp[(small, mode)]),
                ("miniupnpd's rate", theirs[mode]),
                f"ours ({small:,} mappings, loopback) / miniupnpd (veth): {mode}",
            )
        )
    return figures
