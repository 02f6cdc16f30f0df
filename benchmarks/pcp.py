"""
PCP against NAT-PMP, the same bulk work against the same router in the same
run: map N ports, then delete them, from a LAN host of the interop lab, to
Debian's miniupnpd (which speaks both):

  - over NAT-PMP with our client, one request at a time, as RFC 6886 s3.1
    asks;
  - over PCP with our client and its window (RFC 6887 has no
    one-at-a-time rule; each reply names its mapping by nonce).

The two take turns, round after round, so that a burst of other load on
the machine falls on both; each rate is the best round.  miniupnpd does
the firewall work of each mapping (iptables) before it answers, one
request at a time, so the window hides the round trip, not that work.

miniupnpd deletes in time linear in its table (PROTOCOL.md Part B), and
each slow answer draws retransmissions that cost as much again: 1,000
mappings took over ten minutes without finishing the first round (most of
it deleting), so fewer are mapped here (C{Sizes.pcpPorts}).  The 1,000-port
figure waits for a gateway that speaks both and deletes in constant time:
our own, once it answers PCP (issue 15).

Target: PCP with its window at least 3x NAT-PMP.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from twisted.internet.defer import gatherResults

from tools.netlab import ROUTER_LAN
from twisted_natpmp import Transport
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp.client import WINDOW, listenPCPClient

from ._context import Context
from ._netlab import Lab, LabUnavailable, Miniupnpd, netLab
from ._report import Figure, Target, notMeasured, ratio
from ._timing import ROUNDS

UNIT = "operations/s"
LIFETIME = 3600
FIRST_PORT = 21000
TARGET = Target(">=", 3.0)


async def _natpmp(lab: Lab, ports: Sequence[int]) -> float:
    client = listenClient(lab.reactorIn(lab.lans[0]), ROUTER_LAN)
    try:
        started = time.perf_counter()
        for p in ports:
            await client.addMapping(Transport.UDP, p, p, LIFETIME)
        for p in ports:
            await client.deleteMapping(Transport.UDP, p)
        return 2 * len(ports) / (time.perf_counter() - started)
    finally:
        await client.stop()


async def _pcp(lab: Lab, ports: Sequence[int]) -> float:
    client = listenPCPClient(
        lab.reactorIn(lab.lans[0]), ROUTER_LAN, nonces=MemoryNonceStore()
    )
    try:
        started = time.perf_counter()
        await gatherResults(
            [client.addMapping(Transport.UDP, p, p, LIFETIME) for p in ports]
        )
        await gatherResults([client.deleteMapping(Transport.UDP, p) for p in ports])
        return 2 * len(ports) / (time.perf_counter() - started)
    finally:
        await client.stop()


def _check(lab: Lab, who: str) -> None:
    left = lab.rules(Transport.UDP)
    if left:
        raise RuntimeError(f"{who} left {len(left)} mappings on miniupnpd")


async def _measure(lab: Lab, ports: Sequence[int]) -> dict[str, float]:
    router = Miniupnpd(lab)
    await router.start()
    best: dict[str, float] = {}
    try:
        for _ in range(ROUNDS):
            for who, measure in (("natpmp", _natpmp), ("pcp", _pcp)):
                rate = await measure(lab, ports)
                _check(lab, who)
                best[who] = max(best.get(who, 0.0), rate)
    finally:
        await router.stop()
    return best


async def run(context: Context) -> list[Figure]:
    ports = range(FIRST_PORT, FIRST_PORT + context.sizes.pcpPorts)
    what = f"map then delete {len(ports)} ports on miniupnpd"
    try:
        async with netLab(context.directory / "pcp") as lab:
            best = await _measure(lab, ports)
    except LabUnavailable as e:
        return [notMeasured("pcp.vs_natpmp", "x", "PCP / NAT-PMP", str(e))]
    return [
        Figure(
            "pcp.natpmp.rate",
            best["natpmp"],
            UNIT,
            f"NAT-PMP, one at a time: {what}",
        ),
        Figure(
            "pcp.pcp.rate",
            best["pcp"],
            UNIT,
            f"PCP, {WINDOW} in flight: {what}",
        ),
        ratio(
            "pcp.vs_natpmp",
            ("PCP's rate", best["pcp"]),
            ("NAT-PMP's rate", best["natpmp"]),
            "PCP with its window / NAT-PMP one at a time, same router",
            TARGET,
        ),
    ]
