"""
Protocol-neutral values handed across the public API.

Nothing here knows a wire format: each codec (L{twisted_natpmp.natpmp},
L{twisted_natpmp.pcp}) translates these to and from its own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "DELETION_TIMEOUTS",
    "Announcement",
    "AnnouncementKind",
    "IPAddress",
    "Mapping",
    "ProtocolName",
    "Transport",
]

#: An IPv4 or an IPv6 address.
IPAddress = IPv4Address | IPv6Address

#: The waits after each send of a batch of deletions (C{deleteMappings}, as
#: at stop), in either protocol: RFC 6886 s3.1, s3.4 retransmit a deletion
#: like any request (250 ms, doubling) but let a client give up sooner,
#: after one send.  So each is sent at 0, 0.25, 0.75, 1.75 and 3.75 s until
#: answered and given up at 4.75 s, within the 5 s a stopping service has.
DELETION_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 1.0)


class Transport(Enum):
    """
    A transport whose ports can be mapped.  The values are names, not wire
    numbers: NAT-PMP calls UDP 1 and TCP 2 (RFC 6886 s3.3), PCP uses the
    IANA protocol numbers 17 and 6 (RFC 6887 s11.1); each codec translates.
    """

    UDP = "udp"
    TCP = "tcp"

    @property
    def label(self) -> str:
        """
        The lower-case name, as used on command lines: C{"udp"} or C{"tcp"}.
        """
        return self.value

    @classmethod
    def fromLabel(cls, label: str) -> Transport:
        """
        The transport named C{label}, in any case.

        @raise ValueError: C{label} names no transport.
        """
        try:
            return cls(label.lower())
        except ValueError:
            raise ValueError(f"{label!r} is not udp or tcp") from None


class ProtocolName(Enum):
    """
    The port-mapping protocols spoken, as logs and JSON output name them.
    """

    NATPMP = "natpmp"
    PCP = "pcp"

    @property
    def display(self) -> str:
        """
        The name for a person: C{"NAT-PMP"} or C{"PCP"}.
        """
        return "NAT-PMP" if self is ProtocolName.NATPMP else "PCP"


@dataclass(frozen=True, slots=True)
class Mapping:
    """
    A port mapping the gateway granted.

    @ivar transport: the transport mapped.
    @ivar internalPort: the port on this host.
    @ivar externalPort: the port the gateway opened on its external address.
    @ivar lifetime: the lifetime the gateway granted, in seconds (which may
        differ from the one requested).
    @ivar epoch: the gateway's epoch (seconds since start of epoch) in the
        reply.
    @ivar externalAddress: the external address, IPv4 or IPv6, where known
        (NAT-PMP's map response carries none; PCP's always does).
    @ivar renewAfter: seconds after the grant at which the protocol has the
        mapping renewed (RFC 6886 s3.3: half the lifetime; RFC 6887
        s11.2.1: a random point in [1/2, 5/8]); both reckon with the
        lifetime granted or, if the gateway granted more, the one asked
        for.  L{None} lets the caller choose (half of C{lifetime}).
    @ivar protocolName: which protocol made the mapping (delete it with the
        same one).
    """

    transport: Transport
    internalPort: int
    externalPort: int
    lifetime: int
    epoch: int
    externalAddress: IPAddress | None = None
    renewAfter: float | None = None
    protocolName: ProtocolName = ProtocolName.NATPMP


class AnnouncementKind(Enum):
    """
    Which protocol an announcement came in.
    """

    NATPMP = "NAT-PMP"
    PCP = "PCP"


@dataclass(frozen=True, slots=True)
class Announcement:
    """
    An unsolicited announcement from a gateway (RFC 6886 s3.2.1, RFC 6887
    s14.1), parsed by the protocol's codec.

    @ivar kind: NAT-PMP or PCP ANNOUNCE.
    @ivar epoch: the gateway's epoch (seconds since start of epoch).
    @ivar externalAddress: the announced external address (NAT-PMP only).
    @ivar source: the (host, port) it came from.
    """

    kind: AnnouncementKind
    epoch: int
    externalAddress: IPAddress | None
    source: tuple[str, int]
