# -*- test-case-name: tests.server.test_shared -*-
"""
L{IPinholeBackend}: what a backend provides, beside
L{twisted_natpmp.interfaces.IMappingBackend}, to open IPv6 pinholes.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from zope.interface import Interface

from ..._types import Transport

__all__ = ["IPinholeBackend"]


class IPinholeBackend(Interface):
    """
    A backend that can let inbound traffic through to an IPv6 host's own
    address and port (a pinhole: RFC 6887 s11.3, external = internal).
    Pinholes are apart from port forwards: every host has its own port
    space, and none takes a port from the external IPv4 address.

    Methods may raise L{twisted_natpmp.errors.GatewayError} subclasses, as
    L{twisted_natpmp.interfaces.IMappingBackend}'s do.
    """

    def addPinhole(address: IPv6Address, transport: Transport, port: int) -> None:
        """
        Let inbound C{transport} traffic reach C{[address]:port}.
        """

    def removePinhole(address: IPv6Address, transport: Transport, port: int) -> None:
        """
        Stop letting it through; removing one that is not there does
        nothing.
        """
