# -*- test-case-name: tests.server.test_dispatch -*-
"""
The C{DatagramProtocol} a gateway listens with on each internal address.
"""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from .gateway import Endpoint, Gateway

__all__ = ["GatewayProtocol", "NATPMPServerProtocol"]

log = Logger()


class GatewayProtocol(DatagramProtocol):
    """
    Serves the requests arriving at one internal address (bind it to that
    address, not to 0.0.0.0, so that only requests addressed to an
    internal address are served, and listen with an
    L{twisted_natpmp.server._internalport.InterfaceCheckingPort}, so that
    only those that arrived on an internal interface are: RFC 6886 s3.3).

    A packet that cannot be answered is dropped and logged; nothing a
    client sends stops the protocol.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def otherInterface(
        self, datagram: bytes, addr: Endpoint, interfaceIndex: int | None
    ) -> None:
        """
        Drop a datagram that arrived on an interface other than the one
        holding this port's address: perhaps the external one, with a
        forged source (RFC 6886 s3.3: the gateway MUST NOT accept requests
        received on its external interface).  It is not answered.
        """
        self.gateway.drops.drop(
            str(addr[0]),
            "not received on an internal interface",
            f"{len(datagram)} bytes on interface index {interfaceIndex}",
        )

    def datagramReceived(self, datagram: bytes, addr: Endpoint) -> None:
        try:
            self.gateway.answer(datagram, addr, lambda reply: self._send(reply, addr))
        except Exception:
            log.failure("failed to answer {size}-byte packet", size=len(datagram))

    def _send(self, reply: bytes, addr: Endpoint) -> None:
        """
        Send C{reply} (now, or once a batching backend has committed the
        request's changes).
        """
        if self.transport is None:
            return
        try:
            self.transport.write(reply, addr)
        except OSError as e:
            self.gateway.drops.drop(str(addr[0]), "reply not sent", str(e))


#: The first name of L{GatewayProtocol}, kept for existing callers.
NATPMPServerProtocol = GatewayProtocol
