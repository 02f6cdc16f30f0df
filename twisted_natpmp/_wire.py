"""
The NAT-PMP codec's old home, kept so that existing imports work: the codec
now lives in L{twisted_natpmp.natpmp._wire}.
"""

from __future__ import annotations

from .natpmp._messages import _RESPONSE_BIT  # noqa: F401
from .natpmp._wire import *  # noqa: F403
from .natpmp._wire import (  # noqa: F401
    _ADDRESS_CACHE_SIZE,
    _ADDRESSES,
    OPCODES,
    RESPONSE_BIT,
)
