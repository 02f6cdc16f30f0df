# -*- test-case-name: tests.server.test_internalport -*-
"""
A UDP port that knows which interface each datagram arrived on.

RFC 6886 s3.3: the gateway "MUST NOT accept mapping requests destined to
its external IP address or received on its external network interface".
Binding the socket to an internal address covers the first half only: Linux
delivers a datagram addressed to any local address whatever interface it
came in on, so a packet from the Internet with a forged LAN source and the
LAN address as destination would reach the socket (with the reverse-path
filter off or loose).  L{InterfaceCheckingPort} asks the kernel for each
datagram's arriving interface (C{IP_PKTINFO}, read with C{recvmsg}) and
hands the protocol only those that arrived on the interface holding the
port's address; the others go to a callback, which counts them.

Linux only: elsewhere L{InterfaceCheckingPort} refuses to listen rather
than serve unchecked.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from twisted.internet import udp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorMulticast
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.logger import Logger

log = Logger()

Endpoint = tuple[str, int]
#: Called with a datagram that arrived on another interface, its source, and
#: the index of the interface it arrived on (L{None} if the kernel did not
#: say).
OtherInterface = Callable[[bytes, Endpoint, "int | None"], object]

#: The socket option's value on Linux (Python 3.11 does not name it).
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
#: struct in_pktinfo: interface index, local address, header destination.
_PKTINFO = struct.Struct("@i4s4s")
#: IPv6's (RFC 3542): the socket option asking for it, and the option the
#: ancillary data comes as; struct in6_pktinfo: address, interface index.
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_PKTINFO6 = struct.Struct("@16sI")
_ANCILLARY_SIZE = socket.CMSG_SPACE(max(_PKTINFO.size, _PKTINFO6.size))
#: recvmsg errors that mean "nothing more to read now" (as Twisted's own UDP
#: port treats them), and the refusal an unconnected socket can ignore.
_NOTHING_TO_READ = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_REFUSED = frozenset({errno.ECONNREFUSED})


@dataclass(frozen=True, slots=True)
class LocalInterface:
    """
    One address (IPv4, or IPv6 for PCP) of a network interface of this
    host.

    @ivar name: the interface's name (C{"br0"}).
    @ivar index: its index, as C{IP_PKTINFO} reports it.
    @ivar address: the address with its network.
    """

    name: str
    index: int
    address: IPv4Interface | IPv6Interface


def _ipv6Interface(entry: dict[str, str]) -> IPv6Interface:
    # netifaces: "fe80::1%eth0", netmask "ffff:ffff:ffff:ffff::/64".
    address = entry["addr"].partition("%")[0]
    prefix = entry["netmask"].rpartition("/")[2]
    if not prefix.isdigit():
        prefix = str(bin(int(IPv6Address(entry["netmask"]))).count("1"))
    return IPv6Interface(f"{address}/{prefix}")


def localInterfaces() -> list[LocalInterface]:
    """
    Every IPv4 and IPv6 address of every interface of this host, from
    C{netifaces}.
    """
    import netifaces

    found = []
    for name in netifaces.interfaces():
        index = socket.if_nametoindex(name)
        addresses = netifaces.ifaddresses(name)
        for entry in addresses.get(netifaces.AF_INET, []):
            if entry.get("addr") and entry.get("netmask"):
                found.append(
                    LocalInterface(
                        name,
                        index,
                        IPv4Interface(f"{entry['addr']}/{entry['netmask']}"),
                    )
                )
        for entry in addresses.get(netifaces.AF_INET6, []):
            if entry.get("addr") and entry.get("netmask"):
                found.append(LocalInterface(name, index, _ipv6Interface(entry)))
    return found


def interfaceWith(
    address: IPv4Address | IPv6Address,
    interfaces: list[LocalInterface] | None = None,
) -> LocalInterface | None:
    """
    The interface that has C{address} as one of its own, if any.
    """
    for interface in localInterfaces() if interfaces is None else interfaces:
        if interface.address.ip == address:
            return interface
    return None


def interfaceHolding(address: IPv4Address | IPv6Address) -> LocalInterface | None:
    """
    The interface a datagram sent to C{address} arrives on: the one that
    has the address, or else the one whose network holds it (so 127.0.86.1
    is on the loopback interface, which has 127.0.0.1/8).
    """
    interfaces = localInterfaces()
    exact = interfaceWith(address, interfaces)
    if exact is not None:
        return exact
    for interface in interfaces:
        if address in interface.address.network:  # type: ignore[operator]
            return interface
    return None


def arrivalInterface(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """
    The index of the interface a datagram arrived on, from the ancillary
    data C{recvmsg} returned with it, or L{None} if it holds no
    C{IP_PKTINFO} (or, on an IPv6 socket, C{IPV6_PKTINFO}).
    """
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
            if len(data) >= _PKTINFO.size:
                index: int = _PKTINFO.unpack_from(data)[0]
                return index
        if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO:
            if len(data) >= _PKTINFO6.size:
                index6: int = _PKTINFO6.unpack_from(data)[1]
                return index6
    return None


class InterfaceCheckingPort(udp.MulticastPort):
    """
    A multicast-capable UDP port whose protocol hears only the datagrams
    that arrived on one interface; the others go to C{otherInterface}.

    @ivar interfaceIndex: the interface whose datagrams are delivered.
    """

    def __init__(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str,
        interfaceIndex: int,
        otherInterface: OtherInterface,
        reactor: IReactorMulticast,
    ) -> None:
        """
        @param interface: the local address to bind.
        @param interfaceIndex: the index of the interface that holds it.
        @param otherInterface: called with each datagram that arrived on
            another interface.
        """
        super().__init__(port, protocol, interface, reactor=reactor)
        self.interfaceIndex = interfaceIndex
        self._otherInterface = otherInterface

    def createInternetSocket(self) -> socket.socket:
        """
        The socket, asking the kernel for each datagram's arriving
        interface.

        @raise CannotListenError: not on Linux, where C{IP_PKTINFO} is known.
        """
        if not sys.platform.startswith("linux"):
            raise CannotListenError(
                self.interface,
                self.port,
                OSError("cannot check the arriving interface on this platform"),
            )
        skt: socket.socket = super().createInternetSocket()
        if self.addressFamily == socket.AF_INET6:
            skt.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
            try:
                # PCP's ANNOUNCE to ff02::1 leaves by this interface.
                skt.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.interfaceIndex
                )
            except OSError as e:
                # Requests are still served; announcements will say why not.
                log.warn(
                    "cannot send multicast from {address} by interface index"
                    " {index}: {error}",
                    address=self.interface,
                    index=self.interfaceIndex,
                    error=str(e),
                )
        else:
            skt.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        return skt

    def doRead(self) -> None:
        """
        Read what is waiting, as Twisted's own UDP port does, with each
        datagram's arriving interface.
        """
        read = 0
        while read < self.maxThroughput:
            try:
                data, ancillary, _, addr = self.socket.recvmsg(
                    self.maxPacketSize, _ANCILLARY_SIZE
                )
            except OSError as e:
                if e.errno in _NOTHING_TO_READ or e.errno in _REFUSED:
                    return
                raise
            read += len(data)
            if self.addressFamily == socket.AF_INET6:
                addr = addr[:2]  # as Twisted's own port: no flow, no scope
            index = arrivalInterface(ancillary)
            try:
                if index == self.interfaceIndex:
                    self.protocol.datagramReceived(data, addr)
                else:
                    self._otherInterface(data, addr, index)
            except Exception:
                log.failure(
                    "failed to handle a {size}-byte datagram from {source}",
                    size=len(data),
                    source=str(addr[0]),
                )
