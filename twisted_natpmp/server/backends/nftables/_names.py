# -*- test-case-name: tests.server.nftables.test_ruleset -*-
"""
The names the nftables backend writes into its batches, checked (nft
1.0.6's text has no quoting, so only plain names are safe), and the host's
forward chain: its C{FAMILY:TABLE:CHAIN} and the handles of our rules in
its listing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["ForwardChain", "checkInterface", "checkName", "ruleHandles"]

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

    Its names cannot be nft keywords (C{fwd}, say): nft 1.0.6's text
    syntax has no quoting, and the batch that names one fails.

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
