# -*- test-case-name: tests.natpmp.test_forwarded -*-
"""
The VPN gateway's forwarded port: a NAT-PMP map request with internal port
0 and a lifetime, as ProtonVPN's recipe sends it (C{natpmpc -a 1 0 udp 60
-g 10.2.0.1}), and how its reply is matched and read.

RFC 6886 s3.4 gives internal port 0 a meaning only with lifetime 0: delete
all of the client's mappings of a transport.  VPN gateways grant a public
port of their choosing for internal port 0 with a lifetime (60 s at
ProtonVPN, whatever was asked), and echo internal port 0 or the granted
port in the reply (PROTOCOL.md Part E1).  This is a departure from the RFC
on purpose, taken only when asked for explicitly: only a
L{ForwardedPortRequest} is sent with internal port 0 and a lifetime, and
only its reply is matched whatever internal port it carries (by opcode
and transport).  Every other request keeps the strict s3.3 match, and
internal port 0 with lifetime 0 keeps meaning delete-all.
"""

from __future__ import annotations

from dataclasses import replace

from .._types import Mapping, Transport
from ._wire import MapRequest

__all__ = [
    "FORWARDED_LIFETIME",
    "ForwardedPortRequest",
    "forwardedMapping",
]

#: The lifetime to ask for: the lease ProtonVPN grants whatever is asked.
FORWARDED_LIFETIME = 60


class ForwardedPortRequest(MapRequest):
    """
    Ask a VPN gateway for its forwarded public port: a L{MapRequest} with
    internal port 0 and a non-zero lifetime (a tolerated departure from RFC
    6886 s3.4, see the module).  Its reply is matched by opcode and
    transport alone.
    """

    __slots__ = ()

    def __new__(
        cls,
        transport: Transport | int,
        suggestedExternalPort: int = 0,
        lifetime: int = FORWARDED_LIFETIME,
    ) -> ForwardedPortRequest:
        """
        @param suggestedExternalPort: the public port to suggest: 0 (any) at
            first, the one held when renewing (s3.3).
        @param lifetime: the lease to ask for, 1 s or more.
        @raise ValueError: lifetime 0 (that would delete all) or a field out
            of range.
        """
        if lifetime == 0:
            raise ValueError(
                "a forwarded port needs a lifetime: internal port 0 with"
                " lifetime 0 deletes all mappings (RFC 6886 s3.4)"
            )
        return MapRequest.__new__(  # type: ignore[return-value]
            cls, transport, 0, suggestedExternalPort, lifetime
        )


def forwardedMapping(mapping: Mapping) -> Mapping:
    """
    The L{Mapping} a VPN gateway granted, as read from its reply (by
    L{twisted_natpmp.natpmp._matching.mappingFrom}): its C{internalPort} is
    the public port when the reply says 0, since a VPN gateway forwards the
    public port to the same port on the tunnel address, where the
    application listens.
    """
    if mapping.internalPort:
        return mapping
    return replace(mapping, internalPort=mapping.externalPort)
