"""
L{PortMapperService}: an L{IService <twisted.application.service.IService>}
that keeps a declared set of ports mapped on the gateway for as long as it
runs, and the parts it is made of.
"""

from __future__ import annotations

from ..discovery import isPrivateAddress
from ._service import PortMapperService
from .declarations import MappingDeclaration, MappingState, PublicAddressError
from .keeper import KeeperChange, KeeperContext, KeeperPhase, MappingKeeper, Why
from .policy import (
    ADDRESS_TIMEOUTS,
    CONFIRM_SPACING,
    COPY_SLACK,
    GATEWAY_CHECK_INTERVAL,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUTS,
    MAP_TIMEOUTS,
    MAX_HOLD_OFF,
    MIN_RENEWAL_INTERVAL,
    SILENCE_REMINDER,
    SILENCE_WARNING,
    STOP_DEADLINE,
    STOP_TIMEOUTS,
    defaultBackoff,
)

__all__ = [
    "ADDRESS_TIMEOUTS",
    "CONFIRM_SPACING",
    "COPY_SLACK",
    "GATEWAY_CHECK_INTERVAL",
    "HEALTH_INTERVAL",
    "HEALTH_TIMEOUTS",
    "MAP_TIMEOUTS",
    "MAX_HOLD_OFF",
    "MIN_RENEWAL_INTERVAL",
    "SILENCE_REMINDER",
    "SILENCE_WARNING",
    "STOP_DEADLINE",
    "STOP_TIMEOUTS",
    "KeeperChange",
    "KeeperContext",
    "KeeperPhase",
    "MappingDeclaration",
    "MappingKeeper",
    "MappingState",
    "PortMapperService",
    "PublicAddressError",
    "Why",
    "defaultBackoff",
    "isPrivateAddress",
]
