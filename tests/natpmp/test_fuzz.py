"""
Bounded in-memory fuzzing of NAT-PMP's packet readers on the client side:
the codec's decoders, the client and the announcement listener (copied from
C{tests.test_fuzz}, whose gateway and service parts live with their
packages' tests).

Arbitrary bytes of every length 0-1100, every version and opcode byte,
seeded mutations of valid messages and their edge values (ports 0 and
65535, lifetimes 0, 1 and 2**32-1), checked against oracles written from
RFC 6886 here, not from the code under test.  Everything is deterministic
(seeded generators; Hypothesis derandomized, no example database) and runs
on a L{Clock}, in a few seconds.
"""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.announce import AnnouncementKind, AnnouncementProtocol
from twisted_natpmp.natpmp._wire import (
    OPCODES,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    Protocol,
    UnsupportedOpcode,
    UnsupportedVersion,
    decodeRequest,
    decodeResponse,
    encode,
)
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.testing import MemoryUDPNetwork

from ..interop._relay import (
    EDGE_LIFETIMES,
    EDGE_PORTS,
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

_MAP_REQUEST = struct.Struct("!BBHHHI")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
_HEADER = struct.Struct("!BBHI")

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


class DecoderTests(SynchronousTestCase):
    """
    L{decodeRequest} and L{decodeResponse}: every packet is decoded as the
    RFC says, or refused with L{MalformedPacket}, never anything else.
    """

    def checkRequest(self, packet: bytes) -> None:
        kind = requestKind(packet)
        try:
            request = decodeRequest(packet)
        except UnsupportedVersion:
            # RFC 6886 s3.5: a version other than 0 (the gateway drops
            # responses before it looks at the version).
            self.assertTrue(len(packet) >= 2 and packet[0] != 0, packet.hex())
            return
        except UnsupportedOpcode:
            self.assertEqual(kind, "opcode", packet.hex())
            return
        except MalformedPacket:
            self.assertIn(kind, ("drop", "version"), packet.hex())
            return
        if isinstance(request, ExternalAddressRequest):
            self.assertEqual(kind, "external", packet.hex())
        else:
            self.assertIsInstance(request, MapRequest)
            self.assertEqual(kind, "map", packet.hex())
            _, opcode, _, internal, external, lifetime = _MAP_REQUEST.unpack_from(
                packet
            )
            self.assertEqual(
                (OPCODES[request.protocol], request.internalPort), (opcode, internal)
            )
            self.assertEqual(
                (request.suggestedExternalPort, request.lifetime), (external, lifetime)
            )
        # Trailing bytes are ignored; what was decoded is what was sent,
        # but for the reserved field, ignored on reception (RFC 6886 s3.3).
        wire = encode(request)
        sent = packet[: len(wire)]
        self.assertEqual(sent[:2] + sent[4:], wire[:2] + wire[4:])

    def checkResponse(self, packet: bytes) -> None:
        kind = responseKind(packet)
        try:
            response = decodeResponse(packet)
        except MalformedPacket:
            self.assertEqual(kind, "drop", packet.hex())
            return
        kinds: dict[type, str] = {
            ExternalAddressResponse: "external",
            MapResponse: "map",
            ErrorResponse: "error",
        }
        self.assertEqual(kind, kinds[type(response)], packet.hex())
        wire = encode(response)
        self.assertEqual(packet[: len(wire)], wire)

    def test_corpus(self) -> None:
        """
        Valid messages, every length 0-1100 and mutations of valid messages.
        """
        for packet in corpus(1):
            self.checkRequest(packet)
            self.checkResponse(packet)

    def test_everyVersionAndOpcode(self) -> None:
        """
        Every version byte with every opcode byte.
        """
        for packet in everyVersionAndOpcode(2, (12, 16)):
            self.checkRequest(packet)
            self.checkResponse(packet)

    @FUZZ
    @given(st.binary(max_size=MAX_LENGTH))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary bytes.
        """
        self.checkRequest(packet)
        self.checkResponse(packet)

    @FUZZ
    @given(
        st.sampled_from([0, 1, 2]),
        st.sampled_from(EDGE_PORTS) | st.integers(0, 65535),
        st.sampled_from(EDGE_PORTS) | st.integers(0, 65535),
        st.sampled_from(EDGE_LIFETIMES) | st.integers(0, 2**32 - 1),
        st.binary(max_size=8),
    )
    def test_edgeValues(
        self, opcode: int, internal: int, external: int, lifetime: int, tail: bytes
    ) -> None:
        """
        Requests and responses with edge values round-trip.
        """
        packet = _MAP_REQUEST.pack(0, opcode, 0, internal, external, lifetime)
        self.checkRequest(packet + tail)
        self.checkResponse(
            _MAP_RESPONSE.pack(
                0, opcode | 128, 0, lifetime, internal, external, lifetime
            )
            + tail
        )


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


class BoundedTests(SynchronousTestCase):
    """
    Memory does not grow with the number of bad packets, and the log says
    them in aggregate: 20,000 bad packets at each protocol.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.logs = LogWatch(self)

    def checkBounded(
        self,
        deliver: Callable[[bytes, int], None],
        bad: Callable[[bytes], bool],
        memory: bool = True,
    ) -> None:
        """
        Deliver L{BAD_PACKETS} packets for which C{bad} is true; check that
        (with C{memory}) memory stays flat, that nothing raised, and that
        the log stayed quiet.
        """
        packets = badPackets(6, BAD_PACKETS, bad)
        if memory:
            growth = measureGrowth(deliver, packets, WARM_UP)
            self.assertLess(growth, MAX_GROWTH, f"{growth} bytes more")
        else:
            for i, packet in enumerate(packets):
                deliver(packet, i)
        self.assertEqual(self.logs.failures, [])
        self.assertLessEqual(
            self.logs.loud,
            MAX_LOUD_LINES,
            f"{self.logs.loud} loud lines, {self.logs.loudBytes} bytes,"
            f" e.g. {self.logs.examples}",
        )

    def test_client(self) -> None:
        """
        The client, waiting for a reply, with bad packets from its gateway.
        """
        network = MemoryUDPNetwork(clock=self.clock, drop=lambda d: True)
        client = listenClient(network.host(HOST), GATEWAY, monotonic=self.clock.seconds)
        # A reply to this never comes: only the bad packets do.
        pending = client.addMapping(Protocol.UDP, 5000, lifetime=7200)
        pending.addErrback(lambda f: None)

        def deliver(packet: bytes, i: int) -> None:
            self.clock.advance(0.005)
            client.protocol.datagramReceived(packet, (GATEWAY, 5351))

        self.checkBounded(deliver, lambda p: responseKind(p) == "drop")
        self.assertNoResult(pending)
        client.cancelPending()

    def test_announcements(self) -> None:
        """
        The announcement listener, with bad packets from another LAN host
        and from the gateway.
        """
        received: list[object] = []
        protocol = AnnouncementProtocol(GATEWAY, received.append, clock=self.clock)

        def deliver(packet: bytes, i: int) -> None:
            self.clock.advance(0.005)
            host = GATEWAY if i % 2 else OTHER
            protocol.datagramReceived(packet, (host, 5351))

        self.checkBounded(deliver, notAnnouncement)
        self.assertEqual(received, [])


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


class ClientTests(SynchronousTestCase):
    """
    The client under fuzzed replies: a request is answered only by a reply
    that matches it (RFC 6886 s3.2, s3.3, s3.5) from its gateway, and no
    exception escapes.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # No gateway listens: the requests go nowhere, the replies are fuzz.
        self.network = MemoryUDPNetwork(clock=self.clock, drop=lambda d: True)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )
        self.logs = LogWatch(self)

    def request(self, kind: str) -> Deferred[Any]:
        d: Deferred[Any]
        if kind == "external":
            d = self.client.externalAddress()
        elif kind == "map":
            d = self.client.addMapping(Protocol.UDP, 5000, lifetime=7200)
        else:
            d = self.client.deleteMapping(Protocol.TCP, 6000)
        return d

    def answers(self, kind: str, packet: bytes) -> bool:
        """
        May C{packet} answer a request of C{kind}: an external-address
        request, a UDP mapping of port 5000, a TCP deletion of port 6000?
        """
        got = responseKind(packet)
        opcode = {"external": 128, "map": 129, "delete": 130}[kind]
        if got == "error":
            # s3.5, Errata 3618: Unsupported Version may carry 0 or 128.
            unsupported = int.from_bytes(packet[2:4], "big") == 1
            return packet[1] == opcode or (unsupported and packet[1] in (0, 128))
        if packet[1] != opcode:
            return False
        if kind == "external":
            return got == "external"
        # s3.3: the reply echoes the internal port asked about.
        wanted = 5000 if kind == "map" else 6000
        return got == "map" and int.from_bytes(packet[8:10], "big") == wanted

    def fuzz(self, packets: Iterable[bytes], sources: list[tuple[str, int]]) -> None:
        kinds = ["external", "map", "delete"]
        for i, packet in enumerate(packets):
            kind = kinds[i % 3]
            d = self.request(kind)
            outcome: list[object] = []
            d.addBoth(outcome.append)
            source = sources[i % len(sources)]
            self.client.protocol.datagramReceived(packet, source)
            if outcome:
                self.assertEqual(source, (GATEWAY, 5351), packet.hex())
                self.assertTrue(self.answers(kind, packet), f"{kind} {packet.hex()}")
            else:
                # Not answered: only cancelling ends it.
                self.client.cancelPending()
                self.assertEqual(len(outcome), 1)
                self.assertIsInstance(outcome[0], Failure)
        self.assertEqual(self.logs.failures, [])

    def test_corpus(self) -> None:
        """
        Valid replies, every length 0-1100 and mutations, from the gateway.
        """
        self.fuzz(corpus(8), [(GATEWAY, 5351)])

    def test_otherSources(self) -> None:
        """
        Valid replies from anywhere but the gateway's port 5351 answer
        nothing (RFC 6886 s3.1).
        """
        sources = [(OTHER, 5351), (GATEWAY, 5350), (GATEWAY, 5352), ("192.0.3.1", 5351)]
        self.fuzz(validResponses() * 2, sources)

    @FUZZ
    @given(st.binary(max_size=40))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary replies.
        """
        self.fuzz([packet, packet, packet], [(GATEWAY, 5351)])


class AnnouncementTests(SynchronousTestCase):
    """
    The announcement listener: only the gateway's well-formed, successful
    announcements count (RFC 6886 s3.2.1; RFC 6887 s14.1 for PCP).
    """

    def setUp(self) -> None:
        self.received: list[Any] = []
        self.protocol = AnnouncementProtocol(
            GATEWAY, self.received.append, clock=Clock()
        )
        self.logs = LogWatch(self)

    def expected(self, packet: bytes, host: str) -> tuple[AnnouncementKind, int] | None:
        # RFC 6886 s3.2.1: only the gateway's announcements count.
        return announcementOf(packet) if host == GATEWAY else None

    def fuzz(self, packets: Iterable[bytes]) -> None:
        for i, packet in enumerate(packets):
            host = (GATEWAY, OTHER)[i % 2]
            before = len(self.received)
            self.protocol.datagramReceived(packet, (host, 5351))
            got = self.received[before:]
            expected = self.expected(packet, host)
            if expected is None:
                self.assertEqual(got, [], packet.hex())
            else:
                self.assertEqual(len(got), 1, packet.hex())
                self.assertEqual((got[0].kind, got[0].epoch), expected)
                if expected[0] is AnnouncementKind.NATPMP:
                    # RFC 6886 s3.2: 0.0.0.0 names no external address.
                    address = IPv4Address(packet[8:12])
                    self.assertEqual(
                        got[0].externalAddress, address if int(address) else None
                    )
        self.assertEqual(self.logs.failures, [])

    def test_corpus(self) -> None:
        """
        Valid messages, every length 0-1100 and mutations.
        """
        self.fuzz(corpus(9))

    def test_everyVersionAndOpcode(self) -> None:
        """
        Every version with every opcode.
        """
        self.fuzz(everyVersionAndOpcode(10, (24,)))

    @FUZZ
    @given(st.binary(max_size=MAX_LENGTH))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary bytes.
        """
        self.fuzz([packet, packet])
