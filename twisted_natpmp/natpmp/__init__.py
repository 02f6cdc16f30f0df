"""
Everything NAT-PMP (RFC 6886): the codec (L{twisted_natpmp.natpmp._wire}),
the client (L{twisted_natpmp.natpmp.client}, a codec and matching over the
request engine of L{twisted_natpmp._exchange}) and the gateway's responder
(L{twisted_natpmp.natpmp.responder}).

The client's names are imported when first used, so that importing the
codec stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import NATPMPClient, listenClient

_WHERE = {"NATPMPClient": ".client", "listenClient": ".client"}

__all__ = ["NATPMPClient", "listenClient"]


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
