# -*- test-case-name: tests.test_exchange -*-
"""
The UDP socket of an exchange: bound to an ephemeral port, connected to the
gateway (so that the kernel filters other sources and reports ICMP port
unreachable, RFC 6886 s3.1), rebound when the reactor closes it under us,
and the first filter of what arrives: only the gateway's port counts.

A gateway at a scoped IPv6 address (a link-local one, C{fe80::1%eth0}, as
routers advertise their default route) is the exception: Twisted's UDP
C{connect()} hands the socket a C{(host, port)} pair, which cannot carry
the scope (the kernel answers EINVAL).  Such a socket is left unconnected:
every packet is sent to the C{(host, port, flowinfo, scope)} 4-tuple that
C{getaddrinfo} makes of the address, and the sources are filtered here.
The 4-tuple is made when the port is bound, in the network namespace the
socket is made in (where the scope's interface name has its index).
"""

from __future__ import annotations

import socket as _socket
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address, ip_address
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from .._droplog import DropLog
from .._types import IPAddress
from ..errors import PortMappingError

__all__ = ["ExchangeProtocol", "GatewaySocket", "scopedDestination"]

log = Logger()

#: A socket address for C{sendto}: C{(host, port)}, or for IPv6 C{(host,
#: port, flowinfo, scope_id)}.
SocketAddress = tuple[Any, ...]


def scopedDestination(gateway: IPAddress, port: int) -> SocketAddress | None:
    """
    The 4-tuple to send to C{gateway}'s C{port}, if C{gateway} is an IPv6
    address with a scope (C{fe80::1%eth0}); L{None} for any other.
    No name is looked up: the address is numeric.

    @raise ValueError: the scope names no interface of this host.
    """
    if not isinstance(gateway, IPv6Address) or not gateway.scope_id:
        return None
    try:
        infos = _socket.getaddrinfo(
            str(gateway),
            port,
            _socket.AF_INET6,
            _socket.SOCK_DGRAM,
            0,
            _socket.AI_NUMERICHOST,
        )
    except _socket.gaierror as e:
        raise ValueError(f"cannot reach {gateway}: {e.strerror}") from None
    return tuple(infos[0][4])


def _unscoped(host: str) -> str:
    return host.split("%", 1)[0]


class ExchangeProtocol(DatagramProtocol):
    """
    The datagram protocol of a L{GatewaySocket}: sends its packets to the
    gateway and hands it what comes back.
    """

    def __init__(self, socket: GatewaySocket) -> None:
        self.socket = socket

    def startProtocol(self) -> None:
        socket = self.socket
        if socket.scoped:
            # Here, while the port is bound: the scope's interface index is
            # the socket's network namespace's.
            destination = scopedDestination(socket.gateway, socket.gatewayPort)
            assert destination is not None
            socket.destination = destination
        if self.socket.connectSocket:
            assert self.transport is not None
            self.transport.connect(str(self.socket.gateway), self.socket.gatewayPort)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.socket._datagramReceived(datagram, addr)

    def connectionRefused(self) -> None:
        self.socket._refused()

    def stopProtocol(self) -> None:
        self.socket._portLost()

    def send(self, packet: bytes) -> None:
        """
        Send C{packet} to the gateway.

        @raise PortMappingError: the protocol is not listening.
        """
        socket = self.socket
        if self.transport is None:
            raise PortMappingError(f"the {socket.protocolName} client is not listening")
        if socket.connectSocket:
            # A connected UDP port takes no address.
            self.transport.write(packet, None)  # type: ignore[arg-type]
        else:
            self.transport.write(packet, socket.destination)  # type: ignore[arg-type]


class GatewaySocket:
    """
    The socket one exchange talks to its gateway through.

    @ivar gateway: the gateway's address.
    @ivar gatewayPort: the gateway's UDP port.
    @ivar protocolName: the protocol's name, for messages.
    @ivar connectSocket: whether the socket is connected to the gateway
        (only when no extra source is accepted, and the gateway's address
        has no scope).
    @ivar scoped: whether the gateway's address is IPv6 with a scope.
    @ivar destination: the socket address packets are sent to when the
        socket is not connected (for a scoped gateway, the 4-tuple made
        when the port was bound).
    @ivar protocol: the L{ExchangeProtocol} to listen with.
    @ivar drops: counts and logs, in aggregate, the datagrams dropped.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPAddress,
        gatewayPort: int,
        *,
        received: Callable[[bytes, str], object],
        refused: Callable[[], object],
        lost: Callable[[], object],
        extraSources: Iterable[IPAddress] = (),
        protocolName: str = "NAT-PMP",
    ) -> None:
        """
        @param received: called with each datagram from the gateway and its
            source (C{"host:port"}).
        @param refused: called on ICMP port unreachable.
        @param lost: called when the port closed under us, after a new one
            was bound (or could not be).
        @param extraSources: other addresses the gateway may answer from;
            then the socket is not connected.
        """
        self.gateway = gateway
        self.gatewayPort = gatewayPort
        self.protocolName = protocolName
        self._received = received
        self._onRefused = refused
        self._onLost = lost
        sources = {gateway, *(ip_address(str(a)) for a in extraSources)}
        # Twisted reports a datagram's source as a string, and an IPv6
        # source without its scope: the kernel delivered it to this socket.
        self._sourceHosts = frozenset(_unscoped(str(a)) for a in sources)
        self.scoped = isinstance(gateway, IPv6Address) and bool(gateway.scope_id)
        self.destination: SocketAddress = (str(gateway), gatewayPort)
        self.connectSocket = len(sources) == 1 and not self.scoped
        self.protocol = ExchangeProtocol(self)
        self.drops = DropLog(log, clock, f"{protocolName} client of {gateway}")
        self.closed = False
        self._stopping = False
        self._port: IListeningPort | None = None
        self._binding: tuple[IReactorUDP, str] | None = None
        self._untrigger: Callable[[], object] = lambda: None

    @property
    def port(self) -> IListeningPort | None:
        """
        The port L{listen} bound, if any.
        """
        return self._port

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port.  Should it be closed under us (ICMP port
        unreachable, on the epoll reactor), a new one is bound the same way.

        @raise ValueError: the gateway's scope names no interface.
        """
        self._binding = (reactor, interface)
        self._port = self._bind()
        # A reactor shutting down closes the port; that is no ICMP error.
        addTrigger = getattr(reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            trigger = addTrigger("before", "shutdown", self._reactorStopping)
            remove = reactor.removeSystemEventTrigger  # type: ignore[attr-defined]
            self._untrigger = lambda: remove(trigger)
        return self._port

    def send(self, packet: bytes) -> None:
        """
        Send C{packet} to the gateway.

        @raise PortMappingError: not listening.
        """
        self.protocol.send(packet)

    def sourceAddress(self) -> IPAddress | None:
        """
        The local address of the socket (connected to the gateway, the
        kernel's choice), or L{None} if it has none or is not bound.
        """
        transport = self.protocol.transport
        try:
            address = ip_address(transport.getHost().host)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            return None
        return None if address.is_unspecified else address

    def close(self) -> Deferred[None]:
        """
        Stop listening, for good: what still arrives is ignored.  Fires when
        the port is closed.
        """
        self._stopping = True
        self.closed = True
        self._untrigger()
        self._untrigger = lambda: None
        self.drops.stop()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    def _bind(self) -> IListeningPort:
        assert self._binding is not None
        reactor, interface = self._binding
        return reactor.listenUDP(
            0, self.protocol, interface=interface, maxPacketSize=8192
        )

    def _reactorStopping(self) -> None:
        self._stopping = True
        self._untrigger = lambda: None  # the reactor has used it up

    def _refused(self) -> None:
        self._onRefused()

    def _portLost(self) -> None:
        """
        The port that L{listen} bound closed while neither we nor the
        reactor was stopping.  Twisted's epoll reactor closes a connected
        UDP port on ICMP port unreachable (EPOLLERR without EPOLLIN)
        instead of calling C{connectionRefused}; either way the gateway
        does not speak the protocol now (RFC 6886 s3.1).  A fresh port is
        bound so that later requests (a gateway that starts its server
        later) can still be made.
        """
        if self._stopping or self._port is None:
            return
        self._port = None
        try:
            self._port = self._bind()
        except Exception:
            log.failure(
                "could not bind a new port for the {protocol} client of {gateway}",
                protocol=self.protocolName,
                gateway=str(self.gateway),
            )
        self._onLost()

    def _datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.closed:
            # The port closes after close returns; what still comes asks
            # nothing (and must not restart the logs).
            return
        host, port = addr[0], addr[1]
        source = f"{host}:{port}"
        if _unscoped(host) not in self._sourceHosts or port != self.gatewayPort:
            # RFC 6886 s3.1: only replies from the gateway's port count.
            self.drops.drop(source, "not the gateway", datagram.hex())
            return
        self._received(datagram, source)
