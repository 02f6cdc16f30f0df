"""
NAT-PMP (RFC 6886) port mapping for Twisted.

The public names are re-exported here; see L{twisted_natpmp.client},
L{twisted_natpmp.service} and L{twisted_natpmp.server} for the details.
"""

from ._types import Mapping
from ._wire import Protocol, ResultCode
from .client import NATPMPClient, listenClient
from .errors import (
    GatewayError,
    NATPMPError,
    NoGatewayError,
    NoResponseError,
    NotAuthorizedError,
    NotSupportedError,
)

__all__ = [
    "GatewayError",
    "Mapping",
    "NATPMPClient",
    "NATPMPError",
    "NoGatewayError",
    "NoResponseError",
    "NotAuthorizedError",
    "NotSupportedError",
    "Protocol",
    "ResultCode",
    "listenClient",
]
