# -*- test-case-name: tests.test_testing -*-
"""
A scripted NAT-PMP gateway for a L{twisted_natpmp.testing.MemoryUDPNetwork}:
it answers like a well-behaved gateway (RFC 6886) unless the test replaces
its C{reply}, so that a test can make it slow, silent, wrong or rebooted::

    network = MemoryUDPNetwork()
    gateway = ScriptedGateway()
    network.host(GATEWAY).listenUDP(5351, gateway)
    gateway.reply = lambda request: []        # a gateway that never answers
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

__all__ = ["EXTERNAL", "GATEWAY", "HOST", "Reply", "ScriptedGateway"]

#: The gateway's address in the examples and tests.
GATEWAY = "10.0.0.1"
#: A host behind it.
HOST = "10.0.0.2"
#: The external address the scripted gateway reports.
EXTERNAL = IPv4Address("192.0.3.77")

#: What a gateway does with a request: the packets it sends back.
Reply = Callable[[Request], list[bytes]]


class ScriptedGateway(DatagramProtocol):
    """
    A NAT-PMP gateway whose answers the test chooses: C{reply(request)}
    returns the packets to send back.  By default (L{answer}) it answers
    like a well-behaved gateway with epoch L{epoch}.

    @ivar requests: every request received, with its source, in order.
    @ivar epoch: the epoch (seconds since start of epoch) it answers with;
        set it lower to play a reboot (RFC 6886 s3.6).
    @ivar granted: the lifetime it grants, or L{None} for the one asked.
    @ivar external: the external address it reports.
    @ivar reply: what it does with each request.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Any]] = []
        self.epoch = 100
        self.granted: int | None = None
        self.external = EXTERNAL
        self.reply: Reply = self.answer

    def answer(self, request: Request) -> list[bytes]:
        """
        A well-behaved gateway's answer: the external address; a grant of
        the suggested port (50000 when none is suggested) for the lifetime
        asked (or L{granted}); a deletion's success.
        """
        if isinstance(request, ExternalAddressRequest):
            return [ExternalAddressResponse(0, self.epoch, self.external).encode()]
        if request.lifetime == 0:
            return [
                MapResponse(
                    request.transport, 0, self.epoch, request.internalPort, 0, 0
                ).encode()
            ]
        lifetime = request.lifetime if self.granted is None else self.granted
        external = request.suggestedExternalPort or 50000
        return [
            MapResponse(
                request.transport,
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
        transport = self.transport
        assert transport is not None
        for packet in self.reply(request):
            transport.write(packet, addr)
