# -*- test-case-name: tests.server.test_shared -*-
"""
The one table NAT-PMP and PCP share (RFC 6887 appendix A): the
L{MappingTable}, plus who owns each mapping, PREFER_FAILURE's exact ports,
IPv6 pinholes, and an epoch that can restart without losing the mappings.

Pure and protocol-neutral: an owner is an opaque token (PCP's mapping
nonce, RFC 6887 s11.1), L{None} for a protocol without one (NAT-PMP).

  - A mapping made with an owner may be renewed, changed or deleted only
    with that owner (RFC 6887 s11.3, s15); anything else is refused as not
    authorized, and changes nothing.  So a NAT-PMP request (no owner) cannot
    delete or renew a PCP-made mapping: it gets NAT-PMP's result 2, and the
    mapping stays until its PCP client deletes it or it expires.  miniupnpd
    answers such a delete with success and keeps the rule, which tells the
    client a lie; refusing tells it the truth.
  - A mapping made without an owner (by NAT-PMP) is taken over by the first
    request that names one (a PCP MAP for the same port): a nonce-less
    mapping has no proof of ownership to check, and a client that fell back
    to NAT-PMP and returns to PCP must be able to carry on with its own
    mapping.
  - A deletion of all of a client's mappings (NAT-PMP's internal port 0)
    deletes those it may, keeps those another owner holds, and says so.
  - An IPv6 client's mapping is a pinhole (RFC 6887 s11.3: external =
    internal): its external port is its internal port on its own address,
    outside the IPv4 external port space, made by the same backend when it
    provides L{IPinholeBackend} (refused as not authorized otherwise).
    The plain L{MappingTable} maps IPv6 clients as port forwards; this one,
    the gateway's, does not.
"""

from __future__ import annotations

import heapq
from ipaddress import IPv6Address
from typing import Any

from .._types import IPAddress, Transport
from ..errors import (
    CannotProvideExternalError,
    NotAuthorizedError,
    OutOfResourcesError,
    UnsupportedOptionError,
)
from ._entries import (
    EventKind,
    GatewayMapping,
    Key,
    Refused,
    TableEvent,
    backendRefused,
    mappings,
)
from .backends._filters import IFilteringBackend, RemoteFilter
from .backends._pinhole import IPinholeBackend
from .table import MappingTable

__all__ = ["SharedTable"]


def isPinhole(client: IPAddress) -> bool:
    """
    Whether mappings for C{client} are pinholes (an IPv6 host, mapped to
    itself) rather than port forwards from the external IPv4 address.
    """
    return isinstance(client, IPv6Address)


class SharedTable(MappingTable):
    """
    A L{MappingTable} whose mappings have owners, for two protocols at
    once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """
        Take L{MappingTable}'s arguments.
        """
        super().__init__(*args, **kwargs)
        self._owners: dict[Key, bytes] = {}

    def ownerOf(self, mapping: GatewayMapping) -> bytes | None:
        """
        The owner of C{mapping}, or L{None} if it has none.
        """
        return self._owners.get(mapping.key)

    def canFilter(self) -> bool:
        """
        Whether the backend enforces remote-peer filters
        (L{IFilteringBackend}).
        """
        return IFilteringBackend.providedBy(self._backend)

    def setFilters(
        self, mapping: GatewayMapping, filters: tuple[RemoteFilter, ...]
    ) -> None:
        """
        Have the backend let only C{filters}' remote peers use C{mapping}.

        @raise Refused: the backend cannot filter, refused or failed (the
            mapping stays).
        """
        backend = self._backend
        if not IFilteringBackend.providedBy(backend):
            raise Refused(UnsupportedOptionError(), "the backend cannot filter")
        try:
            backend.setFilters(
                mapping.client,
                mapping.transport,
                mapping.internalPort,
                mapping.externalPort,
                filters,
            )
        except Exception as e:
            raise backendRefused(e, "set the filters") from e

    def restore(
        self, states: dict[Key, tuple[GatewayMapping, bytes | None] | None]
    ) -> list[GatewayMapping]:
        """
        Put each key of C{states} back as it was: its mapping with its
        owner, or none; without calling the backend or the observer (a
        batching backend's changes that did not commit, undone).  A mapping
        whose lifetime has ended meanwhile is not put back.

        @return: those mappings that ended meanwhile, whose forwards (and
            flows) the caller still has to remove.
        """
        now = self._clock.seconds()
        for key in states:
            current = self._byKey.get(key)
            if current is not None:
                self._forget(current)
        ended = []
        for key, state in states.items():
            if state is None:
                continue
            if state[0].expires <= now:
                ended.append(state[0])
                continue
            mapping, owner = state
            if isPinhole(mapping.client):
                self._storePinhole(mapping)
            else:
                self._store(mapping)
            if owner is not None:
                self._owners[key] = owner
        return ended

    def newEpoch(self) -> None:
        """
        Start a new epoch and keep the mappings, as when the external
        address changes (RFC 6887 s8.5).
        """
        self._started = self._clock.seconds()

    def _check(
        self, key: Key, owner: bytes | None, doing: str
    ) -> GatewayMapping | None:
        self.expire()
        mapping = self._byKey.get(key)
        if mapping is None:
            return None
        held = self._owners.get(key)
        if held is not None and held != owner:
            # RFC 6887 s11.3, s15: only the mapping's nonce may change it.
            raise Refused(NotAuthorizedError(), f"{doing} a mapping of another owner")
        return mapping

    def map(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
        *,
        owner: bytes | None = None,
        exact: bool = False,
    ) -> GatewayMapping:
        """
        Create or renew a mapping (see L{MappingTable.map}).

        @param owner: who may change or delete it; a mapping without an
            owner is taken over by the first request with one.
        @param exact: refuse with L{CannotProvideExternalError} rather than
            give a new mapping another port than C{suggestedExternalPort}
            (when that is not 0).
        @raise Refused: as L{MappingTable.map}, or not authorized (another
            owner's mapping), or cannot provide (with C{exact}).
        """
        key = (client, transport, internalPort)
        existing = self._check(key, owner, "change")
        if isinstance(client, IPv6Address):
            mapping = self._pinhole(client, transport, internalPort, lifetime, existing)
            if owner is not None:
                self._owners[key] = owner
            return mapping
        if (
            existing is None
            and exact
            and suggestedExternalPort != 0
            and not self._available(client, transport, suggestedExternalPort)
        ):
            raise Refused(CannotProvideExternalError(), "suggested port not free")
        mapping = super().map(
            client, transport, internalPort, suggestedExternalPort, lifetime
        )
        if owner is not None:
            self._owners[key] = owner
        return mapping

    def delete(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        *,
        owner: bytes | None = None,
    ) -> GatewayMapping | None:
        """
        Delete a mapping (see L{MappingTable.delete}), if C{owner} may.

        @raise Refused: another owner holds it, or the backend failed.
        """
        self._check((client, transport, internalPort), owner, "delete")
        return super().delete(client, transport, internalPort)

    def deleteAll(
        self, client: IPAddress, transport: Transport, *, owner: bytes | None = None
    ) -> tuple[list[GatewayMapping], Refused | None]:
        """
        Delete C{client}'s mappings of C{transport} that C{owner} may
        delete; those of other owners are kept.

        @return: the mappings deleted, and the first refusal (another
            owner's mapping, or the backend's failure), or L{None}.
        """
        self.expire()
        deleted: list[GatewayMapping] = []
        firstError: Refused | None = None
        for mapping in self.mappingsOf(client):
            if mapping.transport is not transport:
                continue
            try:
                gone = self.delete(client, transport, mapping.internalPort, owner=owner)
            except Refused as e:
                firstError = firstError or e
                continue
            if gone is not None:
                deleted.append(gone)
        return deleted, firstError

    # Pinholes: apart from the external port space, through IPinholeBackend.

    def _pinhole(
        self,
        client: IPv6Address,
        transport: Transport,
        port: int,
        lifetime: int,
        existing: GatewayMapping | None,
    ) -> GatewayMapping:
        backend = self._backend
        if not IPinholeBackend.providedBy(backend):
            raise Refused(NotAuthorizedError(), "the backend makes no IPv6 pinholes")
        if lifetime < 1:
            raise ValueError(f"cannot map for {lifetime} s; delete instead")
        if existing is None:
            held = len(self._byClient.get(client, ()))
            if held >= self.maxMappingsPerClient:
                raise Refused(
                    OutOfResourcesError(),
                    f"client at its limit of {mappings(self.maxMappingsPerClient)}",
                )
            if self.maxMappings is not None and len(self) >= self.maxMappings:
                raise Refused(
                    OutOfResourcesError(),
                    f"gateway at its limit of {mappings(self.maxMappings)}",
                )
            try:
                backend.addPinhole(client, transport, port)
            except Exception as e:
                raise backendRefused(e, "open the pinhole") from e
        granted = min(lifetime, self.maxLifetime)
        now = self._clock.seconds()
        mapping = GatewayMapping(client, transport, port, port, granted, now + granted)
        self._storePinhole(mapping)
        kind = EventKind.CREATED if existing is None else EventKind.RENEWED
        self._observer(TableEvent(kind, mapping))
        return mapping

    def _removeForwarding(self, mapping: GatewayMapping, keepOnFailure: bool) -> None:
        client = mapping.client
        if not isinstance(client, IPv6Address) or not IPinholeBackend.providedBy(
            self._backend
        ):
            super()._removeForwarding(mapping, keepOnFailure)
            return
        try:
            self._backend.removePinhole(client, mapping.transport, mapping.internalPort)
        except Exception as e:
            self._observer(TableEvent(EventKind.REMOVE_FAILED, mapping, e))
            if keepOnFailure:
                raise backendRefused(e, "close the pinhole") from e

    def _forget(self, mapping: GatewayMapping) -> None:
        self._owners.pop(mapping.key, None)
        if not isPinhole(mapping.client):
            super()._forget(mapping)
            return
        key = mapping.key
        del self._byKey[key]
        held = self._byClient[mapping.client]
        del held[key]
        if not held:
            del self._byClient[mapping.client]

    def _storePinhole(self, mapping: GatewayMapping) -> None:
        # As MappingIndex._store, without the external port.
        key = mapping.key
        self._byKey[key] = mapping
        self._byClient.setdefault(mapping.client, {})[key] = mapping
        self._sequence += 1
        heapq.heappush(self._deadlines, (mapping.expires, self._sequence, key))
        if len(self._deadlines) > 2 * len(self._byKey) + 64:
            self._rebuildDeadlines()
