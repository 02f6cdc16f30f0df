# -*- test-case-name: tests.server.test_table -*-
"""
The values of a gateway's mapping table (L{twisted_natpmp.server.table}):
its limits, its mappings, its events and its refusals.  Pure and
protocol-neutral.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .._types import IPAddress, Transport
from ..errors import GatewayError, NetworkFailureError

#: The lowest external port handed out by default: ports below it are
#: privileged on the hosts behind the gateway too.
DEFAULT_MIN_PORT = 1024
#: The highest external port.
DEFAULT_MAX_PORT = 65535
#: The longest lifetime granted by default, in seconds (a day, the maximum
#: RFC 6887 s15 suggests for PCP).
DEFAULT_MAX_LIFETIME = 86400
#: The shortest lifetime granted to PCP by default, in seconds (RFC 6887
#: s15: 120 s); NAT-PMP has no minimum.
DEFAULT_MIN_LIFETIME = 120
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

EPOCH_MODULUS = 2**32

#: A mapping's identity: (client, transport, internal port).
Key = tuple[IPAddress, Transport, int]


class MonotonicClock(Protocol):
    """
    A time source for elapsed-time judgements: seconds that never go
    backwards and do not jump when the wall clock is set.
    """

    def seconds(self) -> float:
        """
        The current time, in seconds from an arbitrary start.
        """


@dataclass(frozen=True, slots=True)
class GatewayMapping:
    """
    One mapping held by a gateway.

    @ivar client: the internal address the mapping forwards to (always the
        requesting client's source address, RFC 6886 s3.3), IPv4 or IPv6.
    @ivar transport: the transport mapped.
    @ivar internalPort: the port on the client.
    @ivar externalPort: the port on the gateway's external address.
    @ivar lifetime: the lifetime granted by the latest request, in seconds.
    @ivar expires: when the mapping expires, in the clock's seconds.
    """

    client: IPAddress
    transport: Transport
    internalPort: int
    externalPort: int
    lifetime: int
    expires: float

    @property
    def key(self) -> Key:
        return (self.client, self.transport, self.internalPort)

    @property
    def protocol(self) -> Transport:
        """
        The first name of L{transport}, kept for existing callers.
        """
        return self.transport


class EventKind(Enum):
    """
    What happened to a mapping.
    """

    CREATED = "created"
    RENEWED = "renewed"
    DELETED = "deleted"
    EXPIRED = "expired"
    #: Removed because the whole table was reset: the gateway stopped or
    #: lost its state (RFC 6886 s3.6), not because its client asked.
    CLEARED = "cleared"
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
    The gateway refuses a request, for a reason named by meaning; each
    protocol's responder answers with its own code for C{error}.

    This is the gateway's own refusal, said in its own words (a client's
    L{GatewayError} says what a gateway answered it).

    @ivar error: what the refusal means: a L{GatewayError} subclass
        (L{OutOfResourcesError}, L{NetworkFailureError},
        L{twisted_natpmp.errors.NotAuthorizedError}, ...), as the backend
        raised it or made here without a code.
    @ivar reason: why, short and the same for every such refusal (so that
        refusals add up by reason in the log).
    @ivar detail: what varies (a backend's exception), or C{""}.
    """

    def __init__(self, error: GatewayError, reason: str, detail: str = "") -> None:
        super().__init__(error, reason, detail)
        self.error = error
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.reason} ({self.error.meaning}){detail}"


def backendRefused(error: Exception, doing: str) -> Refused:
    """
    The refusal for a backend that raised C{error} while C{doing}: its own
    meaning for a L{GatewayError}, a network failure for anything else.
    """
    if isinstance(error, GatewayError):
        return Refused(error, f"the backend refused to {doing}")
    return Refused(NetworkFailureError(), f"the backend failed to {doing}", repr(error))


Observer = Callable[[TableEvent], object]


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
    if not 1 <= maxLifetime <= EPOCH_MODULUS - 1:
        raise ValueError(f"bad maximum lifetime {maxLifetime}")
    if maxMappingsPerClient < 1:
        raise ValueError(f"bad mapping limit {maxMappingsPerClient}")


def mappings(count: int) -> str:
    """
    C{count} mappings, in words: C{"1 mapping"}, C{"512 mappings"}.
    """
    return f"{count} mapping" if count == 1 else f"{count} mappings"
