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
        iifname "wan0" fib daddr type local meta l4proto { tcp, udp }
            dnat ip to meta l4proto . th dport map @forwards
    }

(only packets to the router's own addresses: what arrives on C{wan0} for
a routed subnet behind it goes on untouched), and each mapping is one
element of C{forwards}, whose timeout is the lifetime granted.  With a
host forward chain (C{--forward-chain inet:filter:forward}), the host's
table also gets a set of (internal address, transport, internal port),
element for element beside the map, and one rule at the end of the
chain that accepts DNATed packets to exactly those (one line each, here
folded)::

    ct status dnat ip daddr . meta l4proto . th dport @NAME_forwards
        accept comment "NAME"

Every element change is written so that it cannot fail on an element the
kernel has already expired (its timeout and our table's clock differ by the
time a batch takes): a REMOVE adds the element with a 1-second timeout (a
refresh if it is there) and deletes it; a SET (a renewal) does the same,
then adds it with the lifetime as its timeout (which works on every
kernel, where re-adding an element may or may not refresh its timeout).
An ADD (a new mapping) only adds: nothing forwards its port yet, and a
batch without a deletion commits several times faster (observed: about 4
ms against 18, the kernel waiting for an RCU grace period to free deleted
elements).  Only a real conflict (the external port forwarding to another
address) fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv6Address

from ...._types import Transport
from ..._entries import GatewayMapping
from .._batching import ChangeKind, ForwardChange
from ._elements import (
    Filters,
    document,
    filterLines,
    forwardKey,
    forwardValue,
    hostKey,
    pinholeKey,
)
from ._names import ForwardChain, checkInterface, checkName, ruleHandles

#: What filters are kept by: (transport, external port) for a forward,
#: (transport, port, address) for a pinhole.
Port = tuple[Transport, int] | tuple[Transport, int, IPv6Address]

__all__ = [
    "DEFAULT_TABLE",
    "MAP",
    "ForwardChain",
    "Port",
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
#: The name of our set of IPv6 pinholes (address, transport, port) in the
#: host's table, after our table's name and "_".
PINHOLES = "pinholes"
_HOST_TYPE = "{ type ipv4_addr . inet_proto . inet_service; flags timeout; }"
_PINHOLE_TYPE = "{ type ipv6_addr . inet_proto . inet_service; flags timeout; }"
_PERMITTED6_TYPE = (
    "{ type ipv6_addr . inet_proto . inet_service . ipv6_addr . inet_service;"
    " flags interval, timeout; }"
)
#: Our set of the (transport, external port) that have filters, our set of
#: (transport, external port, remote network, remote ports) let through
#: them, and the chain that drops the rest (PCP's FILTER, RFC 6887 s13.3).
FILTERED = "filtered"
PERMITTED = "permitted"
FILTERS = "filters"
#: The name of the backend's prerouting chain.
CHAIN = "prerouting"


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
        self._filtered = (
            f"inet {self.table} {FILTERED}",
            f"inet {self.table} {PERMITTED}",
        )
        #: Whether IPv6 pinholes can be made: only through the host's
        #: forward chain of an inet table (nothing else could let them
        #: through its firewall).
        self.pinholes = forwardChain is not None and forwardChain.family == "inet"
        if forwardChain is not None:
            self._pinholeSet = (
                f"{forwardChain.family} {forwardChain.table} {self.table}_{PINHOLES}"
            )
            #: Our sets there of the pinholes that have filters, and of the
            #: (pinhole, remote network, remote ports) let through them.
            self._pinholeFiltered = (
                f"{self._pinholeSet}_{FILTERED}",
                f"{self._pinholeSet}_{PERMITTED}",
            )
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

    def _pinholeSets(self, then: str) -> list[str]:
        """
        Our pinhole sets in the host's table, each declared, then flushed
        or deleted (C{then}).
        """
        filtered, permitted = self._pinholeFiltered
        return [
            *_declared(self._pinholeSet, _PINHOLE_TYPE, then),
            *_declared(filtered, _PINHOLE_TYPE, then),
            *_declared(permitted, _PERMITTED6_TYPE, then),
        ]

    # Whole-table batches

    def create(self, staleHandles: Sequence[int] = ()) -> str:
        """
        The batch that makes our table afresh and empty (whether or not it
        exists), and with a host forward chain, our set there, emptied, and
        our accept rule at its end (C{staleHandles}: rules of ours left by
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
            f'        iifname "{self.interface}" fib daddr type local'
            f" meta l4proto {{ tcp, udp }}"
            f" dnat ip to meta l4proto . th dport map @{MAP}",
            "    }",
            f"    set {FILTERED} {{",
            "        type inet_proto . inet_service",
            "        flags timeout",
            "    }",
            f"    set {PERMITTED} {{",
            "        type inet_proto . inet_service . ipv4_addr . inet_service",
            "        flags interval, timeout",
            "    }",
            f"    chain {FILTERS} {{",
            "        type filter hook prerouting priority dstnat - 10; policy accept;",
            f'        iifname "{self.interface}" fib daddr type local'
            f" meta l4proto . th dport @{FILTERED}"
            f" meta l4proto . th dport . ip saddr . th sport != @{PERMITTED} drop",
            "    }",
            "}",
        ]
        if self.forwardChain is not None:
            lines += self._deleteRules(staleHandles)
            lines += [
                *_declared(self._hostSet, _HOST_TYPE, "flush"),
                f"add rule {self._hostChain} ct status dnat ip daddr"
                f" . meta l4proto . th dport @{self.table}_{MAP} accept"
                f' comment "{self.comment}"',
            ]
        if self.pinholes:
            name = f"{self.table}_{PINHOLES}"
            accept = f'add rule {self._hostChain} iifname "{self.interface}" ip6 daddr'
            lines += [
                *self._pinholeSets("flush"),
                # Unfiltered pinholes, and filtered ones from a peer let in.
                f"{accept} . meta l4proto . th dport @{name}"
                f" ip6 daddr . meta l4proto . th dport != @{name}_{FILTERED}"
                f' accept comment "{self.comment}"',
                f"{accept} . meta l4proto . th dport @{name}"
                f" ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport"
                f' @{name}_{PERMITTED} accept comment "{self.comment}"',
            ]
        return document(lines)

    def destroy(self, handles: Sequence[int] | None = ()) -> str:
        """
        The batch that removes our table (whether or not it exists), and
        our rules (C{handles}) and set in the host's table (L{None}: the
        host's chain cannot be listed, and is left alone).
        """
        lines = []
        if self.forwardChain is not None and handles is not None:
            lines += self._deleteRules(handles)
            lines += _declared(self._hostSet, _HOST_TYPE, "delete")
            if self.pinholes:
                lines += self._pinholeSets("delete")
        lines += [f"add table inet {self.table}", f"delete table inet {self.table}"]
        return document(lines)

    # Element batches

    def changes(self, changes: Iterable[ForwardChange]) -> str:
        """
        The batch that makes C{changes}, in order, with no filters set
        before (see L{batch}).
        """
        return self.batch(changes, {})[0]

    def batch(
        self, changes: Iterable[ForwardChange], filtered: Mapping[Port, Filters]
    ) -> tuple[str, dict[Port, Filters]]:
        """
        The batch that makes C{changes}, in order, and the filters it
        leaves.

        @param filtered: the filters of each (transport, external port)
            before it (committed).
        """
        view = dict(filtered)
        lines: list[str] = []
        for change in changes:
            m = change.mapping
            port: Port
            if isinstance(m.client, IPv6Address):
                if not self.pinholes:
                    raise ValueError(f"no such pinhole change: {change}")
                port = (m.transport, m.internalPort, m.client)
                sets, key = self._pinholeFiltered, pinholeKey(m)
            else:
                port = (m.transport, m.externalPort)
                sets, key = self._filtered, forwardKey(m)
            old = view.pop(port, ())
            if change.kind is ChangeKind.FILTER:
                lines += filterLines(sets, key, m, old, change.filters)
                if change.filters:
                    view[port] = change.filters
                continue
            if change.kind is ChangeKind.SET and old:
                lines += filterLines(sets, key, m, old, old)
                view[port] = old
            elif change.kind is ChangeKind.REMOVE:
                lines += filterLines(sets, key, m, old, ())
            if isinstance(m.client, IPv6Address):
                lines += self._pinhole(change)
            elif change.kind is ChangeKind.ADD:
                lines += self._add(m)
            elif change.kind is ChangeKind.SET:
                lines += self._remove(m) + self._add(m)
            else:
                lines += self._remove(m)
        return document(lines), view

    def _pinhole(self, change: ForwardChange) -> list[str]:
        m = change.mapping
        key = pinholeKey(m)
        lines = [
            f"add element {self._pinholeSet} {{ {key} timeout 1s }}",
            f"delete element {self._pinholeSet} {{ {key} }}",
        ]
        added = f"add element {self._pinholeSet} {{ {key} timeout {m.lifetime}s }}"
        if change.kind is ChangeKind.ADD:
            return [added]
        if change.kind is ChangeKind.SET:
            lines.append(added)
        return lines

    def _add(self, m: GatewayMapping) -> list[str]:
        lines = [
            f"add element {self._map} {{ {forwardKey(m)} timeout {m.lifetime}s"
            f" : {forwardValue(m)} }}"
        ]
        if self.forwardChain is not None:
            lines.append(
                f"add element {self._hostSet} {{ {hostKey(m)} timeout {m.lifetime}s }}"
            )
        return lines

    def _remove(self, m: GatewayMapping) -> list[str]:
        # Added first, so that deleting what the kernel expired is no error.
        key = forwardKey(m)
        lines = [
            f"add element {self._map} {{ {key} timeout 1s : {forwardValue(m)} }}",
            f"delete element {self._map} {{ {key} }}",
        ]
        if self.forwardChain is not None:
            host = hostKey(m)
            lines += [
                f"add element {self._hostSet} {{ {host} timeout 1s }}",
                f"delete element {self._hostSet} {{ {host} }}",
            ]
        return lines


def _declared(name: str, setType: str, then: str) -> list[str]:
    """
    The lines that declare the set C{name} of C{setType} (so that what follows
    is no error when it is not there), then flush or delete it (C{then}).
    """
    return [f"add set {name} {setType}", f"{then} set {name}"]
