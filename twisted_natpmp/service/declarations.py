# -*- test-case-name: tests.service.test_declarations -*-
"""
What the mapper service is asked to keep (L{MappingDeclaration}) and what it
tells of each (L{MappingState}).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from .._types import IPAddress, ProtocolName, Transport
from ..discovery import isPrivateAddress
from ..errors import NATPMPError

__all__ = [
    "MappingDeclaration",
    "MappingState",
    "PublicAddressError",
    "behindSecondNAT",
]

#: RFC 6886 s3.3: the recommended lifetime of a port mapping, two hours.
RECOMMENDED_LIFETIME = 7200


def behindSecondNAT(address: IPAddress | None) -> bool:
    """
    Is C{address}, a gateway's external address, a private IPv4 address
    (RFC 1918 or 100.64/10), so that the host is behind a second NAT?
    """
    return isinstance(address, IPv4Address) and isPrivateAddress(address)


class PublicAddressError(NATPMPError):
    """
    This host reaches the gateway from an address that is not private, so
    the service maps nothing (RFC 6886 s3: a client SHOULD use NAT-PMP only
    when its primary IPv4 address is private), unless told to go ahead.

    @ivar address: this host's address towards the gateway.
    """

    def __init__(self, address: IPAddress, gateway: IPAddress) -> None:
        self.address = address
        super().__init__(
            f"this host reaches gateway {gateway} from {address}, which is not a"
            " private address: RFC 6886 s3 has NAT-PMP used only from one"
        )


@dataclass(frozen=True, slots=True)
class MappingDeclaration:
    """
    A port the service is asked to keep mapped.

    @ivar protocol: the transport, UDP or TCP (also known as L{transport}).
    @ivar internalPort: the port on this host.
    @ivar externalPort: the external port to suggest at first (L{None}: the
        internal port; 0: let the gateway choose, RFC 6886 s3.3).  Once
        granted a port, the service suggests that one.
    @ivar lifetime: the lifetime to request, in seconds.
    """

    protocol: Transport
    internalPort: int
    externalPort: int | None = None
    lifetime: int = RECOMMENDED_LIFETIME

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", Transport(self.protocol))
        if not 1 <= self.internalPort <= 0xFFFF:
            raise ValueError(f"internal port {self.internalPort!r} is not 1-65535")
        if self.externalPort is not None and not 0 <= self.externalPort <= 0xFFFF:
            raise ValueError(f"external port {self.externalPort!r} is not 0-65535")
        if not 1 <= self.lifetime <= 0xFFFFFFFF:
            raise ValueError(f"lifetime {self.lifetime!r} is not 1-4294967295 s")

    @property
    def transport(self) -> Transport:
        """
        The transport, UDP or TCP: the protocol-neutral name of L{protocol}.
        """
        return self.protocol

    @property
    def key(self) -> tuple[Transport, int]:
        """
        What identifies a mapping on the gateway: transport and internal port.
        """
        return (self.protocol, self.internalPort)

    def __str__(self) -> str:
        text = f"{self.protocol.label}:{self.internalPort}"
        if self.externalPort is not None:
            text += f":{self.externalPort}"
        return text


@dataclass(frozen=True, slots=True)
class MappingState:
    """
    What the service knows of one declaration, as observers see it.

    @ivar declaration: what was declared.
    @ivar gateway: the gateway asked, if any.
    @ivar externalAddress: the gateway's external address, if known.
    @ivar externalPort: the external port held, or L{None} if no mapping is
        held.
    @ivar lifetime: the mapping's effective lifetime, if one is held: the
        one the gateway granted, or the one asked for if it granted more
        (RFC 6886 s3.3: it SHOULD NOT), as L{expires} reckons.
    @ivar expires: when the mapping expires, in the reactor's seconds.
    @ivar error: why the last request failed, if it did (cleared by the next
        success).  A mapping may still be held until it expires.
    @ivar doubleNAT: the external address is private: the host is behind a
        second NAT and the mapping does not make it reachable from the
        Internet.
    @ivar removed: the declaration was removed, or the service stopped.
    @ivar protocolName: the protocol that made the mapping held, or
        L{None} if none is held.
    """

    declaration: MappingDeclaration
    gateway: IPAddress | None = None
    externalAddress: IPAddress | None = None
    externalPort: int | None = None
    lifetime: int | None = None
    expires: float | None = None
    error: BaseException | None = None
    doubleNAT: bool = False
    removed: bool = False
    protocolName: ProtocolName | None = None

    @property
    def mapped(self) -> bool:
        """
        Is a mapping held?
        """
        return self.externalPort is not None

    def describe(self) -> str:
        """
        One line for a person.
        """
        if self.mapped:
            where = f"{self.externalAddress or '?'}:{self.externalPort}"
            text = f"{self.declaration} -> {where}"
            if self.doubleNAT:
                text += " (behind a second NAT)"
            return text
        if self.removed:
            return f"{self.declaration} removed"
        if self.error is not None:
            return f"{self.declaration} not mapped: {self.error}"
        return f"{self.declaration} not mapped yet"
