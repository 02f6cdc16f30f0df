"""
The gateway side (RFC 6886 today; RFC 6887 to come): what C{twistd
natpmp-gateway} runs, and what tests and benchmarks build directly.

  - L{GatewayService} (C{_service}): one listening port per internal
    address, one table, announcements on start and on address change.
  - L{Gateway} (C{gateway}), also known as C{NATPMPGateway}: the
    protocol-neutral core shared by all ports and protocols: the source
    checks (RFC 6886 s3.3), the table, the rate limit, the aggregated drop
    and refusal logs, the expiry timer.
  - L{VersionDispatcher} (C{dispatch}): picks the responder
    (L{Responder}) by version byte; the NAT-PMP responder is
    L{twisted_natpmp.natpmp.responder}; what a responder may use of the
    gateway is L{GatewayCore}.
  - L{GatewayProtocol} (C{_protocol}), also known as
    C{NATPMPServerProtocol}: the C{DatagramProtocol} of one port.
  - L{MappingTable} (C{table}): the pure, protocol-neutral mapping table,
    with L{GatewayMapping}, L{TableEvent}, L{EventKind}, L{Refused} and
    L{checkLimits}.
  - L{Announcer} (C{announcer}) and L{ANNOUNCE_INTERVALS}: RFC 6886 s3.2.1.
  - L{twisted_natpmp.server.backends}: what makes mappings real
    (L{MemoryBackend}).

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
    from .announcer import ANNOUNCE_INTERVALS, Announcer
    from .backends.memory import MemoryBackend
    from .dispatch import GatewayCore, Responder, VersionDispatcher
    from .gateway import Gateway, NATPMPGateway
    from .table import (
        DEFAULT_MAX_LIFETIME,
        DEFAULT_MAX_MAPPINGS,
        DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        DEFAULT_MAX_PORT,
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
    "DEFAULT_MIN_PORT",
    "EventKind",
    "Gateway",
    "GatewayCore",
    "GatewayMapping",
    "GatewayProtocol",
    "GatewayService",
    "HIGH_PORT",
    "MappingTable",
    "MemoryBackend",
    "MonotonicClock",
    "NATPMPGateway",
    "NATPMPServerProtocol",
    "Refused",
    "Responder",
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
