"""
Helpers of the tests of L{twisted_natpmp._exchange}: a toy protocol (a
request C{b"Q" + key} is answered by C{b"A" + key}) on a L{Clock} and the
in-memory UDP network.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._exchange import Exchange
from twisted_natpmp.testing import HostReactor, MemoryUDPNetwork

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"
PORT = 5351


class Toy(DatagramProtocol):
    """
    A toy gateway: answers each request C{Q<key>} with C{A<key>} while
    C{answering}.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answering = True

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)
        if self.answering:
            assert self.transport is not None
            self.transport.write(b"A" + datagram[1:], addr)

    def answer(self, key: bytes, source: Any) -> None:
        assert self.transport is not None
        self.transport.write(b"A" + key, source)


def decode(datagram: bytes) -> bytes:
    if not datagram.startswith(b"A"):
        raise ValueError("not an answer")
    return datagram[1:]


class ShutdownReactor(HostReactor):
    """
    A host reactor with system event triggers, to play a reactor shutdown.
    """

    def __init__(self, network: MemoryUDPNetwork, address: str) -> None:
        super().__init__(network, address)
        self.triggers: dict[int, Callable[[], object]] = {}

    def addSystemEventTrigger(
        self, phase: str, event: str, f: Callable[[], object]
    ) -> int:
        self.triggers[id(f)] = f
        return id(f)

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.triggers[trigger]


class ExchangeTestMixin(SynchronousTestCase):
    window = 1
    byKey = False

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = Toy()
        self.gatewayPort = self.network.host(GATEWAY).listenUDP(PORT, self.gateway)
        self.exchange = self.makeExchange()
        self.exchange.listen(self.network.host(HOST))

    def makeExchange(self, **kwargs: Any) -> Exchange[bytes, bytes]:
        if self.byKey:
            kwargs.setdefault("keyOf", lambda response: response)
        else:
            kwargs.setdefault("matches", lambda request, response: request == response)
        kwargs.setdefault("window", self.window)
        return Exchange(
            self.clock,
            IPv4Address(GATEWAY),
            PORT,
            decode=decode,
            protocolName="TOY",
            describe=lambda request: f"request {request.decode()}",
            **kwargs,
        )

    def submit(
        self, key: bytes, exchange: Exchange[bytes, bytes] | None = None, **kw: Any
    ) -> Deferred[bytes]:
        exchange = exchange or self.exchange
        return exchange.submit(key, b"Q" + key, key=key if self.byKey else None, **kw)

    def sent(self) -> list[bytes]:
        return [d.data for d in self.network.sentTo((GATEWAY, PORT))]
