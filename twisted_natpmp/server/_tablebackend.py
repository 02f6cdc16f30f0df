# -*- test-case-name: tests.server.test_committer -*-
"""
What the table of a gateway over a batching backend
(L{twisted_natpmp.server.backends._batching.IBatchingBackend}) calls in
place of a backend: nothing happens at once; the
L{Committer <twisted_natpmp.server._committer.Committer>} takes the table's
events instead.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from zope.interface import alsoProvides, implementer

from .._types import IPAddress, Transport
from ..errors import UnsupportedOptionError
from ..interfaces import IMappingBackend
from .backends._batching import (
    IBatchingBackend,
    IBatchingFilteringBackend,
    IBatchingPinholeBackend,
)
from .backends._filters import IFilteringBackend, RemoteFilter
from .backends._pinhole import IPinholeBackend

if TYPE_CHECKING:
    from ._committer import Committer

__all__ = ["FilteringTableBackend", "TableBackend", "tableBackendFor"]


@implementer(IMappingBackend)
class TableBackend:
    """
    What the table of a gateway over a batching backend calls: nothing
    happens at once; the L{Committer
    <twisted_natpmp.server._committer.Committer>} takes the table's events
    instead.
    """

    def _nothing(self, *arguments: object) -> None:
        pass

    # Pinholes too, when it says it provides IPinholeBackend (see
    # tableBackendFor).
    addMapping = removeMapping = addPinhole = removePinhole = _nothing


@implementer(IFilteringBackend)
class FilteringTableBackend(TableBackend):
    """
    A L{TableBackend} for a batching backend that filters too
    (L{IBatchingFilteringBackend}): a change of filters goes to the
    L{Committer <twisted_natpmp.server._committer.Committer>}, for port
    forwards and pinholes alike.
    """

    def __init__(self, committer: Callable[[], Committer | None]) -> None:
        self._committer = committer

    def setFilters(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
        filters: tuple[RemoteFilter, ...],
    ) -> None:
        """
        @raise UnsupportedOptionError: a filter of peers of the other family
            (IPv6 peers for an IPv4 forward, IPv4 peers for a pinhole).
        """
        family = (
            IPv6Network if isinstance(internalAddress, IPv6Address) else IPv4Network
        )
        if any(not isinstance(f.network, family) for f in filters):
            raise UnsupportedOptionError(meaning="FILTER peers of another family")
        committer = self._committer()
        if committer is not None:
            committer.observeFilters(internalAddress, transport, internalPort, filters)


def tableBackendFor(
    backend: IBatchingBackend, committer: Callable[[], Committer | None]
) -> IMappingBackend:
    """
    What the table of a gateway over C{backend} calls.

    @param committer: the gateway's L{Committer
        <twisted_natpmp.server._committer.Committer>}, once made.
    """
    table = (
        FilteringTableBackend(committer)
        if IBatchingFilteringBackend.providedBy(backend)
        else TableBackend()
    )
    if IBatchingPinholeBackend.providedBy(backend):
        alsoProvides(table, IPinholeBackend)
    return table
