# -*- test-case-name: tests.server.test_committer -*-
"""
What a L{Committer <twisted_natpmp.server._committer.Committer>} holds:
the requests waiting for their batch, the batches, how new requests are
taken, and its limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .._types import IPAddress
from ._entries import GatewayMapping, Key
from .backends._batching import ForwardChange

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "RETRY_DELAY",
    "Batch",
    "Mode",
    "Request",
    "Respond",
    "Send",
    "State",
    "changesNothing",
]

Send = Callable[[bytes], object]
Respond = Callable[[bytes, IPAddress], "bytes | None"]
State = tuple[GatewayMapping, "bytes | None"]

#: Seconds before removals left by a failed batch are sent again, when no
#: request comes first.
RETRY_DELAY = 1.0

#: The most requests that wait behind a failed batch's (isolating).
DEFAULT_MAX_QUEUED = 1024


def changesNothing(packet: bytes) -> bool:
    """
    Whether C{packet} asks for nothing that changes state, by its kind
    alone: a NAT-PMP external address request (version 0, opcode 0) or a
    PCP ANNOUNCE (version 2, opcode 0).
    """
    return packet[:1] in (b"\x00", b"\x02") and packet[1:2] == b"\x00"


class Mode(Enum):
    """
    How new requests are taken.
    """

    #: At once, their changes coalesced into the open batch.
    NORMAL = "normal"
    #: Behind the requests of a failed batch, one batch each.
    ISOLATING = "isolating"
    #: Not at all: the gateway has stopped.
    STOPPED = "stopped"


@dataclass(slots=True)
class Request:
    """
    A request answered, or to be: its reply waits for its batch.
    """

    packet: bytes
    client: IPAddress
    send: Send
    reply: bytes | None = None
    #: Whether it is being answered again (it was admitted once already).
    again: bool = False


@dataclass(slots=True)
class Batch:
    """
    The changes of one batch, and the requests whose replies wait for it.
    """

    changes: list[ForwardChange] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: The table keys the requests changed, to put back on failure.
    keys: set[Key] = field(default_factory=set)
    #: Their states as sent, to keep as committed on success.
    after: dict[Key, State | None] = field(default_factory=dict)
