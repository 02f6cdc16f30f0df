# -*- test-case-name: tests.server.nftables.test_ruleset -*-
"""
The text of the element changes in the backend's batches: the keys and
values of the map and sets' elements, the lines that change a mapping's
filters (PCP's FILTER), and the document that joins the lines.  Pure.
"""

from __future__ import annotations

from ..._entries import GatewayMapping
from .._filters import RemoteFilter

__all__ = [
    "Filters",
    "document",
    "filterLines",
    "forwardKey",
    "forwardValue",
    "hostKey",
    "pinholeKey",
    "remote",
]

Filters = tuple[RemoteFilter, ...]


def filterLines(
    sets: tuple[str, str],
    key: str,
    m: GatewayMapping,
    old: Filters,
    new: Filters,
) -> list[str]:
    """
    The lines that change C{m}'s filters from C{old} to C{new} (each
    element timing out with the mapping), in C{sets} (the filtered and
    the permitted), whose elements begin with C{key}.
    """
    filtered, permitted = sets
    lines = []
    for f in old:
        element = f"{key} . {remote(f)}"
        lines += [
            f"add element {permitted} {{ {element} timeout 1s }}",
            f"delete element {permitted} {{ {element} }}",
        ]
    if old:
        lines += [
            f"add element {filtered} {{ {key} timeout 1s }}",
            f"delete element {filtered} {{ {key} }}",
        ]
    if new:
        lines.append(f"add element {filtered} {{ {key} timeout {m.lifetime}s }}")
        lines += [
            f"add element {permitted} {{ {key} . {remote(f)} timeout {m.lifetime}s }}"
            for f in new
        ]
    return lines


def remote(f: RemoteFilter) -> str:
    """
    The remote part of a permitted element: C{f}'s network and ports.
    """
    ports = "0-65535" if f.port == 0 else str(f.port)
    return f"{f.network} . {ports}"


def forwardKey(m: GatewayMapping) -> str:
    """
    The key of C{m}'s element in the map: transport and external port.
    """
    return f"{m.transport.label} . {m.externalPort}"


def pinholeKey(m: GatewayMapping) -> str:
    """
    The element of C{m}'s pinhole: address, transport and internal port.
    """
    return f"{m.client} . {m.transport.label} . {m.internalPort}"


def forwardValue(m: GatewayMapping) -> str:
    """
    The value of C{m}'s element in the map: internal address and port.
    """
    return f"{m.client} . {m.internalPort}"


def hostKey(m: GatewayMapping) -> str:
    """
    The element of C{m} in the host's set: address, transport and port.
    """
    return f"{m.client} . {m.transport.label} . {m.internalPort}"


def document(lines: list[str]) -> str:
    """
    The batch of C{lines}, one command each.
    """
    return "".join(line + "\n" for line in lines)
