# -*- test-case-name: tests.server.nftables.test_conntrack -*-
"""
Ending the flows through a mapping that has gone: removing its map element
stops new flows only, and established conntrack entries outlive it
(observed), so the backend deletes them with C{conntrack}.

Every C{conntrack -D} walks the whole connection table, whatever its
filter (observed: about 9 ms of kernel time each, even for an exact
tuple), so the backend does not run one per mapping.  After each batch
that removed mappings it lists the table once (C{conntrack -L}, per
address family), finds here the flows through those mappings, and deletes
just those, by their exact tuple, in one C{conntrack -R} run (none when
there are none, as in most batches).  The elements are gone before the
listing, so no new flow can start through them after it.

A flow through a mapping is one whose original destination port is the
external port and whose reply comes from the internal address and port:
what the DNAT made, and nothing the LAN host opened itself.  Through an
IPv6 pinhole: one whose original destination is the host's address and
port.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address

from ..._entries import GatewayMapping

__all__ = [
    "DELETE_ARGUMENTS",
    "Flow",
    "deletions",
    "flowsThrough",
    "listArguments",
    "parseFlows",
    "through",
]

#: The C{conntrack} arguments that read deletions from standard input.
DELETE_ARGUMENTS = ("-R", "/dev/stdin")


def listArguments(ipv6: bool) -> tuple[str, ...]:
    """
    The C{conntrack} arguments that list the IPv4 (or IPv6) flows.
    """
    return ("-L", "-f", "ipv6") if ipv6 else ("-L", "-f", "ipv4")


@dataclass(frozen=True, slots=True)
class Flow:
    """
    One conntrack entry: its protocol, original tuple and reply source.
    """

    protocol: str
    source: str
    destination: str
    sourcePort: int
    destinationPort: int
    replySource: str
    replySourcePort: int


def parseFlows(listing: str) -> list[Flow]:
    """
    The TCP and UDP flows in C{conntrack -L}'s output; other lines (other
    protocols, summaries) are skipped.
    """
    flows = []
    for line in listing.splitlines():
        fields = line.split()
        if not fields or fields[0] not in ("tcp", "udp"):
            continue
        values: dict[str, list[str]] = {}
        for field in fields:
            key, equals, value = field.partition("=")
            if equals:
                values.setdefault(key, []).append(value)
        try:
            flows.append(
                Flow(
                    fields[0],
                    values["src"][0],
                    values["dst"][0],
                    int(values["sport"][0]),
                    int(values["dport"][0]),
                    values["src"][1],
                    int(values["sport"][1]),
                )
            )
        except (KeyError, IndexError, ValueError):
            continue
    return flows


def through(flow: Flow, mapping: GatewayMapping) -> bool:
    """
    Whether C{flow} goes through C{mapping}.
    """
    if flow.protocol != mapping.transport.label:
        return False
    if isinstance(mapping.client, IPv6Address):
        return flow.destinationPort == mapping.internalPort and _same(
            flow.destination, mapping.client
        )
    return (
        flow.destinationPort == mapping.externalPort
        and flow.replySourcePort == mapping.internalPort
        and _same(flow.replySource, mapping.client)
    )


def _same(text: str, address: object) -> bool:
    try:
        return type(address)(text) == address  # type: ignore[call-arg]
    except ValueError:
        return False


def flowsThrough(
    flows: Iterable[Flow], mappings: Sequence[GatewayMapping]
) -> list[Flow]:
    """
    The C{flows} that go through any of C{mappings}.
    """
    return [f for f in flows if any(through(f, m) for m in mappings)]


def deletions(flows: Iterable[Flow], ipv6: bool) -> bytes:
    """
    The C{conntrack -R} input that deletes C{flows}, each by its exact
    original tuple.
    """
    family = "-f ipv6 " if ipv6 else ""
    return "".join(
        f"-D {family}-p {f.protocol} -s {f.source} -d {f.destination}"
        f" --sport {f.sourcePort} --dport {f.destinationPort}\n"
        for f in flows
    ).encode("ascii")
