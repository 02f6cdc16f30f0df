# -*- test-case-name: tests.test_testing -*-
"""
An in-memory UDP network for unit tests: several hosts, each seen through a
fake reactor (L{HostReactor}) that provides C{listenUDP}, C{listenMulticast}
and the time methods of one shared L{Clock}.  Datagrams are delivered
through the clock (a zero delay by default), so nothing re-enters a protocol
while it sends; call L{MemoryUDPNetwork.flush} (or advance the clock) to
deliver them::

    network = MemoryUDPNetwork()
    gateway = ScriptedGateway()
    network.host("10.0.0.1").listenUDP(5351, gateway)
    client = listenClient(network.host("10.0.0.2"), "10.0.0.1")
    d = client.externalAddress()
    network.flush()

A connected port (as every protocol client's is) hears only its peer, and
a datagram it sends to an address nobody is bound to is answered, as the
kernel answers ICMP port unreachable, by C{connectionRefused}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address as UDPAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IMulticastTransport,
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer

__all__ = ["Datagram", "Endpoint", "HostReactor", "MemoryUDPNetwork", "MemoryUDPPort"]

#: A UDP address: C{(host, port)}.
Endpoint = tuple[str, int]


@dataclass
class Datagram:
    """
    One datagram sent on a L{MemoryUDPNetwork}, delivered or not.

    @ivar source: where it came from.
    @ivar destination: where it went.
    @ivar data: its payload.
    @ivar time: the clock's time when it was sent.
    """

    source: Endpoint
    destination: Endpoint
    data: bytes
    time: float = 0.0


@implementer(IUDPTransport, IMulticastTransport, IListeningPort)
class MemoryUDPPort:
    """
    A bound UDP socket on the memory network; it is also the protocol's
    transport, and provides C{IListeningPort}, C{IUDPTransport} and (for
    ports bound with C{listenMulticast}) C{IMulticastTransport}.

    @ivar host: the bound address.
    @ivar port: the bound port.
    @ivar protocol: the protocol it delivers to.
    @ivar multicast: whether it was bound with C{listenMulticast}.
    @ivar groups: the multicast groups it joined.
    @ivar connected: whether it is still bound (L{stopListening} unbinds).
    @ivar remote: the peer it is connected to, if any.
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

    # IListeningPort
    def startListening(self) -> None:
        """
        Nothing to do: the port listens from the moment it is bound.
        """

    # IUDPTransport
    def write(self, packet: bytes, addr: Endpoint | None = None) -> None:
        """
        Send C{packet} to C{addr}, or to the connected peer.
        """
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
        """
        The bound address.
        """
        return UDPAddress("UDP", self.host, self.port)

    def stopListening(self) -> None:
        """
        Unbind, and stop the protocol (once).
        """
        if self.connected:
            self.connected = False
            self.network.unbind(self)
            self.protocol.doStop()  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        """
        The same as L{stopListening}.
        """
        self.stopListening()

    def setBroadcastAllowed(self, enabled: bool) -> None:
        pass

    def getBroadcastAllowed(self) -> bool:
        return False

    # IMulticastTransport
    def joinGroup(self, addr: str, interface: str = "") -> Deferred[None]:
        """
        Hear datagrams sent to the group C{addr} (on the port's port).
        """
        self.groups.add(addr)
        return succeed(None)

    def leaveGroup(self, addr: str, interface: str = "") -> Deferred[None]:
        """
        Stop hearing the group C{addr}.
        """
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

    def setOutgoingInterface(self, addr: str | int) -> Deferred[int]:
        return succeed(1)

    def getOutgoingInterface(self) -> str:
        return self.host


@implementer(IReactorUDP, IReactorMulticast, IReactorTime)
class HostReactor:
    """
    One host's view of the network: a reactor that binds sockets at
    C{address} and keeps time with the network's clock.

    @ivar network: the network.
    @ivar address: the host's address.
    """

    def __init__(self, network: MemoryUDPNetwork, address: str) -> None:
        self.network = network
        self.address = address

    # time
    def seconds(self) -> float:
        return self.network.clock.seconds()

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall:
        return self.network.clock.callLater(delay, callable, *args, **kw)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        return self.network.clock.getDelayedCalls()

    # UDP
    def listenUDP(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> MemoryUDPPort:
        """
        Bind C{protocol} to C{port} (0: an ephemeral one) at C{interface}
        (by default the host's address).

        @raise CannotListenError: the address is taken.
        """
        return self._bind(port, protocol, interface, multicast=False)

    def listenMulticast(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
        listenMultiple: bool = False,
    ) -> MemoryUDPPort:
        """
        Bind C{protocol} to C{port} for multicast: any number of ports may
        share it; each hears the groups it joins, and unicast to the host.
        """
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
            error = OSError("address in use")
            raise CannotListenError(host, port, error)  # type: ignore[no-untyped-call]
        bound = MemoryUDPPort(self.network, host, port, protocol, multicast)
        self.network.bind(bound)
        protocol.makeConnection(bound)
        return bound


@dataclass
class MemoryUDPNetwork:
    """
    A LAN of in-memory hosts sharing one clock.

    @ivar clock: the clock every host keeps time with, and that delivers
        the datagrams.
    @ivar delay: the seconds each datagram takes.
    @ivar log: every datagram sent, delivered or not.
    @ivar drop: a predicate; datagrams for which it returns true are lost.
    @ivar ports: the unicast ports bound, by address.
    @ivar multicastPorts: the ports bound with C{listenMulticast}.
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
        """
        A port free at C{host}, from 40000 up.
        """
        while (host, self._nextPort) in self.ports:
            self._nextPort += 1
        self._nextPort += 1
        return self._nextPort - 1

    def bind(self, port: MemoryUDPPort) -> None:
        """
        Put C{port} on the network.
        """
        if port.multicast:
            self.multicastPorts.append(port)
        else:
            self.ports[(port.host, port.port)] = port

    def unbind(self, port: MemoryUDPPort) -> None:
        """
        Take C{port} off the network.
        """
        if port.multicast:
            self.multicastPorts.remove(port)
        else:
            self.ports.pop((port.host, port.port), None)

    def send(self, source: Endpoint, destination: Endpoint, data: bytes) -> None:
        """
        Send a datagram: log it, and unless L{drop} says it is lost, deliver
        it after L{delay}.
        """
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
        """
        Every datagram sent to C{destination}, in order.
        """
        return [d for d in self.log if d.destination == destination]
