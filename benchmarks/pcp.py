"""
PCP against NAT-PMP, the same bulk work against the same router in the same
run: map N ports, then delete them, from a LAN host of the interop lab
(L{benchmarks._pcpbulk}):

  - over NAT-PMP with our client, one request at a time, as RFC 6886 s3.1
    asks;
  - over PCP with our client and its window (RFC 6887 has no
    one-at-a-time rule; each reply names its mapping by nonce).

The two take turns, round after round, so that a burst of other load on
the machine falls on both; each rate is the best round.  Two gateways,
one after the other in the same lab:

  - Debian's miniupnpd (which speaks both).  It does the firewall work of
    each mapping (iptables) before it answers, one request at a time, so
    the window hides the round trip, not that work.  It deletes in time
    linear in its table (PROTOCOL.md Part B), and each slow answer draws
    retransmissions that cost as much again: 1,000 mappings took over ten
    minutes without finishing the first round, so fewer are mapped there
    (C{Sizes.pcpPorts}).
  - our own gateway (C{twistd natpmp-gateway}), which speaks both from one
    table and deletes in constant time: the 1,000 ports of issue 14
    (C{Sizes.pcpBulkPorts}), with its per-client quota and rate limit
    lifted (L{BulkGateway}), as one host asks for all of them.

Target, for each: PCP with its window at least 3x NAT-PMP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted_natpmp import Transport
from twisted_natpmp.pcp.client import WINDOW

from ._context import Context
from ._netlab import Lab, LabUnavailable, Miniupnpd, netLab
from ._pcpbulk import BulkGateway, measure
from ._report import Figure, Target, notMeasured, ratio

UNIT = "operations/s"
FIRST_PORT = 21000
TARGET = Target(">=", 3.0)


def _checker(lab: Lab) -> Callable[[str], None]:
    def check(who: str) -> None:
        left = lab.rules(Transport.UDP)
        if left:
            raise RuntimeError(f"{who} left {len(left)} mappings on miniupnpd")

    return check


def _figures(prefix: str, best: dict[str, float], what: str, same: str) -> list[Figure]:
    return [
        Figure(
            f"{prefix}.natpmp.rate",
            best["natpmp"],
            UNIT,
            f"NAT-PMP, one at a time: {what}",
        ),
        Figure(
            f"{prefix}.pcp.rate",
            best["pcp"],
            UNIT,
            f"PCP, {WINDOW} in flight: {what}",
        ),
        ratio(
            f"{prefix}.vs_natpmp",
            ("PCP's rate", best["pcp"]),
            ("NAT-PMP's rate", best["natpmp"]),
            f"PCP with its window / NAT-PMP one at a time, {same}",
            TARGET,
        ),
    ]


def _ports(count: int) -> Sequence[int]:
    return range(FIRST_PORT, FIRST_PORT + count)


async def run(context: Context) -> list[Figure]:
    small = _ports(context.sizes.pcpPorts)
    bulk = _ports(context.sizes.pcpBulkPorts)
    try:
        async with netLab(context.directory / "pcp") as lab:
            theirs = await measure(lab, Miniupnpd(lab), small, _checker(lab))
            ours = await measure(lab, BulkGateway(lab), bulk)
    except LabUnavailable as e:
        return [
            notMeasured("pcp.vs_natpmp", "x", "PCP / NAT-PMP, miniupnpd", str(e)),
            notMeasured(
                "pcp.ours.vs_natpmp", "x", "PCP / NAT-PMP, our gateway", str(e)
            ),
        ]
    return _figures(
        "pcp",
        theirs,
        f"map then delete {len(small)} ports on miniupnpd",
        "on miniupnpd",
    ) + _figures(
        "pcp.ours",
        ours,
        f"map then delete {len(bulk):,} ports on our gateway",
        "on our gateway",
    )
