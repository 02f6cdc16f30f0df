"""
Find the gateway to talk to: the default IPv4 gateway (RFC 6886 s3) and the
default IPv6 gateway (L{defaultGateway6}, for PCP, RFC 6887 s8.1), as the
C{netifaces} module (from the C{netifaces-plus} distribution) reports them;
and check that NAT-PMP makes sense here: RFC 6886 s3 says a client SHOULD
use it only when its primary IPv4 address is private (L{localAddress},
L{isPrivateAddress}).

Discovery is only a default: every caller (the client, the service, the
C{natpmp} command) accepts a gateway address instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any, Protocol

from ._wire import SERVER_PORT
from .errors import NoGatewayError

# Library messages name no command-line flag: the service and the command
# each say how to name a gateway their own way.
_ADVICE = "name the gateway explicitly"


class NetifacesModule(Protocol):
    """
    The part of the C{netifaces} module that L{defaultGateway} uses; tests
    pass a stand-in of the same shape.
    """

    @property
    def AF_INET(self) -> int: ...

    def gateways(self) -> Mapping[Any, Any]: ...


def _importNetifaces() -> NetifacesModule:
    import netifaces

    return netifaces


class Netifaces6Module(Protocol):
    """
    The part of the C{netifaces} module that L{defaultGateway6} and
    L{globalAddresses6} use.
    """

    @property
    def AF_INET6(self) -> int: ...

    def gateways(self) -> Mapping[Any, Any]: ...

    def interfaces(self) -> list[str]: ...

    def ifaddresses(self, interface: str, /) -> Mapping[int, Any]: ...


def defaultGateway(netifacesModule: NetifacesModule | None = None) -> IPv4Address:
    """
    The default IPv4 gateway of this host: RFC 6886 s3 sends requests to it.

    @param netifacesModule: the C{netifaces} module, or a stand-in for it;
        L{None} imports the real one.
    @return: the gateway's address.
    @raise NoGatewayError: there is no default IPv4 gateway (or no usable
        one: a default route without a gateway address, as on a
        point-to-point link, names none), or the routing table cannot be
        read.
    """
    module = _importNetifaces() if netifacesModule is None else netifacesModule
    try:
        gateways = module.gateways()
    except OSError as e:
        raise NoGatewayError(f"cannot read the routing table ({e}); {_ADVICE}") from e
    # netifaces: {"default": {AF_INET: (address, interface)}, AF_INET: [...]}
    default = gateways.get("default")
    entry = default.get(module.AF_INET) if isinstance(default, Mapping) else None
    if not entry:
        raise NoGatewayError(f"no default IPv4 gateway found; {_ADVICE}")
    try:
        address = IPv4Address(entry[0])
    except ValueError:
        raise NoGatewayError(
            f"the default IPv4 gateway {entry[0]!r} is not an IPv4 address; {_ADVICE}"
        ) from None
    if address.is_unspecified:
        raise NoGatewayError(f"the default route names no gateway; {_ADVICE}")
    return address


#: The addresses of a host behind a NAT, for which NAT-PMP is meant
#: (L{isPrivateAddress}).
PRIVATE_NETWORKS: tuple[IPv4Network, ...] = (
    # RFC 1918, which RFC 6886 s3 names.
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    # RFC 6598 shared address space: a carrier's NAT numbers its customers'
    # side from it, so a host there is behind a NAT too (RFC 6886 predates
    # it in spirit: its s3 text is older).  A NAT-PMP gateway there (a VPN
    # or carrier gateway that offers it) is what the rule is for.
    IPv4Network("100.64.0.0/10"),
    # A gateway on this host is a test's or a local relay's.
    IPv4Network("127.0.0.0/8"),
)


class _Socket(Protocol):
    def connect(self, address: tuple[str, int], /) -> None: ...

    def getsockname(self) -> Any: ...

    def close(self) -> None: ...


def _udpSocket() -> _Socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def localAddress(
    gateway: IPv4Address | str,
    port: int = SERVER_PORT,
    socketFactory: Callable[[], _Socket] = _udpSocket,
) -> IPv4Address:
    """
    The local IPv4 address this host sends from to reach C{gateway}: the
    kernel's choice for a UDP socket connected there (connecting a UDP
    socket sends no packet).

    @param gateway: the gateway.
    @param port: the gateway's port (it does not change the route; a port
        is needed to connect).
    @param socketFactory: makes an unbound IPv4 UDP socket; tests pass a
        stand-in.
    @return: the source address of packets to C{gateway}.
    @raise OSError: there is no route to C{gateway}.
    """
    sock = socketFactory()
    try:
        sock.connect((str(gateway), port))
        return IPv4Address(sock.getsockname()[0])
    finally:
        sock.close()


def isPrivateAddress(address: IPv4Address | str) -> bool:
    """
    Is C{address} one behind a NAT, where NAT-PMP makes sense (RFC 6886 s3:
    a client SHOULD use NAT-PMP only when its primary IPv4 address is a
    private one)?  True for L{PRIVATE_NETWORKS}: RFC 1918, the RFC 6598
    shared space of carrier NATs, and loopback.

    @param address: the host's address, e.g. from L{localAddress}.
    """
    address = IPv4Address(address)
    return any(address in network for network in PRIVATE_NETWORKS)


def unusableGateway(address: IPv4Address) -> str | None:
    """
    Why C{address} cannot be a NAT-PMP gateway, if it cannot: requests go
    to one host, the default gateway (RFC 6886 s3), never to the
    unspecified address (which Linux delivers to this host), a multicast
    group or the limited broadcast address.

    @return: a short reason, or L{None} when the address may be a gateway.
    """
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address == IPv4Address("255.255.255.255"):
        return "the broadcast address"
    return None


def defaultGateway6(netifacesModule: Netifaces6Module | None = None) -> IPv6Address:
    """
    The default IPv6 gateway of this host, where a PCP client sends its
    requests for IPv6 (RFC 6887 s8.1: the default router).  A link-local
    gateway (the usual kind: routers advertise their link-local address)
    carries its interface as the scope (C{fe80::1%eth0}), without which it
    cannot be reached.

    @param netifacesModule: the C{netifaces} module, or a stand-in for it;
        L{None} imports the real one.
    @return: the gateway's address.
    @raise NoGatewayError: there is no default IPv6 gateway, or the routing
        table cannot be read.
    """
    module: Any = _importNetifaces() if netifacesModule is None else netifacesModule
    try:
        gateways = module.gateways()
    except OSError as e:
        raise NoGatewayError(f"cannot read the routing table ({e}); {_ADVICE}") from e
    default = gateways.get("default")
    entry = default.get(module.AF_INET6) if isinstance(default, Mapping) else None
    if not entry:
        raise NoGatewayError(f"no default IPv6 gateway found; {_ADVICE}")
    text, interface = str(entry[0]), str(entry[1]) if len(entry) > 1 else ""
    try:
        address = IPv6Address(text)
        if address.is_link_local and address.scope_id is None and interface:
            address = IPv6Address(f"{text}%{interface}")
    except ValueError:
        raise NoGatewayError(
            f"the default IPv6 gateway {text!r} is not an IPv6 address; {_ADVICE}"
        ) from None
    if address.is_unspecified:
        raise NoGatewayError(f"the default IPv6 route names no gateway; {_ADVICE}")
    return address


def globalAddresses6(
    netifacesModule: Netifaces6Module | None = None,
) -> list[IPv6Address]:
    """
    This host's global IPv6 addresses: each can have an inbound pinhole
    opened by PCP (one mapping per address, the client bound to it).

    @param netifacesModule: the C{netifaces} module, or a stand-in.
    @return: the addresses, each once, in the order the interfaces list
        them; not link-local, loopback, multicast or unique-local ones.
    """
    module: Any = _importNetifaces() if netifacesModule is None else netifacesModule
    found: dict[IPv6Address, None] = {}
    for interface in module.interfaces():
        for entry in module.ifaddresses(interface).get(module.AF_INET6, []):
            try:
                address = IPv6Address(str(entry.get("addr", "")).split("%")[0])
            except ValueError:
                continue
            if address.is_global:
                found[address] = None
    return list(found)
