"""
The gateway's mapping table moved to L{twisted_natpmp.server.table}; these
names stay importable from here.
"""

from .server.table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
    HIGH_PORT,
    EventKind,
    GatewayMapping,
    Key,
    MappingTable,
    MonotonicClock,
    Observer,
    Refused,
    TableEvent,
    checkLimits,
)

__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_MAX_MAPPINGS",
    "DEFAULT_MAX_MAPPINGS_PER_CLIENT",
    "DEFAULT_MAX_PORT",
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
