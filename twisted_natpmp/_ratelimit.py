"""
The rate limiter moved to L{twisted_natpmp.server._ratelimit}; these names
stay importable from here.
"""

from .server._ratelimit import (
    DEFAULT_MAX_SOURCES,
    DEFAULT_REQUEST_BURST,
    DEFAULT_REQUEST_RATE,
    RateLimiter,
    checkRate,
)

__all__ = [
    "DEFAULT_MAX_SOURCES",
    "DEFAULT_REQUEST_BURST",
    "DEFAULT_REQUEST_RATE",
    "RateLimiter",
    "checkRate",
]
