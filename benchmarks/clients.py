"""
Figure 2: a client's bulk work.  Map N ports, then delete them, one request
at a time as RFC 6886 s3.1 asks, against our gateway on loopback (in a
process of its own), with:

  - our client (L{twisted_natpmp.client}, on the real reactor);
  - py-natpmp (PyPI C{py-natpmp}, module C{natpmp}: blocking, one new socket
    per request);
  - libnatpmp's C{natpmpc}, when installed: one process per operation, and
    each process sends an external-address request before its mapping
    request, so it is measured over fewer operations;
  - a bare blocking-socket loop of the same packets: the floor.

The gateway is L{GatewayService}, what C{twistd natpmp-gateway} runs,
logging every mapping change to a file (L{_gatewayrun}).  Each rate is the
best of a few rounds, the three Python clients taking turns; natpmpc runs
one round.  Beside the rates, the CPU time of this process per operation:
the client's own cost, without the wait for the gateway.

Targets: at least 1.2x py-natpmp's rate and at least 0.5x the bare loop's.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Sequence

from twisted.internet.defer import Deferred

from twisted_natpmp import Transport
from twisted_natpmp.natpmp._wire import MapRequest
from twisted_natpmp.natpmp.client import listenClient

from . import _udp
from ._context import Context
from ._report import Figure, Target, notMeasured, ratio
from ._timing import ROUNDS

LIFETIME = 3600
FIRST_PORT = 20000
UNIT = "operations/s"
NATPMPC_TIMEOUT = 10.0


Clocks = tuple[float, float]
#: (operations per second, CPU seconds of this process per operation)
Result = tuple[float, float]


def _start() -> Clocks:
    return time.perf_counter(), time.process_time()


def _stop(started: Clocks, operations: int) -> Result:
    """
    The rate of C{operations} since C{started}, and the CPU time this
    process spent on each (the gateway runs in another process, so that is
    the client's own cost, without the wait for the gateway).
    """
    wall = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    return operations / wall, cpu / operations


def _floor(address: str, port: int, ports: Sequence[int]) -> Result:
    packets = [MapRequest(Transport.UDP, p, p, LIFETIME).encode() for p in ports]
    packets += [MapRequest(Transport.UDP, p, 0, 0).encode() for p in ports]
    with _udp.connect(address, port) as sock:
        started = _start()
        _udp.oneAtATime(sock, packets, len(packets))
        return _stop(started, len(packets))


def _pyNatpmp(address: str, ports: Sequence[int]) -> Result:
    import natpmp  # type: ignore[import-untyped]

    started = _start()
    for p in ports:
        natpmp.map_port(natpmp.NATPMP_PROTOCOL_UDP, p, p, LIFETIME, gateway_ip=address)
    for p in ports:
        natpmp.map_port(natpmp.NATPMP_PROTOCOL_UDP, 0, p, 0, gateway_ip=address)
    return _stop(started, 2 * len(ports))


async def _ours(
    context: Context, address: str, port: int, ports: Sequence[int]
) -> Result:
    client = listenClient(
        context.reactor, address, gatewayPort=port, interface="127.0.0.1"
    )
    try:
        started = _start()
        for p in ports:
            await client.addMapping(Transport.UDP, p, p, LIFETIME)
        for p in ports:
            await client.deleteMapping(Transport.UDP, p)
        return _stop(started, 2 * len(ports))
    finally:
        await client.stop()


def _natpmpc(address: str, ports: Sequence[int]) -> float:
    commands = [["-a", str(p), str(p), "udp", str(LIFETIME)] for p in ports]
    commands += [["-a", "0", str(p), "udp", "0"] for p in ports]
    start = time.perf_counter()
    for arguments in commands:
        done = subprocess.run(
            ["natpmpc", "-g", address, *arguments],
            capture_output=True,
            text=True,
            timeout=NATPMPC_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"natpmpc {' '.join(arguments)} exited {done.returncode}:"
                f" {done.stdout.strip()[-200:]}"
            )
    return len(commands) / (time.perf_counter() - start)


async def run(context: Context) -> list[Figure]:
    gateway = context.gateway()
    gateway.fill(0)
    address, port = gateway.address, gateway.port
    ports = range(FIRST_PORT, FIRST_PORT + context.sizes.bulkPorts)

    def check(who: str) -> None:
        left = gateway.count()
        if left:
            raise RuntimeError(f"{who} left {left} mappings on the gateway")

    best: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def keep(who: str, result: Result) -> None:
        check(who)
        best[who] = max(best.get(who, 0.0), result[0])
        cpu[who] = min(cpu.get(who, math.inf), result[1])

    for _ in range(ROUNDS):
        keep("floor", _floor(address, port, ports))
        keep("py-natpmp", _pyNatpmp(address, ports))
        keep("ours", await Deferred.fromCoroutine(_ours(context, address, port, ports)))

    n = len(ports)
    what = f"map then delete {n} ports, one request at a time"
    contenders = [
        ("ours", "ours", "our client"),
        ("py_natpmp", "py-natpmp", "py-natpmp"),
        ("bare", "floor", "bare blocking socket"),
    ]
    figures = [
        Figure(f"client.{key}.rate", best[who], UNIT, f"{label}: {what}")
        for key, who, label in contenders
    ]
    figures += [
        Figure(
            f"client.{key}.cpu_per_operation",
            cpu[who] * 1e6,
            "us",
            f"{label}: CPU time per operation (client process only)",
        )
        for key, who, label in contenders
    ]
    natpmpc: float | None = None
    if shutil.which("natpmpc") is None:
        figures.append(
            notMeasured(
                "client.natpmpc.rate", UNIT, "natpmpc", "natpmpc is not installed"
            )
        )
    else:
        natpmpcPorts = ports[: context.sizes.natpmpcPorts]
        natpmpc = _natpmpc(address, natpmpcPorts)
        check("natpmpc")
        figures.append(
            Figure(
                "client.natpmpc.rate",
                natpmpc,
                UNIT,
                f"natpmpc: map then delete {len(natpmpcPorts)} ports",
                note="one process per operation, each also asks for the"
                " external address",
            )
        )
    ours = ("our client's rate", best["ours"])
    figures += [
        ratio(
            "client.ours_vs_py_natpmp",
            ours,
            ("py-natpmp's rate", best["py-natpmp"]),
            "our client / py-natpmp",
            Target(">=", 1.2),
            note=f"the bare loop itself is {best['floor'] / best['py-natpmp']:.2f}x"
            " py-natpmp: every client waits for the same gateway",
        ),
        ratio(
            "client.cpu.py_natpmp_vs_ours",
            ("py-natpmp's CPU time per operation", cpu["py-natpmp"]),
            ("our client's CPU time per operation", cpu["ours"]),
            "CPU per operation: py-natpmp / our client",
        ),
        ratio(
            "client.ours_vs_bare",
            ours,
            ("the bare blocking loop's rate", best["floor"]),
            "our client / bare blocking loop",
            Target(">=", 0.5),
        ),
        ratio(
            "client.ours_vs_natpmpc",
            ours,
            ("natpmpc's rate", natpmpc),
            "our client / natpmpc",
        ),
    ]
    return figures
