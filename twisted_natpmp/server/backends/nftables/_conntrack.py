# -*- test-case-name: tests.server.nftables.test_conntrack -*-
"""
Ending the flows through a mapping that has gone: removing its map element
stops new flows only, and established conntrack entries outlive it
(observed), so the backend deletes them with C{conntrack}.

Every C{conntrack -D} walks the whole connection table, whatever its
filter (observed: about 9 ms of kernel time each, even for an exact
tuple), so the backend does not run one per mapping.  After each batch
that removed mappings it lists the flows once per address family, and
deletes those through the mappings, by their exact tuple, in one
C{conntrack -R} run of C{-D} lines (none when there are none, as in most
batches).  The elements are gone before the listing, so no new flow can
start through them after it.

The listing is narrowed in C{conntrack} itself, not here: for IPv4 only
the flows whose destination was translated (C{--dst-nat}: the original
destination is not the reply's source), a small part of a router's table,
most of which is the LAN's own outbound flows; the matching is one pass
over them, each flow looked up by (protocol, port) among the mappings.

A flow through a forward is one that was DNATed, whose original
destination port is the external port and whose reply comes from the
internal address and port: what the DNAT made, and nothing a LAN host
opened itself (even to the same address and port).  Through an IPv6
pinhole: one whose original destination is the host's address and port,
from a source outside the internal networks.

At start the gateway has lost the mappings of its run before (killed, say),
whose established flows would otherwise keep going to their old internal
hosts until conntrack times them out: once the table is made afresh, the
flows a DNAT made to the external address on a port of the gateway's
range are listed and deleted (L{staleFlows}).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address

from ...._types import IPAddress
from ..._entries import GatewayMapping

__all__ = [
    "DELETE_ARGUMENTS",
    "Flow",
    "deletions",
    "flowsThrough",
    "listArguments",
    "parseFlows",
    "staleFlows",
    "through",
]

#: The C{conntrack} arguments that read deletions from standard input.
DELETE_ARGUMENTS = ("-R", "/dev/stdin")


def listArguments(ipv6: bool) -> tuple[str, ...]:
    """
    The C{conntrack} arguments that list the IPv4 flows a DNAT made (or
    the IPv6 flows).
    """
    return ("-L", "-f", "ipv6") if ipv6 else ("-L", "-f", "ipv4", "--dst-nat")


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


def through(
    flow: Flow,
    mapping: GatewayMapping,
    internal: Sequence[IPv4Network | IPv6Network] = (),
) -> bool:
    """
    Whether C{flow} goes through C{mapping}.

    @param internal: the internal networks, whose hosts' own flows to a
        pinhole's host do not go through the pinhole.
    """
    return bool(flowsThrough([flow], [mapping], internal))


def _address(text: str) -> IPAddress | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def flowsThrough(
    flows: Iterable[Flow],
    mappings: Sequence[GatewayMapping],
    internal: Sequence[IPv4Network | IPv6Network] = (),
) -> list[Flow]:
    """
    The C{flows} that go through any of C{mappings}: one pass, each flow
    looked up by its protocol and original destination port.

    @param internal: the internal networks (see L{through}).
    """
    # (protocol, original destination port) -> (internal address, port)
    forwards: dict[tuple[str, int], set[tuple[IPAddress, int]]] = {}
    pinholes: dict[tuple[str, int], set[IPAddress]] = {}
    for m in mappings:
        if m.client.version == 6:
            pinholes.setdefault((m.transport.label, m.internalPort), set()).add(
                m.client
            )
        else:
            forwards.setdefault((m.transport.label, m.externalPort), set()).add(
                (m.client, m.internalPort)
            )
    found = []
    for f in flows:
        port = (f.protocol, f.destinationPort)
        if port in forwards:
            # DNATed: its replies come from another address than it went to.
            if f.replySource == f.destination:
                continue
            reply = _address(f.replySource)
            if (reply, f.replySourcePort) in forwards[port]:
                found.append(f)
        elif port in pinholes:
            source = _address(f.source)
            if _address(f.destination) in pinholes[port] and not any(
                source in network for network in internal
            ):
                found.append(f)
    return found


def staleFlows(
    flows: Iterable[Flow], addresses: Collection[IPv4Address], low: int, high: int
) -> list[Flow]:
    """
    The C{flows} that a DNAT made to one of C{addresses} on a port from
    C{low} to C{high}: at start, those an earlier run of the gateway may
    have made (the range is the gateway's to grant, so a host's own DNAT
    there is cut too).
    """
    return [
        f
        for f in flows
        if low <= f.destinationPort <= high
        and f.replySource != f.destination
        and _address(f.destination) in addresses
    ]


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
