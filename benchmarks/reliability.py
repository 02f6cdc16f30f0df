"""
Figure 6: reliability.  In the interop lab's namespaces, with real UDP:

  - a flood of fuzzed packets from one LAN host at our gateway, as fast as
    the flooder goes (bounded in count and time), while a second LAN host
    asks for the external address one request at a time: the packets a
    second the gateway's socket took in, the second host's p99 round trip,
    the log bytes per bad packet, and any traceback in the gateway's log;
  - the mapper service behind the impairment relay (loss each way) against
    miniupnpd: the seconds to map N declared ports at each loss level, and
    the mappings left on the router after stopping.

Targets (issue 12): 0 tracebacks, the second host's p99 under 50 ms during
the flood, 0 mappings left after stop at 30% loss.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher

from tools.impair.relay import Impairment
from tools.netlab import LAN_HOSTS, ROUTER_LAN, LabError, sleep, waitUntil
from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.service import MappingDeclaration, PortMapperService

from . import _udp
from ._context import Context
from ._netlab import Lab, LabUnavailable, OurGateway, lanSocket, netLab
from ._report import Figure, Target, notMeasured

P99_TARGET = Target("<=", 50.0)
NO_TRACEBACKS = Target("<=", 0)
NONE_LEFT = Target("<=", 0)
#: Lines that mean an exception escaped.
CRASH_WORDS = ("Traceback", "Unhandled Error")
FIRST_PORT = 31000


def _crashes(text: str) -> int:
    return sum(any(w in line for w in CRASH_WORDS) for line in text.splitlines())


def _udpCounters(pid: int) -> dict[str, int]:
    """
    The UDP counters of process C{pid}'s network namespace.
    """
    with open(f"/proc/{pid}/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _secondHost(lab: Lab, seconds: float, maximum: int) -> list[float]:
    """
    From LAN host 1, ask for the external address one at a time for
    C{seconds} (at most C{maximum} requests); return each round trip, in
    ms (a request unanswered within 1 s counts as 1000 ms).
    """
    with lanSocket(lab, timeout=1.0) as sock:
        times: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(times) < maximum:
            start = time.perf_counter()
            try:
                _udp.oneAtATime(sock, [_udp.EXTERNAL_ADDRESS], 1)
            except (_udp.NoReply, OSError):
                times.append(1000.0)
                continue
            times.append((time.perf_counter() - start) * 1000.0)
            time.sleep(0.005)
    return times


async def _flood(context: Context, lab: Lab) -> list[Figure]:
    count = context.sizes.reliabilityFlood
    seconds = context.sizes.reliabilitySeconds
    gateway = OurGateway(lab)
    await gateway.start()
    try:
        daemon = gateway.daemon
        assert daemon is not None
        logBefore = daemon.log.stat().st_size
        before = _udpCounters(daemon.pid)
        flooder = lab.spawn(
            lab.lans[1],
            lab.impair(
                "flood",
                "--to",
                f"{ROUTER_LAN}:5351",
                "--count",
                str(count),
                "--rate",
                "1000000",
                "--max-seconds",
                str(seconds),
                "--no-map-requests",
            ),
            "flood",
        )
        # LAN host 1 is the second host; its loop runs in a thread, so the
        # reactor keeps reading the gateway's log meanwhile.
        times = await deferToThread(_secondHost, lab, seconds, 100_000)
        if not await flooder.waitEnded(seconds + 30.0):
            raise LabError("the flooder did not finish")
        after = _udpCounters(daemon.pid)
        report = json.loads(flooder.completed().out.strip().splitlines()[-1])
        sent = report["flood"]
        took = float(sent["seconds"])
        received = after["InDatagrams"] - before["InDatagrams"] - len(times)
        await sleep(0.5)
        logBytes = daemon.log.stat().st_size - logBefore
        crashes = _crashes(daemon.output())
    finally:
        await gateway.stop()
    flood = f"a one-host flood of {int(sent['sent'])} fuzzed packets"
    return [
        Figure(
            "reliability.flood.absorbed_rate",
            received / took,
            "packets/s",
            f"our gateway: packets taken in during {flood}",
            note=f"sent at {sent['sent'] / took:.0f}/s;"
            f" {after['RcvbufErrors'] - before['RcvbufErrors']} lost to a full"
            " socket buffer",
        ),
        Figure(
            "reliability.flood.second_host_p99",
            _percentile(times, 0.99),
            "ms",
            f"a second host's p99 round trip during {flood}",
            target=P99_TARGET,
            note=f"{len(times)} requests, p50"
            f" {_percentile(times, 0.5):.2f} ms, unanswered in 1 s:"
            f" {sum(t >= 1000.0 for t in times)}",
        ),
        Figure(
            "reliability.flood.log_bytes_per_packet",
            logBytes / max(received, 1),
            "bytes",
            f"our gateway's log per bad packet taken in, {flood}",
        ),
        Figure(
            "reliability.flood.tracebacks",
            crashes,
            "tracebacks",
            f"tracebacks in our gateway's log after {flood}",
            target=NO_TRACEBACKS,
        ),
    ]


class _LogLines:
    """
    The service's log lines while it runs in this process.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._observer: ILogObserver = self.observe  # type: ignore[assignment]

    def observe(self, event: dict[str, Any]) -> None:
        if len(self.lines) < 10_000 and event.get("log_namespace", "").startswith(
            "twisted_natpmp"
        ):
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            self.lines.append(text)

    def __enter__(self) -> _LogLines:
        globalLogPublisher.addObserver(self._observer)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observer)


async def _mapUnderLoss(
    context: Context, lab: Lab, loss: float, firstPort: int
) -> tuple[float | None, int, int, str]:
    """
    The service on LAN host 1, behind a relay losing C{loss} of the
    packets each way, against miniupnpd, with ports from C{firstPort}: the
    seconds until all its ports are mapped (L{None} if not within the
    bound, and then why), the mappings of those ports left on the router
    after it stopped, and the tracebacks in its log.
    """
    ports = context.sizes.reliabilityPorts
    timeout = context.sizes.reliabilityTimeout
    impairment = Impairment(loss=loss)
    relay = await lab.startRelay(0, impairment, impairment, seed=600 + firstPort)
    declarations = [
        MappingDeclaration(
            (Transport.TCP, Transport.UDP)[i % 2], firstPort + i, lifetime=600
        )
        for i in range(ports)
    ]
    try:
        with _LogLines() as logs:
            service = PortMapperService(
                lab.reactorIn(lab.lans[0]),
                declarations,
                gateway=ROUTER_LAN,
                healthInterval=3600.0,
                # PCP nonces in memory, not in the user's state file.
                nonces=MemoryNonceStore(),
            )
            started = time.monotonic()
            service.startService()
            mapped: float | None = None
            reason = ""
            try:
                await waitUntil(
                    lambda: all(s.mapped for s in service.states()),
                    "all mapped",
                    timeout,
                    0.05,
                )
                mapped = time.monotonic() - started
            except LabError:
                held = sum(s.mapped for s in service.states())
                reason = f"{held} of {ports} mapped within {timeout:g} s"
            await service.stopService()
    finally:
        await relay.stop()
        # The next level's relay starts afresh.
        lab.check(lab.lans[0], ["iptables-legacy", "-w", "5", "-t", "nat", "-F"])
    mine = {d.internalPort for d in declarations}
    left = sum(port in mine for _, port in lab.rulesFor(LAN_HOSTS[0]))
    return mapped, left, _crashes("\n".join(logs.lines)), reason


async def _loss(context: Context, lab: Lab) -> list[Figure]:
    ports = context.sizes.reliabilityPorts
    await lab.startMiniupnpd()
    figures = []
    crashes = 0
    try:
        for index, percent in enumerate((0, 30, 60)):
            key = f"reliability.loss{percent}"
            what = f"{percent}% loss each way"
            mapLabel = f"the service: all {ports} ports mapped, {what}"
            leftLabel = f"the service: mappings left after stop, {what}"
            if percent not in context.sizes.reliabilityLosses:
                for name, unit, label in (
                    ("map_time", "s", mapLabel),
                    ("left_after_stop", "mappings", leftLabel),
                ):
                    figures.append(
                        notMeasured(f"{key}.{name}", unit, label, "not run by --quick")
                    )
                continue
            mapped, left, found, reason = await _mapUnderLoss(
                context, lab, percent / 100, FIRST_PORT + 100 * index
            )
            crashes += found
            if mapped is None:
                figures.append(notMeasured(f"{key}.map_time", "s", mapLabel, reason))
            else:
                figures.append(
                    Figure(
                        f"{key}.map_time",
                        mapped,
                        "s",
                        mapLabel,
                        note="real time, miniupnpd, seeded relay",
                    )
                )
            figures.append(
                Figure(
                    f"{key}.left_after_stop",
                    left,
                    "mappings",
                    leftLabel,
                    target=NONE_LEFT if percent == 30 else None,
                )
            )
    finally:
        await lab.stopMiniupnpd()
    figures.append(
        Figure(
            "reliability.service.tracebacks",
            crashes,
            "tracebacks",
            "tracebacks in the service's log under loss",
            target=NO_TRACEBACKS,
        )
    )
    return figures


def _names() -> list[tuple[str, str, str]]:
    names = [
        ("reliability.flood.absorbed_rate", "packets/s", "gateway under flood"),
        ("reliability.flood.second_host_p99", "ms", "second host p99"),
        ("reliability.flood.log_bytes_per_packet", "bytes", "log per bad packet"),
        ("reliability.flood.tracebacks", "tracebacks", "gateway tracebacks"),
    ]
    for level in (0, 30, 60):
        names.append((f"reliability.loss{level}.map_time", "s", f"map at {level}%"))
        names.append(
            (f"reliability.loss{level}.left_after_stop", "mappings", f"left {level}%")
        )
    names.append(("reliability.service.tracebacks", "tracebacks", "service"))
    return names


async def run(context: Context) -> list[Figure]:
    try:
        async with netLab(context.directory / "reliability") as lab:
            figures = await _flood(context, lab)
            figures += await _loss(context, lab)
            return figures
    except LabUnavailable as e:
        return [
            notMeasured(name, unit, label, str(e)) for name, unit, label in _names()
        ]
