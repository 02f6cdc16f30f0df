"""
Fakes for testing code that uses twisted-natpmp, shipped with the package
(as treq ships C{treq.testing}), so that applications test their own use of
it without a network, a router or real time.

  - L{MemoryUDPNetwork}: an in-memory UDP network of hosts, each with a
    reactor whose ports pass C{verifyObject(IListeningPort)}; pair it with
    L{twisted.internet.task.Clock}.
  - L{ScriptedGateway}: a NAT-PMP gateway for that network whose answers a
    test chooses.
  - L{ScriptedVPNGateway}: one that answers as a VPN gateway (ProtonVPN)
    does, for testing code that keeps a forwarded port.
  - L{FakePortMapper}: an L{twisted_natpmp.interfaces.IPortMapper} that
    speaks no protocol at all: the test sees each request and decides its
    outcome, for testing code (such as the mapper service) that only talks
    to the interface.

The names are imported when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._gateway import ScriptedGateway
    from ._mapper import FakePortMapper
    from ._udp import Datagram, HostReactor, MemoryUDPNetwork, MemoryUDPPort
    from ._vpngateway import ScriptedVPNGateway

_WHERE = {
    "Datagram": "._udp",
    "HostReactor": "._udp",
    "MemoryUDPNetwork": "._udp",
    "MemoryUDPPort": "._udp",
    "ScriptedGateway": "._gateway",
    "ScriptedVPNGateway": "._vpngateway",
    "FakePortMapper": "._mapper",
}

__all__ = [
    "Datagram",
    "FakePortMapper",
    "HostReactor",
    "MemoryUDPNetwork",
    "MemoryUDPPort",
    "ScriptedGateway",
    "ScriptedVPNGateway",
]


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
