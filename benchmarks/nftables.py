"""
Map+delete with real forwarding rules, by table size: our gateway with its
nftables backend (C{twistd natpmp-gateway --backend nftables}, one map
element per mapping) against Debian's miniupnpd 2.3.1 (its iptables
backend: one DNAT rule and more per mapping, found again by scanning them),
in the same run, in the same lab (L{tools.netlab.forwarding}).

For each table size (100, 1,000, 10,000 mappings; C{--quick}: 10 and 50)
the gateway's table is first filled to that size, then the first LAN host
maps a port and deletes it again, one request at a time over NAT-PMP
(RFC 6886 s3.1), the same client for both gateways; the rate counts both
requests.  The fill is checked in the router's ruleset (elements of our
map, rules of miniupnpd's chain): the rules are real.

miniupnpd is bounded: filling its table costs it more with every rule (it
rewrites its iptables table on each change) and a delete scans them, so it
gets L{FILL_SECONDS} in all to fill and L{MINIUPNPD_SECONDS} per size to
measure; a size it cannot be filled to within the bound is reported as not
measured, with how far it got.  Ours is filled over PCP with the client's
window (the backend batches what arrives together).  Each size's rate is
the best of L{ROUNDS} rounds for both gateways, except that a round cut
short by its bound is the last (another would not fit either).

Ours is also measured with requests in flight: over PCP with the client's
window, and over NAT-PMP from L{IN_FLIGHT} clients on the same LAN host at
once, each one request at a time (the backend coalesces what arrives
while a batch commits).

Targets: at 1,000 mappings at least 10x miniupnpd's rate; our cost at the
largest size within 1.5x of that at the smallest.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from tools.netlab import ROUTER_LAN, missingPrerequisites
from tools.netlab.forwarding import (
    ForwardingLab,
    buildForwardingLab,
    missingForwarding,
)
from twisted_natpmp import Transport
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp.client import listenPCPClient

from . import _cpus
from ._context import Context
from ._netlab import Lab, LabUnavailable, Miniupnpd, waitAnswering
from ._report import Figure, Target, notMeasured, ratio
from ._sizes import QUICK
from ._timing import ROUNDS

UNIT = "operations/s"
LIFETIME = 3600
#: Fill ports (internal = external) start here, measured ones at MEASURED.
FILL_PORT = 40000
MEASURED = 21000
#: Table sizes, full run and C{--quick}.
FULL_TABLES = (100, 1_000, 10_000)
QUICK_TABLES = (10, 50)
#: Map+delete pairs per round (best of L{ROUNDS}; miniupnpd's rounds are
#: cut short by L{MINIUPNPD_SECONDS}).
FULL_PAIRS, QUICK_PAIRS = 200, 5
#: NAT-PMP clients at once, and their map+delete pairs in all, full run
#: and C{--quick}.
IN_FLIGHT = 64
FULL_IN_FLIGHT_PAIRS, QUICK_IN_FLIGHT_PAIRS = 640, 64
#: miniupnpd's bounds, in seconds: its whole fill (the time spent filling,
#: not measuring), and each round.
FILL_SECONDS = 240.0
MINIUPNPD_SECONDS = 30.0
#: A request unanswered this long (one send, no retransmission, so that a
#: slow miniupnpd is not handed the same work twice) fails the round.
REQUEST_TIMEOUT = 20.0
VS_MINIUPNPD = Target(">=", 10.0)
FLAT = Target("<=", 1.5)


class NftGateway:
    """
    Our gateway with its nftables backend, as L{ForwardingLab.startNftGateway}
    runs it, its per-client and rate limits lifted (one host fills the
    table).
    """

    def __init__(self, lab: ForwardingLab, reactor: Any) -> None:
        self.lab = lab
        self.reactor = reactor

    async def start(self) -> None:
        daemon = self.daemon = await self.lab.startNftGateway(
            "--max-mappings-per-client=100000",
            "--max-mappings=100000",
            "--rate-limit=0",
        )
        _cpus.pinServer(daemon.pid)
        await waitAnswering(self.lab, ROUTER_LAN, lambda: daemon.ended, "our gateway")

    async def stop(self) -> None:
        await self.daemon.stop()

    async def inFlight(self, pairs: int) -> Rate | None:
        """
        Map C{pairs} ports then delete them over NAT-PMP from L{IN_FLIGHT}
        clients at once (the ports dealt out among them), each client one
        request at a time.
        """
        clients = [_client(self.lab) for _ in range(min(IN_FLIGHT, pairs))]
        ports = range(MEASURED, MEASURED + pairs)

        async def mapAndDelete(client: NATPMPClient, mine: Sequence[int]) -> None:
            for p in mine:
                await client.addMapping(Transport.TCP, p, p, LIFETIME)
                await client.deleteMapping(Transport.TCP, p)

        try:
            started = time.perf_counter()
            await gatherResults(
                [
                    Deferred.fromCoroutine(
                        mapAndDelete(client, ports[i :: len(clients)])
                    )
                    for i, client in enumerate(clients)
                ]
            )
            elapsed = time.perf_counter() - started
            return Rate(2 * pairs / elapsed, pairs, elapsed)
        finally:
            for client in clients:
                await client.stop()

    def held(self) -> int:
        return len(self.lab.mapElements())

    async def fill(self, ports: Sequence[int], deadline: float) -> None:
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]), ROUTER_LAN, nonces=MemoryNonceStore()
        )
        try:
            filled = gatherResults(
                [client.addMapping(Transport.UDP, p, p, LIFETIME) for p in ports]
            )
            seconds = max(1.0, deadline - time.perf_counter())
            await filled.addTimeout(seconds, self.reactor)
        finally:
            await client.stop()

    async def windowed(self, pairs: int) -> Rate | None:
        """
        Map C{pairs} ports then delete them over PCP, all given at once to
        the client, which keeps its window in flight: what the backend can
        put in one batch.
        """
        client = listenPCPClient(
            self.lab.reactorIn(self.lab.lans[0]), ROUTER_LAN, nonces=MemoryNonceStore()
        )
        ports = range(MEASURED, MEASURED + pairs)
        try:
            started = time.perf_counter()
            mapped = gatherResults([client.addMapping(Transport.TCP, p) for p in ports])
            await mapped.addTimeout(FILL_SECONDS, self.reactor)
            deleted = gatherResults(
                [client.deleteMapping(Transport.TCP, p) for p in ports]
            )
            await deleted.addTimeout(FILL_SECONDS, self.reactor)
            elapsed = time.perf_counter() - started
            return Rate(2 * pairs / elapsed, pairs, elapsed)
        finally:
            await client.stop()


class IptablesGateway(Miniupnpd):
    """
    miniupnpd as L{Miniupnpd} runs it, filled one request at a time.
    """

    async def windowed(self, pairs: int) -> Rate | None:
        """
        Not measured here (figure 7 measures PCP's window on miniupnpd).
        """
        return None

    async def inFlight(self, pairs: int) -> Rate | None:
        """
        Not measured here (a round of one request at a time does not fit
        its bound at 1,000 mappings).
        """
        return None

    def held(self) -> int:
        return len(self.lab.rules(Transport.UDP))

    async def fill(self, ports: Sequence[int], deadline: float) -> None:
        client = _client(self.lab)
        try:
            for p in ports:
                if time.perf_counter() > deadline:
                    return
                await client.addMapping(Transport.UDP, p, p, LIFETIME)
        finally:
            await client.stop()


def _client(lab: Lab) -> NATPMPClient:
    return listenClient(
        lab.reactorIn(lab.lans[0]), ROUTER_LAN, timeouts=(REQUEST_TIMEOUT,)
    )


async def _pairs(lab: Lab, pairs: int, seconds: float) -> tuple[int, float]:
    """
    Map then delete up to C{pairs} ports, one request at a time, stopping
    after C{seconds}; return the pairs done and the time they took.
    """
    client = _client(lab)
    try:
        started = time.perf_counter()
        done = 0
        for p in range(MEASURED, MEASURED + pairs):
            await client.addMapping(Transport.TCP, p, p, LIFETIME)
            await client.deleteMapping(Transport.TCP, p)
            done += 1
            if time.perf_counter() - started > seconds:
                break
        return done, time.perf_counter() - started
    finally:
        await client.stop()


@dataclass(frozen=True)
class Rate:
    """
    A best rate, in operations per second, and the pairs and seconds of
    the round that gave it.
    """

    value: float
    pairs: int
    seconds: float


#: Each (protocol, table size) measured, and its rate or why it was not.
Rates = dict[tuple[str, int], Rate | str]


@dataclass(frozen=True)
class Plan:
    """
    What to measure: the table sizes, map+delete pairs per round, rounds
    per size (the best counts), seconds after which a round stops, and
    pairs for the round with requests in flight.
    """

    tables: Sequence[int]
    pairs: int
    rounds: int
    seconds: float
    inFlightPairs: int


async def _measure(gateway: NftGateway | IptablesGateway, plan: Plan) -> Rates:
    """
    Fill C{gateway} to each size of C{plan.tables} in turn and measure its
    map+delete rate there: the best of C{plan.rounds} rounds of
    C{plan.pairs}, each cut short after C{plan.seconds} (a round cut short
    is the last).  The fill has L{FILL_SECONDS} in all; the rounds do not
    count against it.

    @return: each size's rate, or why it was not measured (a gateway that
        fails is reported as the reason for each of its figures, and the
        other gateway is still measured).
    """
    try:
        return await _fillAndMeasure(gateway, plan)
    except Exception as e:
        lines = [line for line in str(e).splitlines() if line.strip()] or [""]
        said = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
        reason = f"failed: {type(e).__name__}: {said[:300]}"
        return {("natpmp", size): reason for size in plan.tables}


async def _fillAndMeasure(gateway: NftGateway | IptablesGateway, plan: Plan) -> Rates:
    tables = plan.tables
    result: Rates = {}
    await gateway.start()
    try:
        fillLeft = FILL_SECONDS
        filled = 0
        for size in tables:
            started = time.perf_counter()
            await gateway.fill(
                range(FILL_PORT + filled, FILL_PORT + size), started + fillLeft
            )
            fillLeft -= time.perf_counter() - started
            filled = gateway.held()
            if filled < size:
                result["natpmp", size] = (
                    f"filled only {filled:,} of {size:,} mappings in"
                    f" {FILL_SECONDS:g} s of filling"
                )
                break
            best = Rate(0.0, 0, 0.0)
            for _ in range(plan.rounds):
                done, elapsed = await _pairs(gateway.lab, plan.pairs, plan.seconds)
                if 2 * done / elapsed > best.value:
                    best = Rate(2 * done / elapsed, done, elapsed)
                if done < plan.pairs:
                    break
            result["natpmp", size] = best
            windowed = await gateway.windowed(plan.pairs)
            if windowed is not None:
                result["pcp", size] = windowed
            inFlight = await gateway.inFlight(plan.inFlightPairs)
            if inFlight is not None:
                result["inflight", size] = inFlight
            if gateway.held() != size:
                raise RuntimeError(f"{gateway.held()} mappings left, not {size}")
    finally:
        await gateway.stop()
    for size in tables:
        result.setdefault(
            ("natpmp", size), "not reached: a smaller size could not be filled"
        )
    return result


@asynccontextmanager
async def _lab(directory: Path) -> AsyncIterator[ForwardingLab]:
    missing = missingPrerequisites() + missingForwarding()
    if missing:
        raise LabUnavailable("the forwarding lab needs " + ", ".join(missing))
    lab = buildForwardingLab(directory)
    try:
        yield lab
    finally:
        await lab.destroy()


_WHO = {
    ("ours", "natpmp"): "our gateway (nftables), NAT-PMP one at a time",
    ("ours", "pcp"): "our gateway (nftables), PCP with its window",
    ("ours", "inflight"): (
        f"our gateway (nftables), NAT-PMP from {IN_FLIGHT} clients at once"
    ),
    ("miniupnpd", "natpmp"): "miniupnpd, NAT-PMP one at a time",
}


def _figure(name: str, label: str, value: Rate | str | None) -> Figure | None:
    if value is None:
        return None
    if isinstance(value, str):
        return notMeasured(name, UNIT, label, value)
    details = {"pairs": value.pairs, "seconds": round(value.seconds, 3)}
    return Figure(name, value.value, UNIT, label, details=details)


def _rate(rates: Rates, size: int) -> float | None:
    value = rates[("natpmp", size)]
    return None if isinstance(value, str) else value.value


def _figures(tables: Sequence[int], ours: Rates, theirs: Rates) -> list[Figure]:
    figures: list[Figure] = []
    for (who, protocol), what in _WHO.items():
        rates = ours if who == "ours" else theirs
        infix = {"pcp": ".pcp", "inflight": f".inflight{IN_FLIGHT}"}.get(protocol, "")
        for size in tables:
            figure = _figure(
                f"nftables.{who}{infix}.rate.{size}",
                f"{what}: map+delete at {size:,} mappings",
                rates.get((protocol, size)),
            )
            if figure is not None:
                figures.append(figure)
    for size in tables:
        figures.append(
            ratio(
                f"nftables.vs_miniupnpd.{size}",
                (f"our rate at {size:,}", _rate(ours, size)),
                (f"miniupnpd's rate at {size:,}", _rate(theirs, size)),
                f"our gateway / miniupnpd, map+delete at {size:,} mappings",
                VS_MINIUPNPD if size == 1_000 else None,
            )
        )
    small, large = tables[0], tables[-1]
    figures.append(
        ratio(
            "nftables.ours.cost_ratio",
            (f"our rate at {small:,}", _rate(ours, small)),
            (f"our rate at {large:,}", _rate(ours, large)),
            f"our cost per request at {large:,} vs {small:,} mappings",
            FLAT,
        )
    )
    return figures


async def run(context: Context) -> list[Figure]:
    quick = context.sizes is QUICK
    tables = QUICK_TABLES if quick else FULL_TABLES
    pairs = QUICK_PAIRS if quick else FULL_PAIRS
    rounds = 1 if quick else ROUNDS
    inFlight = QUICK_IN_FLIGHT_PAIRS if quick else FULL_IN_FLIGHT_PAIRS
    try:
        async with _lab(context.directory / "nftables") as lab:
            ours = await _measure(
                NftGateway(lab, context.reactor),
                Plan(tables, pairs, rounds, FILL_SECONDS, inFlight),
            )
            theirs = await _measure(
                IptablesGateway(lab),
                Plan(tables, pairs, rounds, MINIUPNPD_SECONDS, inFlight),
            )
    except LabUnavailable as e:
        return [
            notMeasured(
                "nftables.vs_miniupnpd",
                "x",
                "our gateway (nftables) / miniupnpd",
                str(e),
            )
        ]
    return _figures(tables, ours, theirs)
