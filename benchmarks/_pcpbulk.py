"""
The bulk work of figure 7, shared by its two gateways: map N ports then
delete them from the first LAN host, over NAT-PMP one request at a time
(RFC 6886 s3.1) and over PCP with the client's window, taking turns round
after round against the same gateway; each rate is the best round.

L{measure} runs the rounds against any gateway the lab can start and stop
(miniupnpd, or our own C{twistd natpmp-gateway}, which speaks both
protocols from one table and deletes in constant time, so it takes the
full 1,000 ports of issue 14: C{Sizes.pcpBulkPorts}).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from twisted.internet.defer import gatherResults

from tools.netlab import ROUTER_LAN, ROUTER_WAN
from twisted_natpmp import Transport
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp.client import listenPCPClient

from . import _cpus
from ._netlab import Lab, OurGateway, waitAnswering
from ._timing import ROUNDS

LIFETIME = 3600


class Gateway(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BulkGateway(OurGateway):
    """
    Our gateway as L{OurGateway} runs it, but with room for the bulk work
    from one host: its defaults (512 mappings per client, 20 mapping
    requests a second per source) are a home router's limits, and would
    answer the 1,000 ports with out-of-resources or drop them.
    """

    name = "our gateway (twistd natpmp-gateway, no per-client limits)"

    async def start(self) -> None:
        daemon = self.daemon = self.lab.spawn(
            self.lab.router,
            self.lab.twistd(
                "natpmp-gateway",
                f"--listen={self.address}/24",
                f"--external-address={ROUTER_WAN}",
                "--max-mappings-per-client=100000",
                "--rate-limit=0",
            ),
            "natpmp-gateway",
        )
        _cpus.pinServer(daemon.pid)
        await waitAnswering(
            self.lab, self.address, lambda: daemon.ended, "twistd natpmp-gateway"
        )


async def natpmpRate(lab: Lab, ports: Sequence[int]) -> float:
    """
    Map then delete C{ports} over NAT-PMP, one request at a time.

    @return: operations (maps and deletes) per second.
    """
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


async def pcpRate(lab: Lab, ports: Sequence[int]) -> float:
    """
    Map then delete C{ports} over PCP, all requests given at once to the
    client, which keeps its window in flight.

    @return: operations (maps and deletes) per second.
    """
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


async def measure(
    lab: Lab,
    gateway: Gateway,
    ports: Sequence[int],
    check: Callable[[str], None] = lambda who: None,
) -> dict[str, float]:
    """
    Start C{gateway}, alternate NAT-PMP and PCP rounds against it
    (L{ROUNDS} each), calling C{check(who)} after each; stop it.

    @return: the best rate of each, by C{"natpmp"} and C{"pcp"}.
    """
    await gateway.start()
    best: dict[str, float] = {}
    rounds: tuple[tuple[str, Callable[[Lab, Sequence[int]], Awaitable[float]]], ...]
    rounds = (("natpmp", natpmpRate), ("pcp", pcpRate))
    try:
        for _ in range(ROUNDS):
            for who, rate in rounds:
                value = await rate(lab, ports)
                check(who)
                best[who] = max(best.get(who, 0.0), value)
    finally:
        await gateway.stop()
    return best
