# -*- test-case-name: tests.server.nftables.test_ruleset -*-
"""
The nftables batches the backend sends, built as text for C{nft -f -}:
pure functions of the configuration and the changes, no I/O.

One document is one transaction.  The table (family C{inet}, name
configurable) holds::

    map forwards {
        type inet_proto . inet_service : ipv4_addr . inet_service
        flags timeout
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" meta l4proto { tcp, udp }
            dnat ip to meta l4proto . th dport map @forwards
    }

and each mapping is one element of C{forwards}, whose timeout is the
lifetime granted.  With a host forward chain (C{--forward-chain
inet:filter:forward}), the host's table also gets a set of (internal
address, transport, internal port), element for element beside the map,
and one rule at the head of the chain that accepts DNATed packets to
exactly those (one line each, here folded)::

    ct status dnat ip daddr . meta l4proto . th dport @NAME_forwards
        accept comment "NAME"

Every element change is written so that it cannot fail on an element the
kernel has already expired (its timeout and our table's clock differ by the
time a batch takes): a REMOVE adds the element with a 1-second timeout (a
refresh if it is there) and deletes it; a SET does the same, then adds it
with the lifetime as its timeout (a renewal that works on every kernel,
where re-adding an element may or may not refresh its timeout).  Only a
real conflict (the external port forwarding to another address) fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..._entries import GatewayMapping
from .._batching import ChangeKind, ForwardChange

__all__ = [
    "DEFAULT_TABLE",
    "MAP",
    "ForwardChain",
    "Ruleset",
    "checkInterface",
    "checkName",
    "ruleHandles",
]

#: The name of the backend's own table (family C{inet}) by default.
DEFAULT_TABLE = "twisted_natpmp"
#: The name of the map from (transport, external port) to (internal
#: address, internal port).
MAP = "forwards"
#: The name of the backend's prerouting chain.
CHAIN = "prerouting"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
# Linux interface names: up to 15 bytes, no "/", no white space; we take
# the characters nft quotes safely.
_INTERFACE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}\Z")


def checkName(what: str, name: str) -> str:
    """
    C{name} if it can name an nftables table, chain or set here (a letter,
    then letters, digits or "_", at most 64).

    @raise ValueError: it cannot; the message names C{what} and the value.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a name (a letter, then letters, digits or _)"
        )
    return name


def checkInterface(name: str) -> str:
    """
    C{name} if it can be a network interface's name.

    @raise ValueError: it cannot.
    """
    if not _INTERFACE.match(name):
        raise ValueError(f"{name!r} is not a network interface name")
    return name


@dataclass(frozen=True, slots=True)
class ForwardChain:
    """
    A base chain of the host's firewall at the forward hook, where an
    accept rule for our mappings goes.

    @ivar family: C{"inet"} or C{"ip"}.
    @ivar table: the host's table.
    @ivar chain: its forward chain.
    """

    family: str
    table: str
    chain: str

    @classmethod
    def parse(cls, text: str) -> ForwardChain:
        """
        Read C{FAMILY:TABLE:CHAIN}, e.g. C{inet:filter:forward}.

        @raise ValueError: it is not that, in one line naming C{text}.
        """
        parts = text.split(":")
        if len(parts) != 3 or parts[0] not in ("inet", "ip"):
            raise ValueError(
                f"{text!r} is not FAMILY:TABLE:CHAIN with FAMILY inet or ip"
            )
        try:
            return cls(
                parts[0], checkName("table", parts[1]), checkName("chain", parts[2])
            )
        except ValueError as e:
            raise ValueError(f"{text!r}: {e}") from None

    def __str__(self) -> str:
        return f"{self.family}:{self.table}:{self.chain}"


def ruleHandles(listing: bytes, comment: str) -> list[int]:
    """
    The handles of the rules whose comment is C{comment} in the JSON of
    C{nft -j -a list chain ...}.

    @raise ValueError: C{listing} is not such JSON.
    """
    try:
        document = json.loads(listing)
        items = document["nftables"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not an nft listing: {e}") from None
    handles = []
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if isinstance(rule, dict) and rule.get("comment") == comment:
            handles.append(int(rule["handle"]))
    return handles


class Ruleset:
    """
    The batches for one gateway's table.

    @ivar table: the name of our table (family C{inet}).
    @ivar interface: the external interface, whose arriving packets are
        forwarded.
    @ivar forwardChain: the host's forward chain to add an accept rule to,
        or L{None}.
    """

    def __init__(
        self,
        interface: str,
        table: str = DEFAULT_TABLE,
        forwardChain: ForwardChain | None = None,
    ) -> None:
        """
        @raise ValueError: C{interface} or C{table} cannot be a name.
        """
        self.interface = checkInterface(interface)
        self.table = checkName("table", table)
        self.forwardChain = forwardChain
        self._map = f"inet {self.table} {MAP}"
        if forwardChain is not None:
            self._hostSet = (
                f"{forwardChain.family} {forwardChain.table} {self.table}_{MAP}"
            )
            self._hostChain = (
                f"{forwardChain.family} {forwardChain.table} {forwardChain.chain}"
            )

    # The host's forward chain

    def listForwardChain(self) -> list[str]:
        """
        The C{nft} arguments that list the host's forward chain, with
        handles, as JSON (for L{ruleHandles} with L{comment}).
        """
        chain = self.forwardChain
        assert chain is not None
        return ["-j", "-a", "list", "chain", chain.family, chain.table, chain.chain]

    @property
    def comment(self) -> str:
        """
        The comment that marks our rule in the host's chain.
        """
        return self.table

    def _deleteRules(self, handles: Iterable[int]) -> list[str]:
        return [f"delete rule {self._hostChain} handle {int(h)}" for h in handles]

    # Whole-table batches

    def create(self, staleHandles: Sequence[int] = ()) -> str:
        """
        The batch that makes our table afresh and empty (whether or not it
        exists), and with a host forward chain, our set there, emptied, and
        our accept rule at its head (C{staleHandles}: rules of ours left by
        an earlier run, deleted first).
        """
        lines = [
            f"add table inet {self.table}",
            f"delete table inet {self.table}",
            f"table inet {self.table} {{",
            f"    map {MAP} {{",
            "        type inet_proto . inet_service : ipv4_addr . inet_service",
            "        flags timeout",
            "    }",
            f"    chain {CHAIN} {{",
            "        type nat hook prerouting priority dstnat; policy accept;",
            f'        iifname "{self.interface}" meta l4proto {{ tcp, udp }}'
            f" dnat ip to meta l4proto . th dport map @{MAP}",
            "    }",
            "}",
        ]
        if self.forwardChain is not None:
            lines += self._deleteRules(staleHandles)
            lines += [
                f"add set {self._hostSet} {{ type ipv4_addr . inet_proto"
                " . inet_service; flags timeout; }",
                f"flush set {self._hostSet}",
                f"insert rule {self._hostChain} ct status dnat ip daddr"
                f" . meta l4proto . th dport @{self.table}_{MAP} accept"
                f' comment "{self.comment}"',
            ]
        return _document(lines)

    def destroy(self, handles: Sequence[int] | None = ()) -> str:
        """
        The batch that removes our table (whether or not it exists), and
        our rules (C{handles}) and set in the host's table (L{None}: the
        host's chain cannot be listed, and is left alone).
        """
        lines = []
        if self.forwardChain is not None and handles is not None:
            lines += self._deleteRules(handles)
            lines += [
                f"add set {self._hostSet} {{ type ipv4_addr . inet_proto"
                " . inet_service; flags timeout; }",
                f"delete set {self._hostSet}",
            ]
        lines += [f"add table inet {self.table}", f"delete table inet {self.table}"]
        return _document(lines)

    # Element batches

    def changes(self, changes: Iterable[ForwardChange]) -> str:
        """
        The batch that makes C{changes}, in order.
        """
        lines: list[str] = []
        for change in changes:
            if change.kind is ChangeKind.SET:
                lines += self._set(change.mapping)
            else:
                lines += self._remove(change.mapping)
        return _document(lines)

    def _set(self, m: GatewayMapping) -> list[str]:
        lines = self._remove(m)
        lines.append(
            f"add element {self._map} {{ {_key(m)} timeout {m.lifetime}s"
            f" : {_value(m)} }}"
        )
        if self.forwardChain is not None:
            lines.append(
                f"add element {self._hostSet} {{ {_hostKey(m)} timeout {m.lifetime}s }}"
            )
        return lines

    def _remove(self, m: GatewayMapping) -> list[str]:
        # Added first, so that deleting what the kernel expired is no error.
        key = _key(m)
        lines = [
            f"add element {self._map} {{ {key} timeout 1s : {_value(m)} }}",
            f"delete element {self._map} {{ {key} }}",
        ]
        if self.forwardChain is not None:
            host = _hostKey(m)
            lines += [
                f"add element {self._hostSet} {{ {host} timeout 1s }}",
                f"delete element {self._hostSet} {{ {host} }}",
            ]
        return lines


def _key(m: GatewayMapping) -> str:
    return f"{m.transport.label} . {m.externalPort}"


def _value(m: GatewayMapping) -> str:
    return f"{m.client} . {m.internalPort}"


def _hostKey(m: GatewayMapping) -> str:
    return f"{m.client} . {m.transport.label} . {m.internalPort}"


def _document(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
