"""
What the client side's fuzz tests share (C{tests.natpmp.test_fuzz*}):
packets (valid, every length, every version and opcode, mutations), the
RFC 6886 oracles for a client and for the announcement listener, a log
watch and a memory measure.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from hypothesis import HealthCheck, settings
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.announce import AnnouncementKind

from ..interop._relay import (
    MAX_LENGTH,
    mutations,
    validRequests,
    validResponses,
)

GATEWAY = "10.77.0.1"
HOST = "10.77.0.2"
OTHER = "10.77.0.3"

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


# Oracles, from RFC 6886 (not from the code under test)


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


def responseKind(packet: bytes) -> str:
    """
    What a client makes of C{packet} from its gateway: C{"external"} (an
    external-address response, s3.2), C{"map"} (s3.3), C{"error"} (a header
    with a non-zero result, s3.5, opcode 0 allowed for Unsupported
    Version as printed before Errata 3618), or C{"drop"}.
    """
    if len(packet) < 8 or packet[0] != 0:
        return "drop"
    opcode = packet[1]
    result = int.from_bytes(packet[2:4], "big")
    if opcode == 128 and len(packet) >= 12:
        return "external"
    if opcode in (129, 130) and len(packet) >= 16:
        return "map"
    if result != 0 and (opcode >= 128 or (opcode == 0 and result == 1)):
        return "error"
    return "drop"


def notAnnouncement(packet: bytes) -> bool:
    """
    Whether C{packet} is neither a NAT-PMP announcement (RFC 6886 s3.2.1)
    nor a successful PCP ANNOUNCE (RFC 6887 s14.1).
    """
    return announcementOf(packet) is None


def announcementOf(packet: bytes) -> tuple[AnnouncementKind, int] | None:
    """
    The kind and epoch of the announcement C{packet} is, if it is one.
    """
    if packet[:1] == b"\x02":
        if len(packet) >= 24 and packet[1] == 0x80 and packet[3] == 0:
            return AnnouncementKind.PCP, int.from_bytes(packet[8:12], "big")
        return None
    if len(packet) >= 12 and packet[:4] == b"\x00\x80\x00\x00":
        return AnnouncementKind.NATPMP, int.from_bytes(packet[4:8], "big")
    return None


# The log and the memory


class LogWatch:
    """
    Watches the global log while a test runs, keeping counts and a few
    examples, never every event (that would be the memory growth the
    memory tests look for).

    @ivar failures: the logged tracebacks, formatted.
    @ivar loud: how many events were at level warn or above.
    @ivar loudBytes: the length of those events, formatted.
    @ivar examples: the first few loud events, formatted.
    """

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.failures: list[str] = []
        self.examples: list[str] = []
        self.loud = 0
        self.loudBytes = 0
        observer = cast(ILogObserver, self.observe)
        globalLogPublisher.addObserver(observer)
        testCase.addCleanup(globalLogPublisher.removeObserver, observer)

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


#: The bad packets of a memory test, and how many of them warm it up.
BAD_PACKETS = 20_000
WARM_UP = 2_000
#: Allowed growth over 18,000 bad packets: under 4 bytes a packet.
MAX_GROWTH = 64 * 1024
#: Log lines at warn level or above allowed for 20,000 bad packets from a
#: handful of sources within 100 s: aggregated, never one per packet.
MAX_LOUD_LINES = 100
