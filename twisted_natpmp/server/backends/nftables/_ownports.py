# -*- test-case-name: tests.server.nftables.test_ownports -*-
"""
The ports the router itself uses on its external address, which are never
granted: the TCP ports listening and the UDP ports bound (connected or
not) on that address or on every address, read from C{/proc/net/tcp},
C{tcp6}, C{udp} and C{udp6} of the gateway's network namespace.  A port
the router starts using after it was granted stays mapped until the
mapping ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address

__all__ = ["PROC_FILES", "listeningPorts", "ownPorts"]

#: The files read, with whether each is TCP.
PROC_FILES = (
    ("/proc/net/tcp", True),
    ("/proc/net/tcp6", True),
    ("/proc/net/udp", False),
    ("/proc/net/udp6", False),
)

_TCP_LISTEN = ("0A",)
# Unconnected, and connected (a socket on a fixed port talking to one
# peer: a VPN endpoint, say).
_UDP_BOUND = ("07", "01")


def _address(hexadecimal: str) -> IPv4Address | IPv6Address:
    raw = bytes.fromhex(hexadecimal)
    if len(raw) == 4:
        return IPv4Address(raw[::-1])
    # Four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return IPv6Address(words)


def listeningPorts(text: str, tcp: bool, external: IPv4Address | None) -> set[int]:
    """
    The ports in one C{/proc/net} file's C{text} that are listening (TCP)
    or bound, connected or not (UDP), on C{external} or on every address
    (an IPv4-mapped C{external} too).
    """
    wanted = _TCP_LISTEN if tcp else _UDP_BOUND
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] not in wanted:
            continue
        try:
            host, port = fields[1].split(":")
            address = _address(host)
        except ValueError:
            continue
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified or address == external:
            ports.add(int(port, 16))
    return ports


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def ownPorts(
    external: IPv4Address | None,
    read: Callable[[str], str] = _read,
    files: Iterable[tuple[str, bool]] = PROC_FILES,
) -> frozenset[int]:
    """
    Every port the router uses on C{external} (TCP and UDP together: the
    gateway reserves the companion port too).
    """
    ports: set[int] = set()
    for path, tcp in files:
        ports |= listeningPorts(read(path), tcp, external)
    return frozenset(ports)
