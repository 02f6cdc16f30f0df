"""
A NAT-PMP gateway's port mapping table (RFC 6886 s3.3, s3.4, s3.6).

Pure code: no I/O, no reactor, no logging.  Time comes from an injected
monotonic clock (anything with a C{seconds()} method: the gateway passes
one that reads C{time.monotonic}, tests a L{twisted.internet.task.Clock}),
so that a step of the wall clock neither restarts the epoch nor expires
mappings; the mappings are made real by an injected
L{IMappingBackend}; what happens to them is reported to an optional observer
as L{TableEvent}s (the gateway logs those).

Every operation costs O(1) or O(log n) in the number of mappings:

  - mappings are found by key (client, protocol, internal port) and by
    external port in dictionaries;
  - free external ports are found in a two-level bitmap (L{_PortPool}), so
    a taken suggestion costs a few word operations, never a scan;
  - expiry pops a heap of deadlines; renewals and deletions leave stale heap
    entries behind that are skipped when they surface, and the heap is
    rebuilt when stale entries outnumber live ones, so its size stays
    proportional to the table's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address
from typing import Protocol as _Protocol

from ._wire import Protocol, ResultCode
from .errors import GatewayError
from .interfaces import IMappingBackend

#: The lowest external port handed out by default: ports below it are
#: privileged on the hosts behind the gateway too.
DEFAULT_MIN_PORT = 1024
#: The highest external port.
DEFAULT_MAX_PORT = 65535
#: The longest lifetime granted by default, in seconds (a day, the maximum
#: RFC 6887 s15 suggests for PCP).
DEFAULT_MAX_LIFETIME = 86400
#: How many mappings (TCP and UDP together) one client may hold by default.
DEFAULT_MAX_MAPPINGS_PER_CLIENT = 512
#: How many mappings the whole gateway holds at most, as C{twistd
#: natpmp-gateway} runs it by default (a quarter of the default port range,
#: or 32 clients at their limit); the Python classes have no such limit
#: unless given one.
DEFAULT_MAX_MAPPINGS = 16384
#: Where the search for an "anonymous" port starts when a client suggests
#: external port 0 (RFC 6886 s3.3: "a high-numbered port of its choosing"):
#: the IANA dynamic range.
HIGH_PORT = 49152

_EPOCH_MODULUS = 2**32
_UNLIMITED = 2**63
_BLOCK_BITS = 64
_BLOCK_FULL = (1 << _BLOCK_BITS) - 1

Key = tuple[IPv4Address, Protocol, int]


class MonotonicClock(_Protocol):
    """
    A time source for elapsed-time judgements: seconds that never go
    backwards and do not jump when the wall clock is set.
    """

    def seconds(self) -> float:
        """
        The current time, in seconds from an arbitrary start.
        """


def _lowestBit(value: int) -> int:
    """
    The index of the lowest set bit of a positive integer.
    """
    return (value & -value).bit_length() - 1


class _PortPool:
    """
    The external port numbers in a range that no mapping holds, in either
    protocol.

    Ports are bits in blocks of 64; a second bitmap says which blocks still
    hold a free port.  Taking, releasing and finding the next free port are
    a handful of integer operations whatever the size of the table.

    @ivar free: how many ports are free.
    """

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high
        size = high - low + 1
        self.free = size
        blocks, tail = divmod(size, _BLOCK_BITS)
        self._blocks = [_BLOCK_FULL] * blocks
        if tail:
            self._blocks.append((1 << tail) - 1)
        self._nonEmpty = (1 << len(self._blocks)) - 1

    def __contains__(self, port: int) -> bool:
        if not self.low <= port <= self.high:
            return False
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        return bool(self._blocks[block] >> bit & 1)

    def take(self, port: int) -> None:
        """
        Mark the free C{port} taken.
        """
        self.free -= 1
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        self._blocks[block] &= ~(1 << bit)
        if not self._blocks[block]:
            self._nonEmpty &= ~(1 << block)

    def release(self, port: int) -> None:
        """
        Mark the taken C{port} free.
        """
        self.free += 1
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        self._blocks[block] |= 1 << bit
        self._nonEmpty |= 1 << block

    def nextFree(self, start: int) -> int | None:
        """
        The first free port at or above C{start}, wrapping around to the
        bottom of the range; L{None} when every port is taken.
        """
        if not self._nonEmpty:
            return None
        start = min(max(start, self.low), self.high)
        block, bit = divmod(start - self.low, _BLOCK_BITS)
        here = self._blocks[block] >> bit << bit
        if here:
            return self.low + block * _BLOCK_BITS + _lowestBit(here)
        later = self._nonEmpty >> (block + 1)
        if later:
            block += 1 + _lowestBit(later)
        else:
            block = _lowestBit(self._nonEmpty)
        return self.low + block * _BLOCK_BITS + _lowestBit(self._blocks[block])


@dataclass(frozen=True, slots=True)
class GatewayMapping:
    """
    One mapping held by a gateway.

    @ivar client: the internal address the mapping forwards to (always the
        requesting client's source address, RFC 6886 s3.3).
    @ivar protocol: the protocol mapped.
    @ivar internalPort: the port on the client.
    @ivar externalPort: the port on the gateway's external address.
    @ivar lifetime: the lifetime granted by the latest request, in seconds.
    @ivar expires: when the mapping expires, in the clock's seconds.
    """

    client: IPv4Address
    protocol: Protocol
    internalPort: int
    externalPort: int
    lifetime: int
    expires: float

    @property
    def key(self) -> Key:
        return (self.client, self.protocol, self.internalPort)


class EventKind(Enum):
    """
    What happened to a mapping.
    """

    CREATED = "created"
    RENEWED = "renewed"
    DELETED = "deleted"
    EXPIRED = "expired"
    #: The backend failed to remove a mapping that the table dropped
    #: anyway (on expiry or clearing), or kept (on a failed deletion).
    REMOVE_FAILED = "remove failed"


@dataclass(frozen=True, slots=True)
class TableEvent:
    """
    A change to the table, for an observer.

    @ivar kind: what happened.
    @ivar mapping: the mapping it happened to.
    @ivar error: for L{EventKind.REMOVE_FAILED}, what the backend raised.
    """

    kind: EventKind
    mapping: GatewayMapping
    error: BaseException | None = None


class Refused(Exception):
    """
    The table refuses a request: the gateway answers with C{resultCode}.

    This is the gateway's own refusal, said in its own words (a client's
    L{GatewayError} says what a gateway answered it).

    @ivar resultCode: the RFC 6886 s3.5 result code to answer with.
    @ivar reason: why, short and the same for every such refusal (so that
        refusals add up by reason in the log).
    @ivar detail: what varies (a backend's exception), or C{""}.
    """

    def __init__(self, resultCode: int, reason: str, detail: str = "") -> None:
        super().__init__(resultCode, reason, detail)
        self.resultCode = resultCode
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.reason} (result {self.resultCode}){detail}"


def _backendRefused(error: Exception, doing: str) -> Refused:
    """
    The refusal for a backend that raised C{error} while C{doing}: its own
    result code for a L{GatewayError}, 3 (Network Failure) for anything
    else.
    """
    if isinstance(error, GatewayError):
        return Refused(error.resultCode, f"the backend refused to {doing}")
    return Refused(
        ResultCode.NETWORK_FAILURE, f"the backend failed to {doing}", repr(error)
    )


Observer = Callable[[TableEvent], object]


def _ignore(event: TableEvent) -> None:
    pass


def checkLimits(
    minPort: int,
    maxPort: int,
    maxLifetime: int,
    maxMappingsPerClient: int,
    maxMappings: int | None = None,
) -> None:
    """
    Check a table's limits.

    @raise ValueError: the port range is not within 1-65535 or is empty, or
        the maximum lifetime or a mapping count is below 1.
    """
    if maxMappings is not None and maxMappings < 1:
        raise ValueError(f"bad gateway mapping limit {maxMappings}")
    if not 1 <= minPort <= maxPort <= 65535:
        raise ValueError(f"bad external port range {minPort}-{maxPort}")
    if not 1 <= maxLifetime <= _EPOCH_MODULUS - 1:
        raise ValueError(f"bad maximum lifetime {maxLifetime}")
    if maxMappingsPerClient < 1:
        raise ValueError(f"bad mapping limit {maxMappingsPerClient}")


class MappingTable:
    """
    The mappings of one gateway, with their expiry, limits and epoch.

    Mutating methods first expire whatever is due, so an expired mapping
    never blocks a request even when nobody called L{expire}.

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
        self.minPort = minPort
        self.maxPort = maxPort
        self.maxLifetime = maxLifetime
        self.maxMappingsPerClient = maxMappingsPerClient
        self.maxMappings = maxMappings
        self._byKey: dict[Key, GatewayMapping] = {}
        self._byExternal: dict[tuple[Protocol, int], Key] = {}
        self._byClient: dict[IPv4Address, dict[Key, GatewayMapping]] = {}
        self._free = _PortPool(minPort, maxPort)
        self._deadlines: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._started = clock.seconds()

    # Reading

    def __len__(self) -> int:
        return len(self._byKey)

    def epoch(self) -> int:
        """
        Whole seconds since this table was created or last reset: the
        Seconds Since Start of Epoch of RFC 6886 s3.6 (modulo 2**32).
        """
        elapsed = int(self._clock.seconds() - self._started)
        return max(elapsed, 0) % _EPOCH_MODULUS

    def get(
        self, client: IPv4Address, protocol: Protocol, internalPort: int
    ) -> GatewayMapping | None:
        """
        The live mapping for C{client}'s C{internalPort}, if any.
        """
        mapping = self._byKey.get((client, protocol, internalPort))
        if mapping is None or mapping.expires <= self._clock.seconds():
            return None
        return mapping

    def mappingsOf(self, client: IPv4Address) -> list[GatewayMapping]:
        """
        Every mapping C{client} holds, in both protocols.
        """
        return list(self._byClient.get(client, {}).values())

    def nextExpiry(self) -> float | None:
        """
        When L{expire} may next have work to do (possibly earlier than any
        mapping really expires), or L{None} for an empty table.
        """
        return self._deadlines[0][0] if self._deadlines else None

    # Changing

    def map(
        self,
        client: IPv4Address,
        protocol: Protocol,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
    ) -> GatewayMapping:
        """
        Create or renew C{client}'s mapping of C{internalPort} (RFC 6886
        s3.3).

        A renewal keeps its external port whatever is suggested.  A new
        mapping gets the suggested port when it is free (the same client's
        mapping of the other protocol on it does not count: that is the
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
        key = (client, protocol, internalPort)
        old = self._byKey.get(key)
        if old is not None:
            renewed = GatewayMapping(
                client, protocol, internalPort, old.externalPort, granted, now + granted
            )
            self._store(renewed)
            self._observer(TableEvent(EventKind.RENEWED, renewed))
            return renewed
        held = len(self._byClient.get(client, ()))
        if held >= self.maxMappingsPerClient:
            raise Refused(
                ResultCode.OUT_OF_RESOURCES,
                f"client at its limit of {self.maxMappingsPerClient} mappings",
            )
        left = _UNLIMITED
        if self.maxMappings is not None:
            left = self.maxMappings - len(self._byKey)
            if left <= 0:
                raise Refused(
                    ResultCode.OUT_OF_RESOURCES,
                    f"gateway at its limit of {self.maxMappings} mappings",
                )
        externalPort = self._choosePort(client, protocol, suggestedExternalPort)
        if (_other(protocol), externalPort) not in self._byExternal:
            left = min(left, self._free.free)  # it takes a free port
        if held >= left:
            raise Refused(
                ResultCode.OUT_OF_RESOURCES,
                "client holds as many mappings as the gateway has left",
            )
        try:
            self._backend.addMapping(client, protocol, internalPort, externalPort)
        except Exception as e:
            raise _backendRefused(e, "add the mapping") from e
        created = GatewayMapping(
            client, protocol, internalPort, externalPort, granted, now + granted
        )
        self._store(created)
        self._observer(TableEvent(EventKind.CREATED, created))
        return created

    def delete(
        self, client: IPv4Address, protocol: Protocol, internalPort: int
    ) -> GatewayMapping | None:
        """
        Delete C{client}'s mapping of C{internalPort} (RFC 6886 s3.4).

        @return: the mapping deleted, or L{None} if there was none (which
            the RFC counts as success).
        @raise Refused: the backend could not remove it; the mapping is
            kept.
        """
        self.expire()
        mapping = self._byKey.get((client, protocol, internalPort))
        if mapping is None:
            return None
        self._removeForwarding(mapping, keepOnFailure=True)
        self._forget(mapping)
        self._observer(TableEvent(EventKind.DELETED, mapping))
        return mapping

    def deleteAll(
        self, client: IPv4Address, protocol: Protocol
    ) -> tuple[list[GatewayMapping], Refused | None]:
        """
        Delete all of C{client}'s mappings of C{protocol}, and only of that
        protocol (RFC 6886 s3.4).

        @return: the mappings deleted, and the error for the first one that
            could not be (those are kept), or L{None}.
        """
        self.expire()
        deleted = []
        firstError: Refused | None = None
        for mapping in self.mappingsOf(client):
            if mapping.protocol is not protocol:
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
            self._observer(TableEvent(EventKind.DELETED, mapping))
        self._deadlines.clear()
        self._started = self._clock.seconds()
        return removed

    # Internals

    def _available(self, client: IPv4Address, protocol: Protocol, port: int) -> bool:
        """
        Whether C{client} may have C{port} for C{protocol}: nobody holds it
        for C{protocol}, and nobody else holds it for the other protocol
        (the companion port is reserved for its holder, RFC 6886 s3.3).
        """
        if not self.minPort <= port <= self.maxPort:
            return False
        if (protocol, port) in self._byExternal:
            return False
        companion = self._byExternal.get((_other(protocol), port))
        return companion is None or companion[0] == client

    def _choosePort(
        self, client: IPv4Address, protocol: Protocol, suggested: int
    ) -> int:
        if self._available(client, protocol, suggested):
            return suggested
        start = suggested if self.minPort <= suggested <= self.maxPort else HIGH_PORT
        port = self._free.nextFree(start)
        if port is None:
            raise Refused(ResultCode.OUT_OF_RESOURCES, "no external port is free")
        return port

    def _store(self, mapping: GatewayMapping) -> None:
        key = mapping.key
        if key not in self._byKey:
            external = mapping.externalPort
            if (_other(mapping.protocol), external) not in self._byExternal:
                self._free.take(external)
            self._byExternal[(mapping.protocol, external)] = key
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
        del self._byExternal[(mapping.protocol, external)]
        if (_other(mapping.protocol), external) not in self._byExternal:
            self._free.release(external)
        held = self._byClient[mapping.client]
        del held[key]
        if not held:
            del self._byClient[mapping.client]

    def _removeForwarding(self, mapping: GatewayMapping, keepOnFailure: bool) -> None:
        """
        Ask the backend to remove C{mapping}.  On failure, report it, and
        raise L{Refused} if C{keepOnFailure}.
        """
        try:
            self._backend.removeMapping(
                mapping.client,
                mapping.protocol,
                mapping.internalPort,
                mapping.externalPort,
            )
        except Exception as e:
            self._observer(TableEvent(EventKind.REMOVE_FAILED, mapping, e))
            if keepOnFailure:
                raise _backendRefused(e, "remove the mapping") from e

    def _rebuildDeadlines(self) -> None:
        self._deadlines = [
            (mapping.expires, index, key)
            for index, (key, mapping) in enumerate(self._byKey.items())
        ]
        heapq.heapify(self._deadlines)
        self._sequence = len(self._deadlines)


def _other(protocol: Protocol) -> Protocol:
    return Protocol.TCP if protocol is Protocol.UDP else Protocol.UDP
