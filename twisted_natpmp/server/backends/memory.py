# -*- test-case-name: tests.server.test_backends -*-
"""
Backends that make a gateway's mappings real (L{IMappingBackend}).

L{MemoryBackend} keeps them in a dictionary: enough for a test gateway, for
trying a client without a router, and as the model for a backend that
writes real forwarding rules.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from zope.interface import implementer

from ..._types import IPAddress, Transport
from ...errors import NotAuthorizedError, OutOfResourcesError
from ...interfaces import IMappingBackend
from ._filters import IFilteringBackend, RemoteFilter
from ._pinhole import IPinholeBackend


@implementer(IMappingBackend, IPinholeBackend, IFilteringBackend)
class MemoryBackend:
    """
    Forwarding "rules" and IPv6 pinholes kept in memory.

    @ivar forwards: (transport, external port) -> (internal address,
        internal port) for every mapping in force.
    @ivar pinholes: (IPv6 address, transport, port) of every pinhole in
        force (L{IPinholeBackend}).
    @ivar filters: (internal address, transport, internal port) -> the
        remote peers allowed, for every filtered mapping
        (L{IFilteringBackend}); see L{permits}.
    @ivar capacity: the most mappings (forwards and pinholes) it accepts
        (L{None}: no limit); beyond it L{addMapping} and L{addPinhole} raise
        L{OutOfResourcesError}.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.forwards: dict[tuple[Transport, int], tuple[IPAddress, int]] = {}
        self.pinholes: set[tuple[IPv6Address, Transport, int]] = set()
        self.filters: dict[
            tuple[IPAddress, Transport, int], tuple[RemoteFilter, ...]
        ] = {}
        self.capacity = capacity

    def addMapping(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Record a forward.

        @raise NotAuthorizedError: the external port already forwards
            somewhere (the table never asks for that).
        @raise OutOfResourcesError: L{capacity} is reached.
        """
        if (transport, externalPort) in self.forwards:
            raise NotAuthorizedError()
        self._checkCapacity()
        self.forwards[(transport, externalPort)] = (internalAddress, internalPort)

    def _checkCapacity(self) -> None:
        held = len(self.forwards) + len(self.pinholes)
        if self.capacity is not None and held >= self.capacity:
            raise OutOfResourcesError()

    def addPinhole(self, address: IPv6Address, transport: Transport, port: int) -> None:
        """
        Record a pinhole.

        @raise OutOfResourcesError: L{capacity} is reached.
        """
        if (address, transport, port) not in self.pinholes:
            self._checkCapacity()
            self.pinholes.add((address, transport, port))

    def removePinhole(
        self, address: IPv6Address, transport: Transport, port: int
    ) -> None:
        """
        Forget a pinhole; forgetting one that is not there does nothing.
        """
        self.pinholes.discard((address, transport, port))
        self.filters.pop((address, transport, port), None)

    def setFilters(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
        filters: tuple[RemoteFilter, ...],
    ) -> None:
        """
        Record which remote peers may use a mapping (none: all).
        """
        key = (internalAddress, transport, internalPort)
        if filters:
            self.filters[key] = filters
        else:
            self.filters.pop(key, None)

    def permits(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        remote: IPAddress,
        remotePort: int,
    ) -> bool:
        """
        Whether traffic from C{remote:remotePort} would be let through to
        C{internalAddress:internalPort}, as a filtering firewall would
        judge it (the mapping itself is not checked).
        """
        filters = self.filters.get((internalAddress, transport, internalPort))
        return filters is None or any(f.permits(remote, remotePort) for f in filters)

    def removeMapping(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Forget a forward; forgetting one that is not there does nothing.
        """
        if self.forwards.get((transport, externalPort)) == (
            internalAddress,
            internalPort,
        ):
            del self.forwards[(transport, externalPort)]
            self.filters.pop((internalAddress, transport, internalPort), None)
