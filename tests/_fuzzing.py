"""
What every fuzz test shares (C{tests.natpmp.test_fuzz*},
C{tests.server.test_fuzz}, C{tests.service.natpmp.test_fuzz}): the LAN's
addresses, packets (valid, every length, every version and opcode,
mutations from L{tools.impair.mutations}), RFC 6886's layouts and its
oracle for a gateway, a log watch, and the bounded-memory measure with its
limits.

Everything is deterministic: seeded generators, and Hypothesis
derandomized with no example database (L{FUZZ}).
"""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address
from typing import Any, cast

from hypothesis import HealthCheck, settings
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import (
    EXTERNAL_ADDRESS,
    MAX_LENGTH,
    mutations,
    validRequests,
    validResponses,
)

GATEWAY = "10.77.0.1"
HOST = "10.77.0.2"
OTHER = "10.77.0.3"
EXTERNAL = IPv4Address(EXTERNAL_ADDRESS)
INTERNAL_NETWORK = "10.77.0.0/24"

#: RFC 6886's layouts: a map request (s3.3), a map response (s3.3), the
#: header of every response (s3.5).
MAP_REQUEST = struct.Struct("!BBHHHI")
MAP_RESPONSE = struct.Struct("!BBHIHHI")
HEADER = struct.Struct("!BBHI")

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# Packets


def everyLength(seed: int) -> Iterator[bytes]:
    """
    For every length 0-1100: random bytes, and random bytes behind a
    version-0 header with each request and response opcode.
    """
    rng = random.Random(seed)
    for length in range(MAX_LENGTH + 1):
        yield rng.randbytes(length)
        for opcode in (0, 1, 2, 128, 129, 130):
            yield (bytes((0, opcode)) + rng.randbytes(length))[:length]


def everyVersionAndOpcode(seed: int, sizes: Iterable[int]) -> Iterator[bytes]:
    """
    Every version byte with every opcode byte, in packets of each of
    C{sizes} bytes (12: a whole map request; 16: a whole map response; 24: a
    PCP ANNOUNCE).
    """
    rng = random.Random(seed)
    for version in range(256):
        for opcode in range(256):
            for size in sizes:
                yield bytes((version, opcode)) + rng.randbytes(size - 2)


def corpus(seed: int) -> Iterator[bytes]:
    """
    Every packet the fuzzers try, in order.
    """
    yield from validRequests()
    yield from validResponses()
    yield from everyLength(seed)
    yield from mutations(seed, validRequests() + validResponses(), 6000)


# The gateway's oracle, from RFC 6886 (not from the code under test)


def requestKind(packet: bytes) -> str:
    """
    What RFC 6886 makes of C{packet} sent to a gateway: C{"drop"} (too
    short, a response, or a map request too short to hold its fields),
    C{"version"} (s3.5: answer Unsupported Version), C{"external"} (s3.2),
    C{"map"} (s3.3, s3.4) or C{"opcode"} (s3.5: answer Unsupported Opcode).
    """
    if len(packet) < 2 or packet[1] >= 128:
        # s3.5: an opcode of 128 or more is a response: silently ignored.
        return "drop"
    if packet[0] != 0:
        return "version"
    if packet[1] == 0:
        return "external"
    if packet[1] in (1, 2):
        return "map" if len(packet) >= 12 else "drop"
    return "opcode"


# The log


class LogWatch:
    """
    Watches the log while a test runs, keeping counts and a few examples,
    never every event (that would be the memory growth the memory tests
    look for).

    It listens to the global log, and, given C{capture}, to the log of the
    code under test, which C{capture} sends to it alone: an observer of
    the global log that keeps events (another test's, the runner's) would
    otherwise count as that code's memory.

    @ivar failures: the logged tracebacks, formatted.
    @ivar loud: how many events were at level warn or above.
    @ivar loudBytes: the length of those events, formatted.
    @ivar examples: the first few loud events, formatted.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        capture: Callable[[SynchronousTestCase, ILogObserver], object] | None = None,
    ) -> None:
        """
        @param testCase: the test for the rest of which to watch.
        @param capture: called with C{testCase} and this watch's observer,
            to send the log of the code under test there (for example
            L{tests.server._helpers.captureLogs}).
        """
        self.failures: list[str] = []
        self.examples: list[str] = []
        self.loud = 0
        self.loudBytes = 0
        observer = cast(ILogObserver, self.observe)
        globalLogPublisher.addObserver(observer)
        testCase.addCleanup(globalLogPublisher.removeObserver, observer)
        if capture is not None:
            capture(testCase, observer)

    def observe(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            self.failures.append(formatEvent(event) + "\n" + failure.getTraceback())
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            self.loud += 1
            text = formatEvent(event)
            self.loudBytes += len(text) + 1
            if len(self.examples) < 3:
                self.examples.append(text)


# The memory


#: The bad packets of a memory test, and how many of them warm it up.
BAD_PACKETS = 20_000
WARM_UP = 2_000
#: Allowed growth over 18,000 bad packets: under 4 bytes a packet.
MAX_GROWTH = 64 * 1024
#: Log lines at warn level or above allowed for 20,000 bad packets from a
#: handful of sources within 100 s: aggregated, never one per packet.
MAX_LOUD_LINES = 100


def badPackets(seed: int, count: int, bad: Callable[[bytes], bool]) -> list[bytes]:
    """
    C{count} packets for which C{bad} is true, varied but from a small set
    (so that only the code under test can grow memory).
    """
    rng = random.Random(seed)
    pool = [
        p for p in mutations(seed, validRequests() + validResponses(), 4000) if bad(p)
    ][:500]
    return [rng.choice(pool) for _ in range(count)]


def measureGrowth(
    deliver: Callable[[bytes, int], None], packets: list[bytes], warmUp: int
) -> int:
    """
    The bytes still allocated after delivering C{packets} beyond what was
    allocated after the first C{warmUp} of them.
    """
    tracemalloc.start()
    try:
        for i, packet in enumerate(packets[:warmUp]):
            deliver(packet, i)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i, packet in enumerate(packets[warmUp:], warmUp):
            deliver(packet, i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


def underFire(
    testCase: SynchronousTestCase,
    capture: Callable[[SynchronousTestCase, ILogObserver], object] | None = None,
) -> tuple[Clock, LogWatch]:
    """
    What a memory test starts with: a clock 1000 s on, and a watch on the
    log for the rest of C{testCase} (with C{capture}, as L{LogWatch}).
    """
    clock = Clock()
    clock.advance(1000)
    return clock, LogWatch(testCase, capture)


def checkFlat(
    testCase: SynchronousTestCase,
    deliver: Callable[[bytes, int], None],
    bad: Callable[[bytes], bool],
) -> None:
    """
    Deliver L{BAD_PACKETS} packets for which C{bad} is true and fail
    C{testCase} unless memory grew by less than L{MAX_GROWTH} after the
    first L{WARM_UP}.
    """
    growth = measureGrowth(deliver, badPackets(6, BAD_PACKETS, bad), WARM_UP)
    testCase.assertLess(growth, MAX_GROWTH, f"{growth} bytes more")


def checkBounded(
    testCase: SynchronousTestCase,
    logs: LogWatch,
    deliver: Callable[[bytes, int], None],
    bad: Callable[[bytes], bool],
    memory: bool = True,
) -> None:
    """
    Deliver L{BAD_PACKETS} packets for which C{bad} is true; check that
    (with C{memory}) memory stays flat, that nothing raised, and that the
    log stayed quiet (in aggregate: at most L{MAX_LOUD_LINES} loud lines).

    @param logs: the watch on the log of the code under test.
    """
    if memory:
        checkFlat(testCase, deliver, bad)
    else:
        for i, packet in enumerate(badPackets(6, BAD_PACKETS, bad)):
            deliver(packet, i)
    testCase.assertEqual(logs.failures, [])
    testCase.assertLessEqual(
        logs.loud,
        MAX_LOUD_LINES,
        f"{logs.loud} loud lines, {logs.loudBytes} bytes, e.g. {logs.examples}",
    )
