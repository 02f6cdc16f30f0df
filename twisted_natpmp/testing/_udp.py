"""
An in-memory UDP network for unit tests: several hosts, each seen through a
fake reactor that provides C{listenUDP}, C{listenMulticast} and the time
methods of one shared L{Clock}.  Datagrams are delivered through the clock
(a zero delay by default), so nothing re-enters a protocol while it sends;
call L{MemoryUDPNetwork.flush} (or advance the clock) to deliver them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address as UDPAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer

Endpoint = tuple[str, int]


@dataclass
class Datagram:
    source: Endpoint
    destination: Endpoint
    data: bytes
    time: float = 0.0


@implementer(IUDPTransport, IListeningPort)
class MemoryUDPPort:
    """
    A bound UDP socket on the memory network; it is also the protocol's
    transport.
    """

    def __init__(
        self,
        network: MemoryUDPNetwork,
        host: str,
        port: int,
        protocol: AbstractDatagramProtocol,
        multicast: bool,
    ) -> None:
        self.network = network
        self.host = host
        self.port = port
        self.protocol = protocol
        self.multicast = multicast
        self.groups: set[str] = set()
        self.connected = True
        self.remote: Endpoint | None = None

    # IUDPTransport
    def write(self, packet: bytes, addr: Endpoint | None = None) -> None:
        assert self.connected, "write on a closed port"
        if addr is None:
            assert self.remote is not None, "write without address on unconnected port"
            addr = self.remote
        self.network.send((self.host, self.port), (addr[0], addr[1]), bytes(packet))

    def connect(self, host: str, port: int) -> None:
        """
        Like a connected UDP socket: only datagrams from C{(host, port)} are
        received, and a datagram to an unbound address is answered with
        C{connectionRefused} (as the kernel does on ICMP port unreachable).
        """
        self.remote = (host, port)

    def getHost(self) -> UDPAddress:
        return UDPAddress("UDP", self.host, self.port)

    def stopListening(self) -> None:
        if self.connected:
            self.connected = False
            self.network.unbind(self)
            self.protocol.doStop()

    def loseConnection(self) -> None:
        self.stopListening()

    def setBroadcastAllowed(self, enabled: bool) -> None:
        pass

    def getBroadcastAllowed(self) -> bool:
        return False

    # IMulticastTransport, enough of it
    def joinGroup(self, addr: str, interface: str = "") -> Any:
        from twisted.internet.defer import succeed

        self.groups.add(addr)
        return succeed(None)

    def leaveGroup(self, addr: str, interface: str = "") -> Any:
        from twisted.internet.defer import succeed

        self.groups.discard(addr)
        return succeed(None)

    def setLoopbackMode(self, mode: int) -> None:
        pass

    def getLoopbackMode(self) -> bool:
        return True

    def setTTL(self, ttl: int) -> None:
        pass

    def getTTL(self) -> int:
        return 1

    def setOutgoingInterface(self, addr: str) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)

    def getOutgoingInterface(self) -> str:
        return self.host


@implementer(IReactorUDP, IReactorMulticast, IReactorTime)
class HostReactor:
    """
    One host's view of the network: binds sockets at C{address} and keeps
    time with the network's clock.
    """

    def __init__(self, network: MemoryUDPNetwork, address: str) -> None:
        self.network = network
        self.address = address

    # time
    def seconds(self) -> float:
        return self.network.clock.seconds()

    def callLater(
        self, delay: float, f: Callable[..., object], *a: Any, **kw: Any
    ) -> Any:
        return self.network.clock.callLater(delay, f, *a, **kw)

    def getDelayedCalls(self) -> Any:
        return self.network.clock.getDelayedCalls()

    # UDP
    def listenUDP(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> MemoryUDPPort:
        return self._bind(port, protocol, interface, multicast=False)

    def listenMulticast(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
        listenMultiple: bool = False,
    ) -> MemoryUDPPort:
        return self._bind(port, protocol, interface, multicast=True)

    def _bind(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str,
        multicast: bool,
    ) -> MemoryUDPPort:
        host = interface if interface not in ("", "0.0.0.0") else self.address
        if host.startswith("224.") and multicast:
            host = self.address
        if port == 0:
            port = self.network.ephemeralPort(host)
        elif not multicast and (host, port) in self.network.ports:
            raise CannotListenError(host, port, OSError("address in use"))
        bound = MemoryUDPPort(self.network, host, port, protocol, multicast)
        self.network.bind(bound)
        protocol.makeConnection(bound)
        return bound


@dataclass
class MemoryUDPNetwork:
    """
    A LAN of in-memory hosts sharing one clock.

    @ivar log: every datagram sent, delivered or not.
    @ivar drop: a predicate; datagrams for which it returns true are lost.
    """

    clock: Clock = field(default_factory=Clock)
    delay: float = 0.0
    log: list[Datagram] = field(default_factory=list)
    drop: Callable[[Datagram], bool] = lambda datagram: False
    ports: dict[Endpoint, MemoryUDPPort] = field(default_factory=dict)
    multicastPorts: list[MemoryUDPPort] = field(default_factory=list)
    _nextPort: int = 40000

    def host(self, address: str) -> HostReactor:
        """
        A reactor for the host at C{address}.
        """
        return HostReactor(self, address)

    def ephemeralPort(self, host: str) -> int:
        while (host, self._nextPort) in self.ports:
            self._nextPort += 1
        self._nextPort += 1
        return self._nextPort - 1

    def bind(self, port: MemoryUDPPort) -> None:
        if port.multicast:
            self.multicastPorts.append(port)
        else:
            self.ports[(port.host, port.port)] = port

    def unbind(self, port: MemoryUDPPort) -> None:
        if port.multicast:
            self.multicastPorts.remove(port)
        else:
            self.ports.pop((port.host, port.port), None)

    def send(self, source: Endpoint, destination: Endpoint, data: bytes) -> None:
        datagram = Datagram(source, destination, data, self.clock.seconds())
        self.log.append(datagram)
        if not self.drop(datagram):
            self.clock.callLater(self.delay, self._deliver, datagram)

    def _deliver(self, datagram: Datagram) -> None:
        host, port = datagram.destination
        if host.startswith("224."):
            receivers = [
                p for p in self.multicastPorts if p.port == port and host in p.groups
            ]
        else:
            receivers = [
                p for p in self.multicastPorts if p.port == port and p.host == host
            ]
            unicast = self.ports.get(datagram.destination)
            if unicast is not None:
                receivers.append(unicast)
        receivers = [
            r
            for r in receivers
            if r.connected and (r.remote is None or r.remote == datagram.source)
        ]
        if not receivers and not host.startswith("224."):
            sender = self.ports.get(datagram.source)
            if sender is not None and sender.remote == datagram.destination:
                refused = getattr(sender.protocol, "connectionRefused", None)
                if refused is not None:
                    refused()
        for receiver in receivers:
            receiver.protocol.datagramReceived(datagram.data, datagram.source)

    def flush(self, limit: int = 10000) -> None:
        """
        Deliver every datagram due now, and those their delivery provokes,
        without advancing the clock (bounded by C{limit} rounds).
        """
        for _ in range(limit):
            due = [
                call
                for call in self.clock.getDelayedCalls()
                if call.getTime() <= self.clock.seconds()
            ]
            if not due:
                return
            self.clock.advance(0)
        raise RuntimeError("memory network did not settle")

    def sentTo(self, destination: Endpoint) -> list[Datagram]:
        return [d for d in self.log if d.destination == destination]
