# -*- test-case-name: tests.service.test_forwarded -*-
"""
A scripted VPN gateway for a L{twisted_natpmp.testing.MemoryUDPNetwork}: it
answers a NAT-PMP map request with internal port 0 and a lifetime as
ProtonVPN's gateway does (PROTOCOL.md Part E1), granting its own public
port for 60 s whatever was asked, the reply echoing internal port 0::

    gateway = ScriptedVPNGateway()
    network.host("10.2.0.1").listenUDP(5351, gateway)
    gateway.udpPort = 40001       # a VPN reconnect: another port
    gateway.silent = True         # the tunnel is down
    gateway.refuseWith = 2        # port forwarding off: result 2
"""

from __future__ import annotations

from ..natpmp._wire import (
    ExternalAddressRequest,
    MapRequest,
    MapResponse,
    Protocol,
    Request,
)
from ._gateway import ScriptedGateway

__all__ = ["ScriptedVPNGateway"]


class ScriptedVPNGateway(ScriptedGateway):
    """
    A L{ScriptedGateway} answering as a VPN gateway.

    @ivar udpPort: the public port it grants.
    @ivar tcpPort: the public port it grants TCP, if not L{udpPort}.
    @ivar lease: the lifetime it grants, whatever is asked.
    @ivar echo: the internal port its replies carry (0, as ProtonVPN's do;
        L{None}: the port granted, as in a 2023 capture).
    @ivar silent: it answers nothing.
    @ivar refuseWith: a result code it answers every map request with
        (2: port forwarding is off), or L{None}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPort = 38534
        self.tcpPort: int | None = None
        self.lease = 60
        self.echo: int | None = 0
        self.silent = False
        self.refuseWith: int | None = None
        self.reply = self.forward

    def forward(self, request: Request) -> list[bytes]:
        """
        The VPN gateway's answer to C{request}.
        """
        if self.silent:
            return []
        if isinstance(request, ExternalAddressRequest) or request.lifetime == 0:
            return self.answer(request)
        if self.refuseWith is not None:
            return [
                MapResponse(
                    request.transport, self.refuseWith, self.epoch, 0, 0, 0
                ).encode()
            ]
        port = self.udpPort
        if request.transport is Protocol.TCP and self.tcpPort is not None:
            port = self.tcpPort
        echo = port if self.echo is None else self.echo
        return [
            MapResponse(
                request.transport, 0, self.epoch, echo, port, self.lease
            ).encode()
        ]

    def mapRequests(self, transport: Protocol | None = None) -> list[MapRequest]:
        """
        The map requests received, of C{transport} if given, in order.
        """
        return [
            r
            for r, _ in self.requests
            if isinstance(r, MapRequest)
            and (transport is None or r.transport is transport)
        ]
