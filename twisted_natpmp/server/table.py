# -*- test-case-name: tests.server.test_table -*-
"""
A gateway's port mapping table (RFC 6886 s3.3, s3.4, s3.6), protocol-neutral.

It knows transports (C{Transport}), clients (IPv4 or IPv6 addresses) and
ports, never a wire format: a refusal (L{Refused}) carries an error named by
meaning (L{twisted_natpmp.errors.GatewayError} subclasses, without a code),
which each protocol's responder translates into its own result code (for
NAT-PMP, L{twisted_natpmp.natpmp._wire.RESULT_FOR_ERROR}).  A PCP MAP and a
NAT-PMP request for the same (client, transport, internal port) are the
same mapping.

Pure code: no I/O, no reactor, no logging.  Time comes from an injected
monotonic clock (anything with a C{seconds()} method: the gateway passes
one that reads C{time.monotonic}, tests a L{twisted.internet.task.Clock}),
so that a step of the wall clock neither restarts the epoch nor expires
mappings; the mappings are made real by an injected
L{IMappingBackend}; what happens to them is reported to an optional observer
as L{TableEvent}s (the gateway logs those).

Every operation costs O(1) or O(log n) in the number of mappings:

  - mappings are found by key (client, transport, internal port) and by
    external port in dictionaries;
  - free external ports are found in a two-level bitmap (C{PortPool}), so
    a taken suggestion costs a few word operations, never a scan;
  - expiry pops a heap of deadlines; renewals and deletions leave stale heap
    entries behind that are skipped when they surface, and the heap is
    rebuilt when stale entries outnumber live ones, so its size stays
    proportional to the table's.
"""

from __future__ import annotations

import heapq

from .._types import IPAddress, Transport
from ..errors import OutOfResourcesError
from ..interfaces import IMappingBackend
from ._entries import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_LIFETIME,
    DEFAULT_MIN_PORT,
    EPOCH_MODULUS,
    HIGH_PORT,
    EventKind,
    GatewayMapping,
    Key,
    MonotonicClock,
    Observer,
    Refused,
    TableEvent,
    backendRefused,
    checkLimits,
    mappings,
)
from ._index import MappingIndex, otherTransport

__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_MAX_MAPPINGS",
    "DEFAULT_MAX_MAPPINGS_PER_CLIENT",
    "DEFAULT_MAX_PORT",
    "DEFAULT_MIN_LIFETIME",
    "DEFAULT_MIN_PORT",
    "HIGH_PORT",
    "EventKind",
    "GatewayMapping",
    "Key",
    "MappingTable",
    "MonotonicClock",
    "Observer",
    "Refused",
    "TableEvent",
    "checkLimits",
]

_UNLIMITED = 2**63


def _ignore(event: TableEvent) -> None:
    pass


class MappingTable(MappingIndex):
    """
    The mappings of one gateway, with their expiry, limits and epoch.

    Its indices, and the lookups by client and by deadline, are those of
    L{MappingIndex}; here are its policy and its changes.  Mutating methods
    first expire whatever is due, so an expired mapping never blocks a
    request even when nobody called L{expire}.

    Besides its limits, a client may not take a mapping while it already
    holds as many as the gateway has left (mappings below L{maxMappings},
    and free external ports if the mapping needs a new one), so that many
    clients, or many forged source addresses asking in turn, cannot take
    the last ports from a client that holds few: each ends with about an
    equal share, and a client that holds none is served as long as anything
    is left at all.

    @ivar minPort: the lowest external port granted.
    @ivar maxPort: the highest external port granted.
    @ivar maxLifetime: the longest lifetime granted, in seconds.
    @ivar maxMappingsPerClient: how many mappings one client may hold.
    @ivar maxMappings: how many mappings the table holds at most (L{None}:
        as many as the port range allows).
    """

    def __init__(
        self,
        clock: MonotonicClock,
        backend: IMappingBackend,
        *,
        minPort: int = DEFAULT_MIN_PORT,
        maxPort: int = DEFAULT_MAX_PORT,
        maxLifetime: int = DEFAULT_MAX_LIFETIME,
        maxMappingsPerClient: int = DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        maxMappings: int | None = None,
        observer: Observer = _ignore,
    ) -> None:
        """
        @param clock: the monotonic time of the epoch and of expiry.
        @raise ValueError: a limit is out of range (see L{checkLimits}).
        """
        checkLimits(minPort, maxPort, maxLifetime, maxMappingsPerClient, maxMappings)
        self._clock = clock
        self._backend = backend
        self._observer = observer
        super().__init__(minPort, maxPort)
        self.maxLifetime = maxLifetime
        self.maxMappingsPerClient = maxMappingsPerClient
        self.maxMappings = maxMappings
        self._started = clock.seconds()

    # Reading

    def epoch(self) -> int:
        """
        Whole seconds since this table was created or last reset: the
        Seconds Since Start of Epoch of RFC 6886 s3.6 (modulo 2**32).
        """
        elapsed = int(self._clock.seconds() - self._started)
        return max(elapsed, 0) % EPOCH_MODULUS

    def get(
        self, client: IPAddress, transport: Transport, internalPort: int
    ) -> GatewayMapping | None:
        """
        The live mapping for C{client}'s C{internalPort}, if any.
        """
        mapping = self._byKey.get((client, transport, internalPort))
        if mapping is None or mapping.expires <= self._clock.seconds():
            return None
        return mapping

    # Changing

    def map(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
    ) -> GatewayMapping:
        """
        Create or renew C{client}'s mapping of C{internalPort} (RFC 6886
        s3.3).

        A renewal keeps its external port whatever is suggested.  A new
        mapping gets the suggested port when it is free (the same client's
        mapping of the other transport on it does not count: that is the
        companion port reserved for it), otherwise the next free port above
        it, wrapping around; a suggestion of 0 or one outside the range
        starts the search at L{HIGH_PORT}.  The lifetime granted is at most
        the one requested and at most L{maxLifetime}.

        @param lifetime: requested seconds, at least 1.
        @raise Refused: with result 4 (Out of Resources) when the client is
            at its limit or no port is free; with the backend's result code
            when it raised a L{GatewayError}, or 3 (Network Failure) when it
            raised anything else (the C{__cause__}).
        @raise ValueError: C{internalPort} or C{lifetime} is 0.
        """
        if not 1 <= internalPort <= 65535:
            raise ValueError(f"cannot map internal port {internalPort}")
        if lifetime < 1:
            raise ValueError(f"cannot map for {lifetime} s; delete instead")
        self.expire()
        now = self._clock.seconds()
        granted = min(lifetime, self.maxLifetime)
        key = (client, transport, internalPort)
        old = self._byKey.get(key)
        if old is not None:
            renewed = GatewayMapping(
                client,
                transport,
                internalPort,
                old.externalPort,
                granted,
                now + granted,
            )
            self._store(renewed)
            self._observer(TableEvent(EventKind.RENEWED, renewed))
            return renewed
        held = len(self._byClient.get(client, ()))
        if held >= self.maxMappingsPerClient:
            raise Refused(
                OutOfResourcesError(),
                f"client at its limit of {mappings(self.maxMappingsPerClient)}",
            )
        left = _UNLIMITED
        if self.maxMappings is not None:
            left = self.maxMappings - len(self._byKey)
            if left <= 0:
                raise Refused(
                    OutOfResourcesError(),
                    f"gateway at its limit of {mappings(self.maxMappings)}",
                )
        externalPort = self._choosePort(client, transport, suggestedExternalPort)
        if (otherTransport(transport), externalPort) not in self._byExternal:
            left = min(left, self._free.free)  # it takes a free port
        if held >= left:
            raise Refused(
                OutOfResourcesError(),
                "client holds as many mappings as the gateway has left",
            )
        try:
            self._backend.addMapping(client, transport, internalPort, externalPort)
        except Exception as e:
            raise backendRefused(e, "add the mapping") from e
        created = GatewayMapping(
            client, transport, internalPort, externalPort, granted, now + granted
        )
        self._store(created)
        self._observer(TableEvent(EventKind.CREATED, created))
        return created

    def delete(
        self, client: IPAddress, transport: Transport, internalPort: int
    ) -> GatewayMapping | None:
        """
        Delete C{client}'s mapping of C{internalPort} (RFC 6886 s3.4).

        @return: the mapping deleted, or L{None} if there was none (which
            the RFC counts as success).
        @raise Refused: the backend could not remove it; the mapping is
            kept.
        """
        self.expire()
        mapping = self._byKey.get((client, transport, internalPort))
        if mapping is None:
            return None
        self._removeForwarding(mapping, keepOnFailure=True)
        self._forget(mapping)
        self._observer(TableEvent(EventKind.DELETED, mapping))
        return mapping

    def deleteAll(
        self, client: IPAddress, transport: Transport
    ) -> tuple[list[GatewayMapping], Refused | None]:
        """
        Delete all of C{client}'s mappings of C{transport}, and only of that
        transport (RFC 6886 s3.4).

        @return: the mappings deleted, and the error for the first one that
            could not be (those are kept), or L{None}.
        """
        self.expire()
        deleted = []
        firstError: Refused | None = None
        for mapping in self.mappingsOf(client):
            if mapping.transport is not transport:
                continue
            try:
                self._removeForwarding(mapping, keepOnFailure=True)
            except Refused as e:
                firstError = firstError or e
                continue
            self._forget(mapping)
            self._observer(TableEvent(EventKind.DELETED, mapping))
            deleted.append(mapping)
        return deleted, firstError

    def expire(self) -> list[GatewayMapping]:
        """
        Remove every mapping whose lifetime has ended (RFC 6886 s3.3).

        @return: the mappings removed.
        """
        now = self._clock.seconds()
        expired = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, key = heapq.heappop(deadlines)
            mapping = self._byKey.get(key)
            if mapping is None or mapping.expires > now:
                continue  # deleted or renewed since this deadline was set
            self._removeForwarding(mapping, keepOnFailure=False)
            self._forget(mapping)
            self._observer(TableEvent(EventKind.EXPIRED, mapping))
            expired.append(mapping)
        return expired

    def reset(self) -> list[GatewayMapping]:
        """
        Remove every mapping and start a new epoch, as a gateway that lost
        its state would (RFC 6886 s3.6).

        @return: the mappings removed.
        """
        removed = list(self._byKey.values())
        for mapping in removed:
            self._removeForwarding(mapping, keepOnFailure=False)
            self._forget(mapping)
            self._observer(TableEvent(EventKind.CLEARED, mapping))
        self._deadlines.clear()
        self._started = self._clock.seconds()
        return removed

    # Internals

    def _removeForwarding(self, mapping: GatewayMapping, keepOnFailure: bool) -> None:
        """
        Ask the backend to remove C{mapping}.  On failure, report it, and
        raise L{Refused} if C{keepOnFailure}.
        """
        try:
            self._backend.removeMapping(
                mapping.client,
                mapping.transport,
                mapping.internalPort,
                mapping.externalPort,
            )
        except Exception as e:
            self._observer(TableEvent(EventKind.REMOVE_FAILED, mapping, e))
            if keepOnFailure:
                raise backendRefused(e, "remove the mapping") from e
