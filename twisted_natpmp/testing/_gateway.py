# -*- test-case-name: tests.test_testing -*-
"""
A scripted NAT-PMP gateway for a L{twisted_natpmp.testing.MemoryUDPNetwork}:
it answers like a well-behaved gateway (RFC 6886) unless the test replaces
its C{reply}, so that a test can make it slow, silent, wrong or rebooted.
It speaks NAT-PMP only: a packet of another version (a PCP request) gets
NAT-PMP's 8-byte unsupported-version reply, as from a NAT-PMP-only gateway
(RFC 6886 s3.5, RFC 6887 s9), so that it can stand in for one under the
C{auto} protocol::

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
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapResponse,
    Request,
    ResultCode,
    UnsupportedVersion,
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
    @ivar unsupported: every packet of a version other than NAT-PMP's (0),
        with its source, in order; each was answered with the
        unsupported-version reply (version 0, opcode 128, result 1, the
        epoch), not passed to C{reply}.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Any]] = []
        self.epoch = 100
        self.granted: int | None = None
        self.external = EXTERNAL
        self.reply: Reply = self.answer
        self.unsupported: list[tuple[bytes, Any]] = []

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
        transport = self.transport
        assert transport is not None
        try:
            request = decodeRequest(datagram)
        except UnsupportedVersion:
            # RFC 6886 s3.5 with Errata 3618 (opcode 128, result 1), the
            # answer RFC 6887 s9 has a PCP client fall back on.
            self.unsupported.append((datagram, addr))
            reply = ErrorResponse(
                RESPONSE_BIT, ResultCode.UNSUPPORTED_VERSION, self.epoch
            )
            transport.write(reply.encode(), addr)
            return
        self.requests.append((request, addr))
        for packet in self.reply(request):
            transport.write(packet, addr)
