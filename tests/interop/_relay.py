"""
The reliability suite's packet tools, for the interop tests and the
benchmarks: a seeded UDP impairment relay (loss, delay, duplication and
reordering, each direction on its own; the lab's kernel has no
C{sch_netem}), a rate-bounded flooder, and the seeded NAT-PMP packet
mutations that both the flooder and the in-memory fuzz tests send.

It runs as its own process on a LAN host, in front of the programs there
(L{tests.interop._lab.Lab.startRelay} starts it)::

    client --(nat OUTPUT REDIRECT)--> 127.0.0.1:RELAY --(impaired)--> router:5351
    client <--(conntrack un-NAT: from router:5351)-- 127.0.0.1:RELAY <--(impaired)--

A rule in the LAN host's C{nat OUTPUT} chain redirects every packet for the
router's port 5351 to the relay, except the relay's own (its upstream
sockets carry a firewall mark the rule skips).  So the router sees the LAN
host's own address as the source, as a router judges and maps it, and the
client sees replies from the router's address and port 5351, as it checks
(conntrack undoes the redirect on the way back).  Each client address and
port gets its own upstream socket, so replies find their way home.

The relay decides each packet's fate with a C{random.Random(seed)} of its
own per direction, always drawing the same number of values per packet, so
one seed and one packet sequence give one outcome.  It is bounded: it
exits after C{--max-seconds} or C{--max-packets} packets received, or on
SIGTERM, and then prints its counts as one JSON line.

The flooder (C{flood}) sends seeded mutations of valid NAT-PMP messages at
a bounded rate, up to a bounded count and time, from an ordinary socket or,
to forge a source address (a reply "from the gateway"), from a raw one.
Either way it runs in one of the lab's namespaces and sends only to the
addresses it is given there.

This module imports only the standard library (it runs as a script).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from types import FrameType

#: The relay's port on the LAN host's loopback address.
RELAY_PORT = 15351
#: The firewall mark on the relay's own upstream packets (not redirected).
RELAY_MARK = 0x4E
#: At most this many client addresses at once; the oldest is forgotten.
MAX_FLOWS = 256
#: At most this many packets waiting for their time at once; more are lost.
MAX_QUEUED = 100_000

_SO_MARK = getattr(socket, "SO_MARK", 36)

#: The external address in the valid responses mutated.
EXTERNAL_ADDRESS = "192.0.3.1"
#: Edge values (RFC 6886 s3.3, s3.4).
EDGE_PORTS = (0, 1, 1023, 1024, 5000, 65535)
EDGE_LIFETIMES = (0, 1, 7200, 2**32 - 1)
#: The longest packet made (longer than any NAT-PMP or PCP message, and
#: than the PCP maximum of 1100 bytes).
MAX_LENGTH = 1100

_MAP_REQUEST = struct.Struct("!BBHHHI")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
_HEADER = struct.Struct("!BBHI")


# Packets


def validRequests() -> list[bytes]:
    """
    Every kind of request, with edge values in every field.
    """
    requests = [b"\x00\x00"]
    for opcode in (1, 2):
        for internal in EDGE_PORTS:
            for external in (0, 5000, 65535):
                for lifetime in EDGE_LIFETIMES:
                    requests.append(
                        _MAP_REQUEST.pack(0, opcode, 0, internal, external, lifetime)
                    )
    return requests


def validResponses() -> list[bytes]:
    """
    Every kind of response, with edge values in every field.
    """
    responses = []
    for epoch in (0, 1, 2**32 - 1):
        for result in range(6):
            responses.append(
                _HEADER.pack(0, 128, result, epoch) + socket.inet_aton(EXTERNAL_ADDRESS)
            )
        for opcode in (129, 130):
            for internal in EDGE_PORTS:
                for lifetime in EDGE_LIFETIMES:
                    responses.append(
                        _MAP_RESPONSE.pack(
                            0, opcode, 0, epoch, internal, 65535, lifetime
                        )
                    )
            responses.append(_HEADER.pack(0, opcode, 4, epoch))
        # RFC 6886 s3.5 with Errata 3618 (opcode 128) and as printed (0).
        responses.append(_HEADER.pack(0, 128, 1, epoch))
        responses.append(_HEADER.pack(0, 0, 1, epoch))
        # A PCP ANNOUNCE response (RFC 6887 s14.1).
        responses.append(
            bytes((2, 0x80, 0, 0)) + struct.pack("!II", 0, epoch) + bytes(12)
        )
    return responses


def mutate(rng: random.Random, packet: bytes, others: list[bytes]) -> bytes:
    """
    One seeded mutation of C{packet}: flipped bits, an edge byte, a cut, an
    extension, a splice with another packet, a new version or opcode.
    """
    data = bytearray(packet)
    kind = rng.randrange(8)
    if kind == 0 and data:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:
        data[rng.randrange(len(data))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
    elif kind == 2:
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 3:
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 4:
        other = rng.choice(others)
        cut = rng.randrange(len(data) + 1)
        data = data[:cut] + other[rng.randrange(len(other) + 1) :]
    elif kind == 5 and data:
        data[0] = rng.randrange(256)
    elif kind == 6 and len(data) > 1:
        data[1] = rng.randrange(256)
    else:
        data = data + data
    return bytes(data[:MAX_LENGTH])


def mutations(seed: int, valid: list[bytes], count: int) -> Iterator[bytes]:
    """
    C{count} seeded mutations of C{valid} packets, some mutated twice.
    """
    rng = random.Random(seed)
    for _ in range(count):
        packet = mutate(rng, rng.choice(valid), valid)
        if rng.random() < 0.3:
            packet = mutate(rng, packet, valid)
        yield packet


@dataclass(frozen=True)
class Impairment:
    """
    What happens to the packets of one direction.

    @ivar loss: the chance (0-1) that a packet is dropped.
    @ivar delay: seconds every packet that is not dropped waits.
    @ivar duplicate: the chance that a packet is sent twice; the copy goes
        up to C{hold} seconds after the original.
    @ivar reorder: the chance that a packet is held C{hold} seconds more
        than C{delay}, so that packets sent after it overtake it.
    @ivar hold: see C{duplicate} and C{reorder}.
    """

    loss: float = 0.0
    delay: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    hold: float = 0.1

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.delay < 0 or self.hold < 0:
            raise ValueError("delay and hold must not be negative")

    def argument(self) -> str:
        """
        This impairment as a command-line value: C{loss=0.3,delay=0.1,...}.
        """
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """
        The impairment an L{argument} string describes (empty: none).

        @raise ValueError: an unknown name or a bad value.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in filter(None, text.split(",")):
            name, _, value = part.partition("=")
            if name not in known:
                raise ValueError(f"unknown impairment {name!r}")
            values[name] = float(value)
        return cls(**values)


#: No impairment: every packet goes once, at once.
PERFECT = Impairment()


@dataclass
class Counts:
    """
    What the relay did to the packets of one direction.
    """

    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    sent: int = 0
    overflowed: int = 0


@dataclass
class Fate:
    """
    Decides, from a seeded random source, what becomes of each packet of one
    direction.
    """

    impairment: Impairment
    seed: int
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def decide(self) -> list[float]:
        """
        The fate of the next packet: the delays, in seconds, after which a
        copy of it is sent (none: it is dropped; two: it is duplicated).
        Four values are drawn for every packet, whatever its fate.
        """
        imp = self.impairment
        lossDraw, duplicateDraw, reorderDraw, copyDraw = (
            self._random.random() for _ in range(4)
        )
        self.counts.received += 1
        if lossDraw < imp.loss:
            self.counts.dropped += 1
            return []
        first = imp.delay
        if reorderDraw < imp.reorder:
            self.counts.reordered += 1
            first += imp.hold
        delays = [first]
        if duplicateDraw < imp.duplicate:
            self.counts.duplicated += 1
            delays.append(first + copyDraw * imp.hold)
        return delays


class Relay:
    """
    The relay's sockets and its queue of packets waiting for their time.

    @ivar up: the fate of client-to-router packets.
    @ivar down: the fate of router-to-client packets.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        up: Fate,
        down: Fate,
        mark: int = RELAY_MARK,
    ) -> None:
        self.up = up
        self.down = down
        self._upstream = upstream
        self._mark = mark
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._listener.bind(listen)
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        # client address -> upstream socket; dict order is least recent first.
        self._flows: dict[tuple[str, int], socket.socket] = {}
        self._queue: list[
            tuple[float, int, socket.socket, bytes, tuple[str, int] | None]
        ] = []
        self._sequence = 0
        self.stopping = False

    def _flowFor(self, client: tuple[str, int]) -> socket.socket:
        flow = self._flows.pop(client, None)
        if flow is None:
            if len(self._flows) >= MAX_FLOWS:
                oldest = next(iter(self._flows))
                self._close(self._flows.pop(oldest))
            flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            flow.setsockopt(socket.SOL_SOCKET, _SO_MARK, self._mark)
            flow.setblocking(False)
            flow.connect(self._upstream)
            self._selector.register(flow, selectors.EVENT_READ, client)
        self._flows[client] = flow
        return flow

    def _close(self, flow: socket.socket) -> None:
        self._selector.unregister(flow)
        flow.close()

    def _schedule(
        self,
        fate: Fate,
        now: float,
        sock: socket.socket,
        data: bytes,
        to: tuple[str, int] | None,
    ) -> None:
        for delay in fate.decide():
            if len(self._queue) >= MAX_QUEUED:
                fate.counts.overflowed += 1
                continue
            self._sequence += 1
            heapq.heappush(self._queue, (now + delay, self._sequence, sock, data, to))

    def _flush(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, _, sock, data, to = heapq.heappop(self._queue)
            fate = self.up if to is None else self.down
            try:
                if to is None:
                    sock.send(data)
                else:
                    sock.sendto(data, to)
            except OSError:
                # A refused or unroutable packet is lost, as on a real path.
                continue
            fate.counts.sent += 1

    def _receive(self, sock: socket.socket, client: tuple[str, int] | None) -> int:
        """
        Read what C{sock} holds (at most 64 packets); return how many.
        """
        got = 0
        now = time.monotonic()
        for _ in range(64):
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP errors reported on a connected upstream socket.
                continue
            got += 1
            if client is None:
                flow = self._flowFor((source[0], source[1]))
                self._schedule(self.up, now, flow, data, None)
            else:
                self._schedule(self.down, now, self._listener, data, client)
        return got

    def run(self, maxSeconds: float, maxPackets: int) -> None:
        """
        Relay until C{maxSeconds} have passed, C{maxPackets} have been
        received (both directions together), or L{stopping} is set.
        """
        deadline = time.monotonic() + maxSeconds
        received = 0
        while not self.stopping and received < maxPackets:
            now = time.monotonic()
            if now >= deadline:
                break
            wait = deadline - now
            if self._queue:
                wait = min(wait, max(0.0, self._queue[0][0] - now))
            for key, _ in self._selector.select(min(wait, 0.5)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                received += self._receive(sock, key.data)
            self._flush(time.monotonic())

    def report(self) -> str:
        """
        The counts, as one JSON line.
        """
        return json.dumps(
            {"relay": {"up": asdict(self.up.counts), "down": asdict(self.down.counts)}}
        )


# The flooder


def udpDatagram(
    source: tuple[str, int], destination: tuple[str, int], payload: bytes
) -> bytes:
    """
    An IPv4 packet carrying a UDP datagram, for a raw socket: the kernel
    fills in the IP checksum, length and id; the UDP checksum is 0 (none,
    as IPv4 allows).
    """
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", source[1], destination[1], length, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + length,
        0,
        0,
        1,  # TTL 1: never past the first router.
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(destination[0]),
    )
    return ip + udp + payload


@dataclass(frozen=True)
class Target:
    """
    Where the flooder sends: C{destination}, from C{source} if given
    (forged, through a raw socket), else from an ordinary socket.
    """

    destination: tuple[str, int]
    source: tuple[str, int] | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """
        C{HOST:PORT} or C{HOST:PORT<-HOST:PORT} (destination, forged
        source).
        """
        destination, _, source = text.partition("<-")
        return cls(_address(destination), _address(source) if source else None)


def flood(
    targets: list[Target],
    payloads: Iterator[bytes],
    count: int,
    rate: float,
    maxSeconds: float,
) -> dict[str, float]:
    """
    Send C{count} of C{payloads}, round-robin over C{targets}, at most
    C{rate} a second and for at most C{maxSeconds}.

    @return: how many were sent, how many sends failed, and the seconds
        it took.
    """
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    plain.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    raw = None
    if any(t.source is not None for t in targets):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    started = time.monotonic()
    deadline = started + maxSeconds
    sent = failed = 0
    burst = max(1, int(rate / 1000))
    while sent + failed < count:
        now = time.monotonic()
        if now >= deadline:
            break
        # Never ahead of the rate: wait for the next burst's time.
        due = started + (sent + failed) / rate
        if due > now:
            time.sleep(min(due - now, deadline - now))
        for _ in range(min(burst, count - sent - failed)):
            target = targets[(sent + failed) % len(targets)]
            payload = next(payloads)
            try:
                if target.source is None:
                    plain.sendto(payload, target.destination)
                else:
                    assert raw is not None
                    raw.sendto(
                        udpDatagram(target.source, target.destination, payload),
                        (target.destination[0], 0),
                    )
            except OSError:
                failed += 1
            else:
                sent += 1
    plain.close()
    if raw is not None:
        raw.close()
    return {"sent": sent, "failed": failed, "seconds": time.monotonic() - started}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _relayMain(options: argparse.Namespace) -> int:
    relay = Relay(
        options.listen,
        options.upstream,
        Fate(options.up, options.seed),
        # A different stream for the other direction, from the same seed.
        Fate(options.down, options.seed + 1_000_003),
        options.mark,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        relay.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("relaying", flush=True)
    relay.run(options.max_seconds, options.max_packets)
    print(relay.report(), flush=True)
    return 0


def isMapRequest(packet: bytes) -> bool:
    """
    Whether C{packet} is a whole NAT-PMP map request (RFC 6886 s3.3).
    """
    return len(packet) >= 12 and packet[0] == 0 and packet[1] in (1, 2)


def _floodMain(options: argparse.Namespace) -> int:
    valid = validResponses() if options.responses else validRequests()
    payloads: Iterator[bytes] = mutations(options.seed, valid, 10 * options.count)
    if options.no_map_requests:
        payloads = (p for p in payloads if not isMapRequest(p))
    done = flood(options.to, payloads, options.count, options.rate, options.max_seconds)
    print(json.dumps({"flood": done}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="relay with impairments")
    relay.add_argument("--listen", type=_address, default=("127.0.0.1", RELAY_PORT))
    relay.add_argument("--upstream", type=_address, required=True)
    relay.add_argument("--up", type=Impairment.parse, default=PERFECT)
    relay.add_argument("--down", type=Impairment.parse, default=PERFECT)
    relay.add_argument("--seed", type=int, default=0)
    relay.add_argument("--mark", type=int, default=RELAY_MARK)
    relay.add_argument("--max-seconds", type=float, default=600.0)
    relay.add_argument("--max-packets", type=int, default=1_000_000)
    relay.set_defaults(run=_relayMain)
    flooder = commands.add_parser("flood", help="send mutated NAT-PMP packets")
    flooder.add_argument("--to", type=Target.parse, action="append", required=True)
    flooder.add_argument("--responses", action="store_true")
    flooder.add_argument("--no-map-requests", action="store_true")
    flooder.add_argument("--count", type=int, required=True)
    flooder.add_argument("--rate", type=float, required=True)
    flooder.add_argument("--seed", type=int, default=0)
    flooder.add_argument("--max-seconds", type=float, default=60.0)
    flooder.set_defaults(run=_floodMain)
    options = parser.parse_args(argv)
    code: int = options.run(options)
    return code


if __name__ == "__main__":
    sys.exit(main())
