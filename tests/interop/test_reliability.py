"""
The reliability suite over real UDP in the lab's namespaces: the mapper
service and the C{natpmp} command through the impairment relay (loss,
delay, duplication, reordering) against the real miniupnpd.  The floods of
fuzzed packets are in L{test_flood}, with this module's helpers.

Every flood is bounded in count, rate and time; every wait is bounded.
The relays are seeded, so a run sees the same fates for the same packet
sequence.
"""

from __future__ import annotations

import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tools.impair.relay import Impairment
from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.service import (
    STOP_DEADLINE,
    MappingDeclaration,
    PortMapperService,
)

from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    LabError,
    buildLab,
    waitUntil,
)
from .test_cli import natpmpCommand
from .test_client import reactor

TCP, UDP = Transport.TCP, Transport.UDP

#: Packets in each flood, and the rate they go at (packets a second).
FLOOD_PACKETS = 100_000
FLOOD_RATE = 20_000
#: The most log a daemon may write for a flood of FLOOD_PACKETS bad packets:
#: about one byte a packet (aggregated drops, never a line each).
MAX_FLOOD_LOG = 100_000
#: What the flooded service keeps mapped: (protocol, internal port) to the
#: external port it asks for.
SERVICE_MAPS = {("TCP", 9300): 19300, ("UDP", 9301): 19301, ("UDP", 9302): 19302}
#: Words that mean an exception escaped somewhere.
CRASH_WORDS = ("Traceback", "Unhandled Error")

#: The 20 declarations of the impairment tests: ports 9100-9109 in both
#: protocols, each suggesting its own external port, so that any confusion
#: between two mappings shows in the router's rules.
DECLARATIONS = [
    MappingDeclaration(protocol, port, port + offset, lifetime=600)
    for protocol, offset in ((TCP, 10000), (UDP, 20000))
    for port in range(9100, 9110)
]

#: The impairments of the issue's outcomes (issue 12), each direction.
LOSS_30 = Impairment(loss=0.3)
SLOW_JUMBLED = Impairment(delay=0.3, duplicate=0.2, reorder=0.25, hold=0.3)
LOSS_60 = Impairment(loss=0.6)
#: How long the service may take to map all 20 at 60% loss: "eventually",
#: within what a CI run can give it (it takes about 47 s).
LOSS_60_BOUND = 60.0


def run(coroutine: Coroutine[Any, Any, object]) -> Deferred[object]:
    return Deferred.fromCoroutine(coroutine)


def crashes(text: str) -> list[str]:
    """
    The lines of C{text} that say an exception escaped.
    """
    return [line for line in text.splitlines() if any(w in line for w in CRASH_WORDS)]


def udpPortsConnectedTo(pid: int, remote: tuple[str, int]) -> list[int]:
    """
    The local ports of the UDP sockets in process C{pid}'s namespace that
    are connected to C{remote}.
    """
    host, port = remote
    octets = [int(x) for x in host.split(".")]
    wanted = "".join(f"{o:02X}" for o in reversed(octets)) + f":{port:04X}"
    ports = []
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted:
            ports.append(int(fields[1].split(":")[1], 16))
    return ports


class LogLines:
    """
    The log lines of this process while a test runs, formatted, at most
    C{limit} (counting the rest).
    """

    def __init__(self, testCase: TestCase, limit: int = 10_000) -> None:
        self.lines: list[str] = []
        self.dropped = 0
        self._limit = limit
        observer = cast(ILogObserver, self.observe)
        globalLogPublisher.addObserver(observer)
        testCase.addCleanup(globalLogPublisher.removeObserver, observer)

    def observe(self, event: dict[str, Any]) -> None:
        if len(self.lines) < self._limit:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            self.lines.append(text)
        else:
            self.dropped += 1


_LEFT = re.compile(r"left (\d+) mapping")
_DECLARED = re.compile(r"\b(tcp|udp):(\d+)", re.IGNORECASE)


def namedAsLeft(lines: list[str]) -> tuple[int, set[tuple[str, int]]]:
    """
    What the service's stop said it left: the count it gave and the
    mappings it named, from the lines that say "left N mapping(s)".
    """
    count = 0
    named: set[tuple[str, int]] = set()
    for line in lines:
        match = _LEFT.search(line)
        if match is None:
            continue
        count += int(match.group(1))
        tail = line[match.end() :]
        named |= {
            (m.group(1).upper(), int(m.group(2))) for m in _DECLARED.finditer(tail)
        }
    return count, named


class ImpairedTests(TestCase):
    """
    The issue's required outcomes under loss, delay, duplication and
    reordering (issue 12): the C{natpmp} command on LAN host 1 and the
    mapper service on LAN host 2 at once, each behind its own seeded relay,
    against miniupnpd.
    """

    timeout = 200

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()
        self.logs = LogLines(self)
        self.mappedIn = 0.0

    async def impair(self, up: Impairment, down: Impairment) -> None:
        for lan in (0, 1):
            await self.lab.startRelay(lan, up, down, seed=1200 + lan)

    async def cliMapsAndUnmaps(self) -> None:
        """
        C{natpmp map}, then C{natpmp unmap}, on LAN host 1: each exits 0 and
        the router's rules show it.
        """
        lan = self.lab.lans[0]
        # NAT-PMP's retransmission timing (RFC 6886 s3.1), not PCP's.
        base = [*natpmpCommand(), "--gateway", ROUTER_LAN, "--protocol", "natpmp"]
        mapped = await self.lab.run(
            lan,
            [*base, "map", "udp", "7000", "--external", "17000", "--lifetime", "600"],
            timeout=140.0,
        )
        self.assertEqual(mapped.code, 0, mapped.describe())
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[0]), {("UDP", 7000): 17000})
        unmapped = await self.lab.run(
            lan, [*base, "unmap", "udp", "7000"], timeout=140.0
        )
        self.assertEqual(unmapped.code, 0, unmapped.describe())
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[0]), {})

    def startService(self) -> PortMapperService:
        service = PortMapperService(
            self.lab.reactorIn(self.lab.lans[1]),
            DECLARATIONS,
            gateway=ROUTER_LAN,
            healthInterval=600.0,
            # The timings asserted here are NAT-PMP's (RFC 6886 s3.1: the
            # first retransmission after 250 ms; PCP's comes after 3 s).
            protocol="natpmp",
            nonces=MemoryNonceStore(),
        )
        service.startService()

        async def stop() -> None:
            if service.running:
                await service.stopService()

        self.addCleanup(lambda: run(stop()))
        return service

    def checkNotConfused(self, service: PortMapperService) -> None:
        """
        Every mapping the router holds for LAN host 2 is the one declared
        (the suggested external port for that protocol and internal port),
        and the service holds each at the port the router has.
        """
        expected = {
            (d.protocol.label.upper(), d.internalPort): d.externalPort
            for d in DECLARATIONS
        }
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[1]), expected)
        for state in service.states():
            d = state.declaration
            self.assertTrue(state.mapped, state)
            self.assertEqual(state.externalPort, d.externalPort, state)
            self.assertIsNotNone(state.externalAddress, state)

    async def serviceMapsAll(self, timeout: float) -> PortMapperService:
        service = self.startService()

        started = reactor().seconds()

        def allMapped() -> bool:
            return all(s.mapped for s in service.states())

        try:
            await waitUntil(allMapped, "all 20 declarations mapped", timeout, 0.1)
        except LabError as e:
            mapped = sum(s.mapped for s in service.states())
            raise AssertionError(f"{e} ({mapped} of 20 were)") from None
        self.mappedIn = reactor().seconds() - started
        self.checkNotConfused(service)
        return service

    async def stopService(self, service: PortMapperService) -> float:
        """
        Stop C{service}; return how long it took.
        """
        started = reactor().seconds()
        await service.stopService()
        return cast(float, reactor().seconds() - started)

    async def serviceMapsAndStopDeletes(self, timeout: float) -> None:
        service = await self.serviceMapsAll(timeout)
        took = await self.stopService(service)
        self.assertLess(took, STOP_DEADLINE + 1.0)
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[1]), {})
        self.assertEqual(namedAsLeft(self.logs.lines), (0, set()))

    async def both(self, timeout: float, stop: bool = True) -> None:
        """
        At once: C{natpmp} maps and unmaps on LAN host 1; the service maps
        all 20 on LAN host 2 within C{timeout} and, with C{stop}, stopping
        deletes them all.
        """
        service = (
            self.serviceMapsAndStopDeletes(timeout)
            if stop
            else self.serviceMapsAll(timeout)
        )
        await gatherResults(
            [run(self.cliMapsAndUnmaps()), run(service)], consumeErrors=True
        )
        self.assertEqual(crashes("\n".join(self.logs.lines)), [])

    async def test_loss30(self) -> None:
        """
        30% loss each way: C{natpmp} maps and unmaps; the service maps all
        of its 20 declarations (RFC 6886 s3.1: the client retransmits), and
        none is confused with another.
        """
        await self.impair(LOSS_30, LOSS_30)
        await self.both(60.0, stop=False)

    async def test_loss30StopDeletesAll(self) -> None:
        """
        30% loss each way: once the service holds all 20, stopping deletes
        all 20 on the router within its deadline (RFC 6886 s3.4).
        """
        await self.impair(LOSS_30, LOSS_30)
        await self.serviceMapsAndStopDeletes(60.0)

    async def test_slowDuplicatedReordered(self) -> None:
        """
        300 ms each way, 20% duplicated, 25% reordered: the same, and no
        late or duplicate reply confirms the wrong request (RFC 6886 s3.3:
        a reply matches on opcode and internal port).
        """
        await self.impair(SLOW_JUMBLED, SLOW_JUMBLED)
        await self.both(60.0)

    async def stopsTruthfully(self, service: PortMapperService) -> None:
        """
        Stop C{service} within its deadline; its log must name as left
        every mapping still on the router, and give their number.  (A
        deletion that arrived but whose reply was lost is rightly named
        too: the service cannot know.)
        """
        took = await self.stopService(service)
        self.assertLess(took, STOP_DEADLINE + 1.0)
        remaining = set(self.lab.rulesFor(LAN_HOSTS[1]))
        count, named = namedAsLeft(self.logs.lines)
        self.assertLessEqual(remaining, named, self.logs.lines[-5:])
        self.assertEqual(count, len(named))
        self.assertEqual(crashes("\n".join(self.logs.lines)), [])

    async def test_loss60(self) -> None:
        """
        60% loss each way: the service eventually maps all 20 (no
        declaration forgotten), and what stopping could not delete is what
        its log says it left.
        """
        await self.impair(LOSS_60, LOSS_60)
        service = await self.serviceMapsAll(LOSS_60_BOUND)
        await self.stopsTruthfully(service)

    async def test_loss60StopSaysWhatItLeft(self) -> None:
        """
        60% loss each way when the service, holding all 20, stops: what it
        could not delete is what its log says it left.
        """
        relay = await self.lab.startRelay(1, seed=1260)
        service = await self.serviceMapsAll(20.0)
        await relay.stop()
        await self.lab.startRelay(1, LOSS_60, LOSS_60, seed=1261, redirect=False)
        await self.stopsTruthfully(service)
