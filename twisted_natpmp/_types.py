"""
Plain values handed across the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from ._wire import Protocol


@dataclass(frozen=True, slots=True)
class Mapping:
    """
    A port mapping the gateway granted.

    @ivar protocol: the protocol mapped.
    @ivar internalPort: the port on this host.
    @ivar externalPort: the port the gateway opened on its external address.
    @ivar lifetime: the lifetime the gateway granted, in seconds (which may
        differ from the one requested: renew by this one).
    @ivar epoch: the gateway's seconds-since-start-of-epoch in the reply.
    @ivar externalAddress: the gateway's external address, where known.
    """

    protocol: Protocol
    internalPort: int
    externalPort: int
    lifetime: int
    epoch: int
    externalAddress: IPv4Address | None = None
