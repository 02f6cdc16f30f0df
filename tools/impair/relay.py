"""
A seeded UDP impairment relay: loss, delay, duplication and reordering, each
direction on its own (the lab's kernel has no C{sch_netem}).

It runs as its own process on a LAN host, in front of the programs there
(L{tools.netlab.Lab.startRelay} starts it, as C{python -m tools.impair
relay})::

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

Standard library only.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import time
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


def relayMain(options: argparse.Namespace) -> int:
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
