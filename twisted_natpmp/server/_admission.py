# -*- test-case-name: tests.server.test_responder -*-
"""
Which requests a gateway takes at all: where each datagram comes from (RFC
6886 s3.3, RFC 6887 s8.2; IPv6 sources speak PCP only, RFC 6886 s1) and
whether a mapping request is within its source's rate limit
(L{RateLimiter}); what is not taken is counted as dropped
(L{twisted_natpmp._droplog.DropLog}).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv6Address, ip_address

from .._droplog import DropLog
from .._types import IPAddress
from ..pcp._serverchecks import Network
from ._ratelimit import RateLimiter

__all__ = ["Endpoint", "admitted", "isInternal", "sourceClient"]

Endpoint = tuple[str, int]


def isInternal(address: IPAddress, networks: Iterable[Network]) -> bool:
    """
    Whether requests from C{address} are served (RFC 6886 s3.3): it is in
    one of the internal C{networks}.
    """
    return any(address in network for network in networks)


def sourceClient(
    packet: bytes,
    source: Endpoint,
    networks: Iterable[Network],
    pcp: bool,
    drops: DropLog,
) -> IPAddress | None:
    """
    The client C{packet} is from, if it is to be answered at all; if not,
    it is counted in C{drops}.

    @param networks: the internal networks, where requests may come from.
    @param pcp: whether PCP is answered (the only protocol of IPv6
        sources).
    """
    host = str(source[0])
    try:
        client: IPAddress = ip_address(host.partition("%")[0])
    except ValueError:
        drops.drop(host, "not an IP source")
        return None
    if isinstance(client, IPv6Address):
        if client.ipv4_mapped is not None:
            # A dual-stack socket's form of an IPv4 source.
            client = client.ipv4_mapped
        elif not packet[:1] or packet[0] in (0, 1) or not pcp:
            # RFC 6886 s1: NAT-PMP is IPv4 only; PCP serves IPv6.
            drops.drop(host, "NAT-PMP (or nothing) from an IPv6 source")
            return None
    if not isInternal(client, networks):
        drops.drop(host, "outside the internal networks")
        return None
    return client


def admitted(
    host: str, rateLimiter: RateLimiter | None, readmitting: bool, drops: DropLog
) -> bool:
    """
    Whether a mapping request from C{host} is within its rate limit; if
    not, it is counted in C{drops}.

    @param rateLimiter: each source's limit, or L{None} for none.
    @param readmitting: whether the request was admitted once already (it
        is run again after a failed batch): it is, again.
    """
    if readmitting:
        return True
    if rateLimiter is not None and not rateLimiter.allow(host):
        drops.drop(host, "over the rate limit")
        return False
    return True
