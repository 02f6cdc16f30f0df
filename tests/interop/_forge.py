"""
Forged NAT-PMP packets for the interop suite: UDP datagrams with a source
address the sending host does not have, sent from a raw socket inside one
of the lab's namespaces (the lab runs as root).

Every destination is an address inside the lab's own namespaces, and every
flood is bounded in packets and in time.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from twisted.internet.task import deferLater

from ._lab import insideNamespace

_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_UDP_HEADER = struct.Struct("!HHHH")
_VERSION_IHL = 0x45
_TTL = 64


def udpPacket(
    source: tuple[str, int], destination: tuple[str, int], payload: bytes
) -> bytes:
    """
    An IPv4 packet carrying one UDP datagram from C{source} to
    C{destination}.  The kernel fills in the IP checksum and identification;
    the UDP checksum is 0 (none, allowed for IPv4 by RFC 768).
    """
    udpLength = _UDP_HEADER.size + len(payload)
    ip = _IP_HEADER.pack(
        _VERSION_IHL,
        0,
        _IP_HEADER.size + udpLength,
        0,
        0,
        _TTL,
        socket.IPPROTO_UDP,
        0,
        IPv4Address(source[0]).packed,
        IPv4Address(destination[0]).packed,
    )
    udp = _UDP_HEADER.pack(source[1], destination[1], udpLength, 0)
    return ip + udp + payload


class Forger:
    """
    A raw IPv4 socket opened inside one namespace, sending UDP datagrams with
    whatever source address the test names.
    """

    def __init__(self, namespace: str) -> None:
        with insideNamespace(namespace):
            self._socket = socket.socket(
                socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW
            )
        self.sent = 0

    def send(
        self, source: tuple[str, int], destination: tuple[str, int], payload: bytes
    ) -> None:
        """
        Send one datagram; a full send buffer (ENOBUFS) counts as sent and
        lost, as it would be on a busy link.
        """
        try:
            self._socket.sendto(
                udpPacket(source, destination, payload), (destination[0], 0)
            )
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno != 105:  # ENOBUFS
                raise
        self.sent += 1

    def close(self) -> None:
        self._socket.close()


async def flood(
    forger: Forger,
    packets: Sequence[tuple[tuple[str, int], bytes]],
    destination: tuple[str, int],
    perBatch: int,
    interval: float,
) -> None:
    """
    Send C{packets} (source, payload) to C{destination}, C{perBatch} at a
    time with the reactor running for C{interval} seconds between batches:
    bounded by the length of C{packets}, and in time by about
    C{len(packets) / perBatch * interval} seconds.
    """
    from twisted.internet import reactor

    for start in range(0, len(packets), perBatch):
        for source, payload in packets[start : start + perBatch]:
            forger.send(source, destination, payload)
        await deferLater(reactor, interval)
