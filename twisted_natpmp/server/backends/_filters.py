# -*- test-case-name: tests.server.test_filters -*-
"""
L{IFilteringBackend}: what a backend provides, beside
L{twisted_natpmp.interfaces.IMappingBackend}, to limit a mapping to some
remote peers (PCP's FILTER option, RFC 6887 s13.3), and L{RemoteFilter},
the protocol-neutral value it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from zope.interface import Interface

from ..._types import IPAddress, Transport

__all__ = ["IFilteringBackend", "RemoteFilter"]


@dataclass(frozen=True, slots=True)
class RemoteFilter:
    """
    Remote peers allowed to use a mapping.

    @ivar network: their addresses.
    @ivar port: their port, 0 for any.
    """

    network: IPv4Network | IPv6Network
    port: int = 0

    def permits(self, address: IPAddress, port: int) -> bool:
        """
        Whether a remote peer at C{address}:C{port} matches.
        """
        return address in self.network and self.port in (0, port)  # type: ignore[operator]


class IFilteringBackend(Interface):
    """
    A backend that can let only some remote peers through a mapping.
    """

    def setFilters(
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
        filters: tuple[RemoteFilter, ...],
    ) -> None:
        """
        Let only the remote peers matching one of C{filters} reach the
        mapping (already made) of C{internalAddress:internalPort}; an empty
        C{filters} lets every peer through again.  The mapping's removal
        removes its filters.
        """
