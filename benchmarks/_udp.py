"""
Bare blocking-socket loops: the floor any NAT-PMP client or load generator
could reach from Python, and the load generator for the gateway figures.

Every loop is bounded in count, and every wait in time: a reply that does
not come within C{timeout} seconds raises L{NoReply}.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from twisted_natpmp import Transport
from twisted_natpmp.natpmp._wire import ExternalAddressRequest, MapRequest

#: How long a bare loop waits for one reply.
TIMEOUT = 2.0
EXTERNAL_ADDRESS = ExternalAddressRequest().encode()


class NoReply(Exception):
    """
    The server did not answer, or answered with a failure.
    """


def connect(address: str, port: int, timeout: float = TIMEOUT) -> socket.socket:
    """
    A UDP socket connected to C{address}:C{port}, bound to an ephemeral
    port on 127.0.0.1 when C{address} is a loopback address.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.connect((address, port))
    return sock


def mapAndDelete(ports: Sequence[int], lifetime: int = 3600) -> list[bytes]:
    """
    For each port, a UDP map request suggesting that port, then its
    deletion (RFC 6886 s3.3, s3.4).
    """
    packets = []
    for port in ports:
        packets.append(MapRequest(Transport.UDP, port, port, lifetime).encode())
        packets.append(MapRequest(Transport.UDP, port, 0, 0).encode())
    return packets


def _receive(sock: socket.socket) -> None:
    try:
        reply = sock.recv(64)
    except TimeoutError:
        raise NoReply(f"no reply within {sock.gettimeout()} s") from None
    if len(reply) < 8 or reply[2:4] != b"\0\0":
        raise NoReply(f"failure reply {reply.hex()}")


def oneAtATime(sock: socket.socket, packets: Sequence[bytes], count: int) -> None:
    """
    Send C{count} requests, cycling through C{packets}, each after the
    previous one's reply.
    """
    size = len(packets)
    for i in range(count):
        sock.send(packets[i % size])
        _receive(sock)


def windowed(
    sock: socket.socket, packets: Sequence[bytes], count: int, window: int
) -> None:
    """
    Send C{count} requests, cycling through C{packets}, keeping C{window}
    of them in flight.
    """
    size = len(packets)
    sent = 0
    for _ in range(min(window, count)):
        sock.send(packets[sent % size])
        sent += 1
    for _ in range(count):
        _receive(sock)
        if sent < count:
            sock.send(packets[sent % size])
            sent += 1
