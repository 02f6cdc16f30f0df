"""
The impairment relay, the flooder and the packet mutations moved to
L{tools.impair}; these names stay importable from here for
C{tests/test_fuzz.py} and the fuzz tests taken from it.  New code imports
L{tools.impair.mutations} directly.
"""

from __future__ import annotations

from tools.impair.flood import Target, flood, udpDatagram
from tools.impair.mutations import (
    EDGE_LIFETIMES,
    EDGE_PORTS,
    EXTERNAL_ADDRESS,
    MAX_LENGTH,
    isMapRequest,
    mutate,
    mutations,
    validRequests,
    validResponses,
)
from tools.impair.relay import (
    MAX_FLOWS,
    MAX_QUEUED,
    PERFECT,
    RELAY_MARK,
    RELAY_PORT,
    Counts,
    Fate,
    Impairment,
    Relay,
)

__all__ = [
    "EDGE_LIFETIMES",
    "EDGE_PORTS",
    "EXTERNAL_ADDRESS",
    "MAX_FLOWS",
    "MAX_LENGTH",
    "MAX_QUEUED",
    "PERFECT",
    "RELAY_MARK",
    "RELAY_PORT",
    "Counts",
    "Fate",
    "Impairment",
    "Relay",
    "Target",
    "flood",
    "isMapRequest",
    "mutate",
    "mutations",
    "udpDatagram",
    "validRequests",
    "validResponses",
]
