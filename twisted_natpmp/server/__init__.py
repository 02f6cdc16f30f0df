"""
The gateway side, NAT-PMP (RFC 6886) and PCP (RFC 6887) on one port and
one table: what C{twistd natpmp-gateway} runs, and what tests and
benchmarks build directly.

  - L{GatewayService} (C{_service}): one listening port per internal
    address, one table, announcements on start and on address change
    (NAT-PMP's, and with PCP its unsolicited ANNOUNCE beside them).
  - L{Gateway} (C{gateway}), also known as C{NATPMPGateway}: the
    protocol-neutral core shared by all ports and protocols: the source
    checks (RFC 6886 s3.3, RFC 6887 s8.2), the table, the rate limit, the
    aggregated drop and refusal logs, the expiry timer.
  - L{VersionDispatcher} (C{dispatch}): picks the responder
    (L{Responder}) by version byte: L{twisted_natpmp.natpmp.responder} for
    0 and 1, L{twisted_natpmp.pcp.responder} for 2 and above; what a
    responder may use of the gateway is L{GatewayCore}.
  - L{GatewayProtocol} (C{_protocol}), also known as
    C{NATPMPServerProtocol}: the C{DatagramProtocol} of one port.
  - L{MappingTable} (C{table}): the pure, protocol-neutral mapping table,
    with L{GatewayMapping}, L{TableEvent}, L{EventKind}, L{Refused} and
    L{checkLimits}; L{SharedTable} (C{_shared}), the gateway's: owners
    (PCP nonces), exact ports, IPv6 pinholes, an epoch that restarts.
  - L{Announcer} (C{announcer}), L{ANNOUNCE_INTERVALS} and
    L{PCPAnnouncements}: RFC 6886 s3.2.1, RFC 6887 s14.1.
  - L{twisted_natpmp.server.backends}: what makes mappings real
    (L{MemoryBackend}; L{IPinholeBackend} for IPv6 pinholes,
    L{IFilteringBackend} and L{RemoteFilter} for PCP's FILTER).

Where the PCP side departs from miniupnpd 2.3.1, or chooses where RFC 6887
leaves a choice (each tested in C{tests/server}):

  - A MAP with a new nonce for a mapping another nonce owns is refused
    with NOT_AUTHORIZED (RFC 6887 s11.3) and changes nothing; miniupnpd
    lets the new nonce take the mapping over.  The nonce is what proves a
    client owns a mapping; letting any nonce replace it would let a second
    application on the host (or a restarted client that lost its nonce)
    silently steal it.  A client that lost its nonce waits for the mapping
    to expire, or maps another port.
  - A NAT-PMP delete or renewal (which carries no nonce) of a PCP-made
    mapping is refused with NAT-PMP's result 2 and the mapping stays (RFC
    6887 appendix A: only the nonce's holder may change it); miniupnpd
    answers success and keeps the rule.  A NAT-PMP-made mapping has no
    owner, and the first PCP MAP for it takes it over.  NAT-PMP's
    delete-all removes that client's NAT-PMP mappings and answers 2 if it
    had to keep PCP ones.
  - Deleting a mapping that does not exist answers SUCCESS with lifetime 0
    (RFC 6887 s15), not miniupnpd's NO_RESOURCES, so that a retransmitted
    delete is answered alike.
  - Long-lived errors carry 1800 s (30 minutes) and short-lived ones 30 s
    (RFC 6887 s7.4); miniupnpd sends 0 for long ones.  CANNOT_PROVIDE_EXTERNAL
    counts as short-lived (L{twisted_natpmp.errors}).
  - Malformed requests (shorter than 24 bytes, not a multiple of 4, longer
    than 1100) get MALFORMED_REQUEST in version 2, in a copy of the request
    padded to a multiple of 4 and to 24 bytes (RFC 6887 s8.2); miniupnpd
    answers short and unaligned ones in version 0.  Packets under 2 bytes
    and responses are dropped.
  - Version 1 gets NAT-PMP's Unsupported Version (RFC 6886 s1.1: 1 is never
    used; the highest version below it we speak is 0); versions above 2
    get UNSUPP_VERSION naming 2 (RFC 6887 s9), as from miniupnpd.
  - An unknown opcode and PEER get UNSUPP_OPCODE in a copy of the request
    (RFC 6887 s8.2), not miniupnpd's bare header; PEER is not implemented
    because the backends (L{twisted_natpmp.interfaces.IMappingBackend})
    only make inbound forwards: an outbound mapping's external port is the
    kernel NAT's, which they can neither read nor extend.  miniupnpd
    answers PEER with success.
  - FILTER (RFC 6887 s13.3) is enforced by a backend that provides
    L{IFilteringBackend} (the memory backend records the filters and
    answers L{MemoryBackend.permits}); several FILTERs add up, prefix
    length 0 removes them all, a renewal without FILTER keeps them.  With
    any other backend FILTER is refused with UNSUPP_OPTION: accepting it
    unenforced (as miniupnpd does) would leave the mapping open to everyone
    while the client believes it filtered.
  - THIRD_PARTY is refused with UNSUPP_OPTION unless the sender is in a
    network allowed by configuration (RFC 6887 s13.1); naming the sender
    itself is MALFORMED_REQUEST, naming a host outside the internal
    networks NOT_AUTHORIZED.  Options acted on (THIRD_PARTY,
    PREFER_FAILURE) are echoed in a success; unknown optional options are
    ignored and not echoed; error responses copy the whole request.
  - Protocol 0 (all protocols) and SCTP are UNSUPP_PROTOCOL (RFC 6887
    s11.1); miniupnpd answers SCTP with NO_RESOURCES.
  - A suggested external address that is not ours is replaced by ours, or
    with PREFER_FAILURE answered CANNOT_PROVIDE_EXTERNAL (RFC 6887 s13.2);
    PREFER_FAILURE with no suggestion at all, or on a delete, is
    MALFORMED_OPTION.
  - The ANNOUNCE request's client-address field is checked like any other
    (RFC 6887 s8.2: ADDRESS_MISMATCH); miniupnpd does not check it.
  - A MAP from an internal IPv6 host opens a pinhole: external address and
    port are its own (RFC 6887 s11.3), in the same table, by a backend
    that provides L{IPinholeBackend}.  NAT-PMP from IPv6 is dropped (RFC
    6886 is IPv4's).
  - Unsolicited ANNOUNCE: 10 copies on NAT-PMP's schedule (RFC 6886
    s3.2.1), on start and on every change of external address, when the
    epoch restarts (RFC 6887 s8.5, s14.1); miniupnpd sends one.
  - PCP lifetimes are clamped to [minLifetime, maxLifetime] (default 120 s
    to 24 h, RFC 6887 s15); NAT-PMP's are only capped at maxLifetime.

Names are imported when first used, so that importing a submodule (the
table, for its defaults) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._clock import externalAddressOrNone, monotonicFor
    from ._protocol import GatewayProtocol, NATPMPServerProtocol
    from ._service import GatewayService
    from ._shared import SharedTable
    from .announcer import ANNOUNCE_INTERVALS, Announcer, PCPAnnouncements
    from .backends._filters import IFilteringBackend, RemoteFilter
    from .backends._pinhole import IPinholeBackend
    from .backends.memory import MemoryBackend
    from .dispatch import GatewayCore, Responder, VersionDispatcher
    from .gateway import Gateway, NATPMPGateway
    from .table import (
        DEFAULT_MAX_LIFETIME,
        DEFAULT_MAX_MAPPINGS,
        DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        DEFAULT_MAX_PORT,
        DEFAULT_MIN_LIFETIME,
        DEFAULT_MIN_PORT,
        HIGH_PORT,
        EventKind,
        GatewayMapping,
        MappingTable,
        MonotonicClock,
        Refused,
        TableEvent,
        checkLimits,
    )

_WHERE = {
    "externalAddressOrNone": "._clock",
    "monotonicFor": "._clock",
    "GatewayProtocol": "._protocol",
    "NATPMPServerProtocol": "._protocol",
    "GatewayService": "._service",
    "ANNOUNCE_INTERVALS": ".announcer",
    "Announcer": ".announcer",
    "PCPAnnouncements": ".announcer",
    "SharedTable": "._shared",
    "IPinholeBackend": ".backends._pinhole",
    "IFilteringBackend": ".backends._filters",
    "RemoteFilter": ".backends._filters",
    "MemoryBackend": ".backends.memory",
    "GatewayCore": ".dispatch",
    "Responder": ".dispatch",
    "VersionDispatcher": ".dispatch",
    "Gateway": ".gateway",
    "NATPMPGateway": ".gateway",
    "DEFAULT_MAX_LIFETIME": ".table",
    "DEFAULT_MAX_MAPPINGS": ".table",
    "DEFAULT_MAX_MAPPINGS_PER_CLIENT": ".table",
    "DEFAULT_MAX_PORT": ".table",
    "DEFAULT_MIN_LIFETIME": ".table",
    "DEFAULT_MIN_PORT": ".table",
    "HIGH_PORT": ".table",
    "EventKind": ".table",
    "GatewayMapping": ".table",
    "MappingTable": ".table",
    "MonotonicClock": ".table",
    "Refused": ".table",
    "TableEvent": ".table",
    "checkLimits": ".table",
}

__all__ = [
    "ANNOUNCE_INTERVALS",
    "Announcer",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_MAX_MAPPINGS",
    "DEFAULT_MAX_MAPPINGS_PER_CLIENT",
    "DEFAULT_MAX_PORT",
    "DEFAULT_MIN_LIFETIME",
    "DEFAULT_MIN_PORT",
    "EventKind",
    "Gateway",
    "GatewayCore",
    "GatewayMapping",
    "GatewayProtocol",
    "GatewayService",
    "HIGH_PORT",
    "IFilteringBackend",
    "IPinholeBackend",
    "MappingTable",
    "MemoryBackend",
    "MonotonicClock",
    "NATPMPGateway",
    "NATPMPServerProtocol",
    "PCPAnnouncements",
    "Refused",
    "RemoteFilter",
    "Responder",
    "SharedTable",
    "TableEvent",
    "VersionDispatcher",
    "checkLimits",
    "externalAddressOrNone",
    "monotonicFor",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
