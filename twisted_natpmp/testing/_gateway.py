"""
A scripted NAT-PMP gateway for unit tests: it answers like a well-behaved
gateway unless the test replaces C{reply}.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.protocol import DatagramProtocol

from ..natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapResponse,
    Request,
    decodeRequest,
)

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"
EXTERNAL = IPv4Address("192.0.3.77")

Reply = Callable[[Request], list[bytes]]


class ScriptedGateway(DatagramProtocol):
    """
    A gateway whose answers the test chooses: C{reply(request)} returns the
    packets to send back.  By default it answers like a well-behaved gateway
    with epoch C{self.epoch}.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Any]] = []
        self.epoch = 100
        self.granted: int | None = None
        self.reply: Reply = self.answer

    def answer(self, request: Request) -> list[bytes]:
        if isinstance(request, ExternalAddressRequest):
            return [ExternalAddressResponse(0, self.epoch, EXTERNAL).encode()]
        if request.lifetime == 0:
            return [
                MapResponse(
                    request.protocol, 0, self.epoch, request.internalPort, 0, 0
                ).encode()
            ]
        lifetime = request.lifetime if self.granted is None else self.granted
        external = request.suggestedExternalPort or 50000
        return [
            MapResponse(
                request.protocol,
                0,
                self.epoch,
                request.internalPort,
                external,
                lifetime,
            ).encode()
        ]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        request = decodeRequest(datagram)
        self.requests.append((request, addr))
        for packet in self.reply(request):
            self.transport.write(packet, addr)
