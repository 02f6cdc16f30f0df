"""
The NAT-PMP client's old home, kept so that existing imports work: the
client now lives in L{twisted_natpmp.natpmp.client}.
"""

from __future__ import annotations

from .natpmp._matching import LATE_REPLY_SECONDS as _LATE_REPLY_SECONDS
from .natpmp.client import (
    DELETION_TIMEOUTS,
    RETRANSMIT_TIMEOUTS,
    STATE_LOSS_INTERVAL,
    MappingKey,
    NATPMPClient,
    NATPMPClientProtocol,
    describeRequest,
    listenClient,
)

__all__ = [
    "DELETION_TIMEOUTS",
    "RETRANSMIT_TIMEOUTS",
    "STATE_LOSS_INTERVAL",
    "MappingKey",
    "NATPMPClient",
    "NATPMPClientProtocol",
    "_LATE_REPLY_SECONDS",
    "describeRequest",
    "listenClient",
]
