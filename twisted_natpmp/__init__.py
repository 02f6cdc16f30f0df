"""
NAT-PMP (RFC 6886) and PCP (RFC 6887) port mapping for Twisted.

The public names are re-exported here; see L{twisted_natpmp.natpmp},
L{twisted_natpmp.service}, L{twisted_natpmp.endpoint}, L{twisted_natpmp.server} and
L{twisted_natpmp.testing} for the details.
They are imported when first used, so that C{import twisted_natpmp} (and
every twistd plugin listing) stays cheap.

@var __version__: the version of twisted-natpmp, e.g. C{"0.1.0"}.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._types import Mapping, ProtocolName, Transport
    from .discovery import defaultGateway
    from .endpoint import MappedListeningPort, MappedServerEndpoint
    from .errors import (
        GatewayError,
        NATPMPError,
        NetworkFailureError,
        NoGatewayError,
        NoResponseError,
        NotAuthorizedError,
        NotSupportedError,
        OutOfResourcesError,
        PortMappingError,
    )
    from .interfaces import (
        IExternalAddressQuery,
        IMappingBackend,
        IMappingObserver,
        IPortMapper,
        Probe,
    )
    from .natpmp._wire import Protocol, ResultCode
    from .natpmp.client import NATPMPClient, listenClient
    from .server import GatewayService
    from .server.backends import MemoryBackend
    from .service import MappingDeclaration, MappingState, PortMapperService

_WHERE = {
    "Mapping": "._types",
    "ProtocolName": "._types",
    "Transport": "._types",
    "Protocol": ".natpmp._wire",
    "ResultCode": ".natpmp._wire",
    "MemoryBackend": ".server.backends",
    "NATPMPClient": ".natpmp.client",
    "listenClient": ".natpmp.client",
    "defaultGateway": ".discovery",
    "MappedListeningPort": ".endpoint",
    "MappedServerEndpoint": ".endpoint",
    "GatewayError": ".errors",
    "NATPMPError": ".errors",
    "NoGatewayError": ".errors",
    "NoResponseError": ".errors",
    "NotAuthorizedError": ".errors",
    "NotSupportedError": ".errors",
    "NetworkFailureError": ".errors",
    "OutOfResourcesError": ".errors",
    "PortMappingError": ".errors",
    "IExternalAddressQuery": ".interfaces",
    "IMappingBackend": ".interfaces",
    "IMappingObserver": ".interfaces",
    "IPortMapper": ".interfaces",
    "Probe": ".interfaces",
    "GatewayService": ".server",
    "MappingDeclaration": ".service",
    "MappingState": ".service",
    "PortMapperService": ".service",
}

__all__ = [
    "GatewayError",
    "GatewayService",
    "IExternalAddressQuery",
    "IMappingBackend",
    "IMappingObserver",
    "IPortMapper",
    "MappedListeningPort",
    "MappedServerEndpoint",
    "Mapping",
    "MappingDeclaration",
    "MappingState",
    "MemoryBackend",
    "NATPMPClient",
    "NATPMPError",
    "NetworkFailureError",
    "NoGatewayError",
    "NoResponseError",
    "NotAuthorizedError",
    "NotSupportedError",
    "OutOfResourcesError",
    "PortMapperService",
    "PortMappingError",
    "Probe",
    "Protocol",
    "ProtocolName",
    "ResultCode",
    "Transport",
    "defaultGateway",
    "listenClient",
]


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
