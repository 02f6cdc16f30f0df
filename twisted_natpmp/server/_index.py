# -*- test-case-name: tests.server.test_table -*-
"""
Where a gateway's mapping table (L{twisted_natpmp.server.table}) keeps its
mappings and finds them: by key, by external port and by client in
dictionaries, the free external ports in a L{PortPool}, and the deadlines
in a heap.  No policy: the table decides what to store and when.  Pure and
protocol-neutral.
"""

from __future__ import annotations

import heapq

from .._types import IPAddress, Transport
from ..errors import OutOfResourcesError
from ._entries import HIGH_PORT, GatewayMapping, Key, Refused
from ._portpool import PortPool

__all__ = ["MappingIndex", "otherTransport"]


def otherTransport(transport: Transport) -> Transport:
    """
    The other transport: TCP for UDP, UDP for TCP.
    """
    return Transport.TCP if transport is Transport.UDP else Transport.UDP


class MappingIndex:
    """
    The indices of a mapping table, kept consistent by L{_store} and
    L{_forget}; the base of L{MappingTable
    <twisted_natpmp.server.table.MappingTable>}.

    @ivar minPort: the lowest external port granted.
    @ivar maxPort: the highest external port granted.
    """

    def __init__(self, minPort: int, maxPort: int) -> None:
        """
        @param minPort: the lowest external port granted.
        @param maxPort: the highest external port granted.
        """
        self.minPort = minPort
        self.maxPort = maxPort
        self._byKey: dict[Key, GatewayMapping] = {}
        self._byExternal: dict[tuple[Transport, int], Key] = {}
        self._byClient: dict[IPAddress, dict[Key, GatewayMapping]] = {}
        self._free = PortPool(minPort, maxPort)
        self._deadlines: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._reserved: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self._byKey)

    def mappingsOf(self, client: IPAddress) -> list[GatewayMapping]:
        """
        Every mapping C{client} holds, in both transports.
        """
        return list(self._byClient.get(client, {}).values())

    def reserve(self, ports: frozenset[int]) -> None:
        """
        Never grant C{ports} (in either transport) from now on: the
        router's own (those already mapped stay until they go); the ports
        reserved before and not in C{ports} may be granted again.
        """
        ports = frozenset(p for p in ports if self.minPort <= p <= self.maxPort)
        for port in self._reserved - ports:
            if not self._held(port):
                self._free.release(port)
        for port in ports - self._reserved:
            if not self._held(port):
                self._free.take(port)
        self._reserved = ports

    def _held(self, port: int) -> bool:
        return any((transport, port) in self._byExternal for transport in Transport)

    def _sharesPool(self, transport: Transport, port: int) -> bool:
        """
        Whether C{port} leaves the free pool when taken for C{transport}, or
        goes back when given up: nobody holds it for the other transport,
        and it is not reserved.
        """
        companion = (otherTransport(transport), port)
        return companion not in self._byExternal and port not in self._reserved

    def nextExpiry(self) -> float | None:
        """
        When L{expire <twisted_natpmp.server.table.MappingTable.expire>} may
        next have work to do (possibly earlier than any mapping really
        expires), or L{None} for an empty table.
        """
        return self._deadlines[0][0] if self._deadlines else None

    def _available(self, client: IPAddress, transport: Transport, port: int) -> bool:
        """
        Whether C{client} may have C{port} for C{transport}: nobody holds it
        for C{transport}, and nobody else holds it for the other transport
        (the companion port is reserved for its holder, RFC 6886 s3.3).
        """
        if not self.minPort <= port <= self.maxPort or port in self._reserved:
            return False
        if (transport, port) in self._byExternal:
            return False
        companion = self._byExternal.get((otherTransport(transport), port))
        return companion is None or companion[0] == client

    def freePortFrom(
        self, client: IPAddress, transport: Transport, start: int
    ) -> int | None:
        """
        The first external port from C{start} on, wrapping around, that
        C{client} may take for C{transport} (a free one, or its own
        companion port), or L{None} if none is.
        """
        if self._available(client, transport, start):
            return start
        return self._free.nextFree(start)

    def _choosePort(
        self, client: IPAddress, transport: Transport, suggested: int
    ) -> int:
        if self._available(client, transport, suggested):
            return suggested
        start = suggested if self.minPort <= suggested <= self.maxPort else HIGH_PORT
        port = self._free.nextFree(start)
        if port is None:
            raise Refused(OutOfResourcesError(), "no external port is free")
        return port

    def _store(self, mapping: GatewayMapping) -> None:
        key = mapping.key
        if key not in self._byKey:
            external = mapping.externalPort
            if self._sharesPool(mapping.transport, external):
                self._free.take(external)
            self._byExternal[(mapping.transport, external)] = key
        self._byKey[key] = mapping
        self._byClient.setdefault(mapping.client, {})[key] = mapping
        self._sequence += 1
        heapq.heappush(self._deadlines, (mapping.expires, self._sequence, key))
        if len(self._deadlines) > 2 * len(self._byKey) + 64:
            self._rebuildDeadlines()

    def _forget(self, mapping: GatewayMapping) -> None:
        key = mapping.key
        del self._byKey[key]
        external = mapping.externalPort
        del self._byExternal[(mapping.transport, external)]
        if self._sharesPool(mapping.transport, external):
            self._free.release(external)
        held = self._byClient[mapping.client]
        del held[key]
        if not held:
            del self._byClient[mapping.client]

    def _rebuildDeadlines(self) -> None:
        self._deadlines = [
            (mapping.expires, index, key)
            for index, (key, mapping) in enumerate(self._byKey.items())
        ]
        heapq.heapify(self._deadlines)
        self._sequence = len(self._deadlines)
