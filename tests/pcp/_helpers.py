"""
What the PCP client's tests share: the in-memory network with a scripted
server, and clients on it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp._wire import Request, decodeRequest
from twisted_natpmp.pcp.client import PCPClient, listenPCPClient
from twisted_natpmp.testing import MemoryUDPNetwork

from ._gateway import ScriptedPCPServer

_T = TypeVar("_T")

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"


def silent(request: Request, packet: bytes, addr: Any) -> list[bytes]:
    """
    A server's reply that sends nothing.
    """
    return []


class ClientTestsMixin:
    network: MemoryUDPNetwork
    server: ScriptedPCPServer
    nonces: MemoryNonceStore
    client: PCPClient

    def setUpNetwork(self, gateway: str = GATEWAY, host: str = HOST) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.server = ScriptedPCPServer()
        self.network.host(gateway).listenUDP(5351, self.server)
        self.nonces = MemoryNonceStore()
        self.losses: list[None] = []

    def makeClient(self, host: str = HOST, **kwargs: Any) -> PCPClient:
        kwargs.setdefault("nonces", self.nonces)
        kwargs.setdefault("random", lambda: 0.5)
        kwargs.setdefault("monotonic", self.clock.seconds)
        client = listenPCPClient(
            self.network.host(host), kwargs.pop("gateway", GATEWAY), **kwargs
        )
        client.addStateLossObserver(lambda: self.losses.append(None))
        return client

    def flushed(self, d: Deferred[_T]) -> Deferred[_T]:
        self.network.flush()
        return d

    def sent(self) -> list[Request]:
        return [decodeRequest(d.data) for d in self.network.sentTo((GATEWAY, 5351))]
