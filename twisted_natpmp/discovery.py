"""
Find the gateway to talk to: the default IPv4 gateway (RFC 6886 s3), as the
C{netifaces} module (from the C{netifaces-plus} distribution) reports it.

Discovery is only a default: every caller (the client, the service, the
C{natpmp} command) accepts a gateway address instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any, Protocol

from .errors import NoGatewayError

_ADVICE = "name the gateway explicitly (natpmp --gateway IP)"


class NetifacesModule(Protocol):
    """
    The part of the C{netifaces} module that L{defaultGateway} uses; tests
    pass a stand-in of the same shape.
    """

    @property
    def AF_INET(self) -> int: ...

    def gateways(self) -> Mapping[Any, Any]: ...


def _importNetifaces() -> NetifacesModule:
    import netifaces

    return netifaces


def defaultGateway(netifacesModule: NetifacesModule | None = None) -> IPv4Address:
    """
    The default IPv4 gateway of this host: RFC 6886 s3 sends requests to it.

    @param netifacesModule: the C{netifaces} module, or a stand-in for it;
        L{None} imports the real one.
    @return: the gateway's address.
    @raise NoGatewayError: there is no default IPv4 gateway (or no usable
        one: a default route without a gateway address, as on a
        point-to-point link, names none), or the routing table cannot be
        read.
    """
    module = _importNetifaces() if netifacesModule is None else netifacesModule
    try:
        gateways = module.gateways()
    except OSError as e:
        raise NoGatewayError(f"cannot read the routing table ({e}); {_ADVICE}") from e
    # netifaces: {"default": {AF_INET: (address, interface)}, AF_INET: [...]}
    default = gateways.get("default")
    entry = default.get(module.AF_INET) if isinstance(default, Mapping) else None
    if not entry:
        raise NoGatewayError(f"no default IPv4 gateway found; {_ADVICE}")
    try:
        address = IPv4Address(entry[0])
    except ValueError:
        raise NoGatewayError(
            f"the default IPv4 gateway {entry[0]!r} is not an IPv4 address; {_ADVICE}"
        ) from None
    if address.is_unspecified:
        raise NoGatewayError(f"the default route names no gateway; {_ADVICE}")
    return address
