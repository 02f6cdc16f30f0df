"""
A rate-bounded flooder: it sends seeded mutations of valid NAT-PMP messages
(L{tools.impair.mutations}) at a bounded rate, up to a bounded count and
time, from an ordinary socket or, to forge a source address (a reply "from
the gateway"), from a raw one.  Either way it runs in one of the lab's
namespaces and sends only to the addresses it is given there.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .mutations import isMapRequest, mutations, validRequests, validResponses


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
        return cls(parseAddress(destination), parseAddress(source) if source else None)


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


def parseAddress(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def floodMain(options: argparse.Namespace) -> int:
    valid = validResponses() if options.responses else validRequests()
    payloads: Iterator[bytes] = mutations(options.seed, valid, 10 * options.count)
    if options.no_map_requests:
        payloads = (p for p in payloads if not isMapRequest(p))
    done = flood(options.to, payloads, options.count, options.rate, options.max_seconds)
    print(json.dumps({"flood": done}), flush=True)
    return 0
