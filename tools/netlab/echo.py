"""
Traffic through the lab's router: echo servers on a LAN host and probes
from the WAN host, all in the process that runs the lab, their sockets
opened inside the lab's namespaces (L{tools.netlab.insideNamespace}).

An echo server answers each line (TCP) or datagram (UDP) with its host's
address, a space, and what it got, so a probe knows which LAN host it
reached.  A probe reports one L{Outcome}:

  - the address of the LAN host whose echo server answered (reached);
  - L{REFUSED}: a TCP RST or an ICMP port unreachable (nothing listens
    where the packet went, e.g. the router's own stack when no rule
    forwarded it);
  - L{SILENT}: no answer within the probe's time bound (a firewall
    dropped it);
  - L{CLOSED}: an established TCP connection was reset or closed.

Every probe is bounded in time; a UDP probe sends its datagram again every
L{RESEND} seconds within that bound, never more than L{MAX_SENDS} times.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ._namespaces import insideNamespace, theReactor
from ._process import waitUntil

#: A probe's outcome: the address of the LAN host reached, or one of these.
Outcome = str
REFUSED: Outcome = "refused"
SILENT: Outcome = "silent"
CLOSED: Outcome = "closed"

#: How long a probe waits for an answer, by default, in seconds.
PROBE_TIMEOUT = 2.0
#: A UDP probe's resend interval, in seconds, and its most sends.
RESEND = 0.25
MAX_SENDS = 20

_serial = itertools.count(1)


class _EchoLine(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, name: bytes, open: set[_EchoLine]) -> None:
        self.name = name
        self.open = open

    def connectionMade(self) -> None:
        self.open.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.open.discard(self)

    def lineReceived(self, line: bytes) -> None:
        assert self.transport is not None
        self.transport.write(self.name + b" " + line + b"\n")


class _EchoDatagram(DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(self.name + b" " + datagram, addr)  # type: ignore[attr-defined]


class EchoServers:
    """
    TCP and UDP echo servers on one host of the lab (in its namespace),
    each reply prefixed with that host's address.
    """

    def __init__(self, namespace: str, address: str) -> None:
        self.namespace = namespace
        self.address = address
        self._ports: list[IListeningPort] = []
        self._open: set[_EchoLine] = set()

    def listen(
        self, tcp: tuple[int, ...] = (), udp: tuple[int, ...] = (), interface: str = ""
    ) -> None:
        """
        Echo on TCP ports C{tcp} and UDP ports C{udp} of this host, on
        every IPv4 address (or on C{interface}, e.g. C{"::"} for IPv6).
        """
        name = self.address.encode()
        reactor = theReactor()
        with insideNamespace(self.namespace):
            for port in tcp:
                factory = Factory.forProtocol(lambda: _EchoLine(name, self._open))
                self._ports.append(
                    reactor.listenTCP(port, factory, interface=interface)
                )
            for port in udp:
                self._ports.append(
                    reactor.listenUDP(port, _EchoDatagram(name), interface=interface)
                )

    async def stop(self) -> None:
        """
        Close every port, and abort every connection still open (a flow cut
        at the router leaves the LAN end open).
        """
        ports, self._ports = self._ports, []
        for port in ports:
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
        for connection in list(self._open):
            assert connection.transport is not None
            connection.transport.abortConnection()  # type: ignore[attr-defined]
        await waitUntil(lambda: not self._open, "echo connections closed", 5.0, 0.01)


class _Waiter:
    """
    One outcome, settled once, with its time bound.
    """

    def __init__(self, timeout: float) -> None:
        self.outcome: Deferred[Outcome] = Deferred()
        self._timer: IDelayedCall = theReactor().callLater(timeout, self.settle, SILENT)

    def settle(self, outcome: Outcome) -> None:
        if not self.outcome.called:
            if self._timer.active():
                self._timer.cancel()
            self.outcome.callback(outcome)


class TCPFlow(Protocol):
    """
    A TCP connection from the WAN host (L{TCPFlow.open}); each
    L{exchange} sends a line and reports who echoed it.
    """

    def __init__(self) -> None:
        self._waiter: _Waiter | None = None
        self._buffer = b""
        self.connected = False
        self.lost = False

    @classmethod
    async def open(
        cls,
        namespace: str,
        address: str,
        port: int,
        timeout: float = PROBE_TIMEOUT,
        source: str = "",
    ) -> tuple[TCPFlow, Outcome]:
        """
        Connect from C{namespace} (from its address C{source}, if given) to
        C{address}:C{port} and exchange one line.

        @return: the flow and the outcome of its first exchange (a refused
            or silent connection attempt gives that outcome).
        """
        flow = cls()
        waiter = flow._waiter = _Waiter(timeout)
        factory = _FlowFactory(flow)
        bind = (source, 0) if source else None
        with insideNamespace(namespace):
            connector = theReactor().connectTCP(
                address, port, factory, timeout, bindAddress=bind
            )
        outcome = await waiter.outcome
        if outcome == SILENT and not flow.connected:
            connector.stopConnecting()
        return flow, outcome

    def connectionMade(self) -> None:
        self.connected = True
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ping-%d\n" % next(_serial))

    async def exchange(self, timeout: float = PROBE_TIMEOUT) -> Outcome:
        """
        Send one more line on the open connection; report who echoed it,
        or L{CLOSED} if the connection is gone.
        """
        if self.lost:
            return CLOSED
        waiter = self._waiter = _Waiter(timeout)
        self._send()
        return await waiter.outcome

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if self._waiter is not None:
                self._waiter.settle(line.split(b" ", 1)[0].decode())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        if self._waiter is not None:
            self._waiter.settle(CLOSED)

    def close(self) -> None:
        """
        Abort the connection (nothing is waited for).
        """
        if self.transport is not None and not self.lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def failed(self, reason: Failure) -> None:
        if self._waiter is not None:
            refused = reason.check(ConnectionRefusedError) is not None
            self._waiter.settle(REFUSED if refused else SILENT)


class _FlowFactory(ClientFactory):
    def __init__(self, flow: TCPFlow) -> None:
        self.flow = flow

    def buildProtocol(self, addr: Any) -> TCPFlow:
        return self.flow

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.flow.failed(reason)


class UDPFlow(DatagramProtocol):
    """
    A UDP socket on the WAN host connected to one address and port, so that
    its datagrams are one flow (one conntrack entry) for its whole life.
    """

    def __init__(self) -> None:
        self._waiter: _Waiter | None = None
        self._sending: IDelayedCall | None = None
        self._closing = False
        self.refused = False

    @classmethod
    def open(cls, namespace: str, address: str, port: int, source: str = "") -> UDPFlow:
        """
        A flow from an ephemeral port of C{namespace} (on its address
        C{source}, if given) to C{address}:C{port}.
        """
        flow = cls()
        with insideNamespace(namespace):
            listening = theReactor().listenUDP(0, flow, interface=source)
        listening.connect(address, port)
        return flow

    async def exchange(self, timeout: float = PROBE_TIMEOUT) -> Outcome:
        """
        Send a datagram (again every L{RESEND} s) until someone echoes it,
        the port is refused, or C{timeout} runs out.
        """
        if self.refused:
            return REFUSED
        waiter = self._waiter = _Waiter(timeout)
        payload = b"ping-%d" % next(_serial)
        self._resend(payload, MAX_SENDS)
        try:
            return await waiter.outcome
        finally:
            if self._sending is not None and self._sending.active():
                self._sending.cancel()

    def _resend(self, payload: bytes, left: int) -> None:
        if self.transport is None:
            return
        self.transport.write(payload)  # type: ignore[call-arg]
        if left > 1:
            self._sending = theReactor().callLater(
                RESEND, self._resend, payload, left - 1
            )

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self._waiter is not None:
            self._waiter.settle(datagram.split(b" ", 1)[0].decode())

    def connectionRefused(self) -> None:
        self.refused = True
        if self._waiter is not None:
            self._waiter.settle(REFUSED)

    def stopProtocol(self) -> None:
        # The epoll reactor closes a connected UDP port on an ICMP port
        # unreachable (EPOLLERR without EPOLLIN) instead of calling
        # connectionRefused: that, too, is a refusal.
        if not self._closing:
            self.connectionRefused()

    async def close(self) -> None:
        """
        Close the socket.
        """
        self._closing = True
        if self.transport is not None:
            stopped = self.transport.stopListening()  # type: ignore[attr-defined]
            if stopped is not None:
                await stopped


async def probe(
    namespace: str,
    transport: str,
    address: str,
    port: int,
    timeout: float = PROBE_TIMEOUT,
    source: str = "",
) -> Outcome:
    """
    A new connection (C{transport} C{"tcp"} or C{"udp"}) from C{namespace}
    (from its address C{source}, if given) to C{address}:C{port}: who
    answered it, if anyone.  The connection is closed again.
    """
    if transport == "tcp":
        flow, outcome = await TCPFlow.open(namespace, address, port, timeout, source)
        flow.close()
        return outcome
    udp = UDPFlow.open(namespace, address, port, source)
    try:
        return await udp.exchange(timeout)
    finally:
        await udp.close()


__all__ = [
    "CLOSED",
    "REFUSED",
    "SILENT",
    "EchoServers",
    "Outcome",
    "TCPFlow",
    "UDPFlow",
    "probe",
]
