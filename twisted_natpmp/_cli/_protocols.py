# -*- test-case-name: tests.cli.test_protocols -*-
"""
What the C{natpmp} command does differently by protocol, behind the one
L{IPortMapper}: making the mapper (L{listen}: C{--protocol},
C{--nonce-file}), the external address (PCP has no request for it),
C{--exact}, the deletion of every mapping of a transport (PCP has none),
the epoch shown, and the retransmission schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._types import IPAddress, Mapping, ProtocolName, Transport
from ..errors import CannotProvideExternalError
from ..interfaces import IExternalAddressQuery, IPortMapper
from ..natpmp.client import NATPMPClient
from ._options import Options

__all__ = [
    "addMapping",
    "cappedSchedule",
    "deleteAll",
    "externalAddress",
    "lastEpoch",
    "listen",
    "pcpSchedule",
]

#: How C{natpmp external} learns the address, by protocol, for a person
#: and the JSON object's C{how}.
HOW_NATPMP = "NAT-PMP external-address request"
HOW_PCP = "a 120 s PCP mapping of the client's own UDP port, deleted again"


def listen(
    reactor: Any,
    gateway: IPAddress,
    gatewayPort: int,
    protocol: str = "natpmp",
    nonceFile: Path | None = None,
    internalAddress: IPAddress | None = None,
) -> IPortMapper:
    """
    A listening mapper for C{gateway} in C{protocol} (C{"auto"}, C{"pcp"} or
    C{"natpmp"}, as L{twisted_natpmp.negotiate.mapperFor} takes them), its
    PCP nonces kept in C{nonceFile} (by default the per-user file), its PCP
    client bound to C{internalAddress} if given.

    @raise ValueError: NAT-PMP asked of an IPv6 gateway.
    """
    from ..negotiate import mapperFor
    from ..pcp._nonces import NonceStore

    return mapperFor(
        reactor,
        gateway,
        protocol,
        gatewayPort=gatewayPort,
        nonces=NonceStore(nonceFile),
        internalAddress=internalAddress,
    )


def cappedSchedule(schedule: Sequence[float], limit: float | None) -> tuple[float, ...]:
    """
    Cut a retransmission schedule so that its waits add up to at most
    C{limit} seconds; the last wait is shortened to fit.
    """
    if limit is None:
        return tuple(schedule)
    capped: list[float] = []
    total = 0.0
    for wait in schedule:
        if total + wait >= limit:
            capped.append(limit - total)
            break
        capped.append(wait)
        total += wait
    return tuple(capped)


def pcpSchedule(timeout: float | None) -> tuple[float, ...]:
    """
    The RFC 6887 s8.1.1 retransmission schedule of one command: 3 s,
    doubling, +-10 %, cut at C{timeout} (at most the client's 128 s).
    """
    from ..pcp._retransmit import CALL_LIMIT, retransmissionSchedule

    limit = CALL_LIMIT if timeout is None else min(timeout, CALL_LIMIT)
    return cappedSchedule(retransmissionSchedule(limit=limit), limit)


def _clientIn(client: IPortMapper) -> Any:
    """
    The client of the protocol in use: the mapper itself, or a negotiating
    mapper's PCP or NAT-PMP client.
    """
    from ..negotiate import NegotiatingMapper

    if isinstance(client, NegotiatingMapper):
        if client.protocolName is ProtocolName.NATPMP and client.natpmp is not None:
            return client.natpmp
        return client.pcp
    return client


def lastEpoch(client: IPortMapper) -> int | None:
    """
    The epoch of the gateway's last answer, if the client tells it.
    """
    inner = _clientIn(client)
    tracker = getattr(inner, "epochTracker", None)
    if tracker is None:
        tracker = getattr(getattr(inner, "conversation", None), "epochTracker", None)
    epoch = getattr(tracker, "lastEpoch", None)
    return epoch if isinstance(epoch, int) else None


async def externalAddress(
    client: IPortMapper, schedule: Sequence[float]
) -> tuple[IPAddress, str]:
    """
    The gateway's external address, and how it was learnt (after a
    fallback to NAT-PMP, by NAT-PMP's request).

    @raise TypeError: the mapper cannot tell it.
    """
    query = IExternalAddressQuery(client, None)
    if query is None:
        raise TypeError(f"{client!r} cannot ask for the external address")
    address: IPAddress = await query.externalAddress(timeouts=schedule)
    how = HOW_PCP if client.protocolName is ProtocolName.PCP else HOW_NATPMP
    return address, how


async def addMapping(
    client: IPortMapper, options: Options, schedule: Sequence[float]
) -> Mapping:
    """
    Map the port C{options} names.  With C{--exact}: PCP sends
    PREFER_FAILURE (RFC 6887 s13.2), so the gateway answers
    CANNOT_PROVIDE_EXTERNAL rather than another port; NAT-PMP has no such
    thing, so another port granted is deleted again and the command fails
    the same way.
    """
    from ..negotiate import NegotiatingMapper
    from ..pcp.client import PCPClient

    assert options.protocol is not None
    arguments = (
        options.protocol,
        options.internalPort,
        options.externalPort,
        options.lifetime,
    )
    if options.exact and isinstance(client, PCPClient | NegotiatingMapper):
        return await client.addMapping(*arguments, schedule, exactPort=True)
    mapping: Mapping = await client.addMapping(*arguments, timeouts=schedule)
    wanted = (
        options.internalPort if options.externalPort is None else options.externalPort
    )
    if options.exact and wanted and mapping.externalPort != wanted:
        await client.deleteMapping(options.protocol, options.internalPort, schedule)
        raise CannotProvideExternalError(
            meaning=f"the gateway granted port {mapping.externalPort}, not {wanted}",
            protocol=client.protocolName.value,
        )
    return mapping


async def deleteAll(
    client: IPortMapper, transport: Transport, schedule: Sequence[float]
) -> list[int] | None:
    """
    Delete every mapping of C{transport} this host has: NAT-PMP's one
    request (RFC 6886 s3.4); PCP has none, so each mapping whose nonce the
    nonce file keeps for this gateway is deleted, with that nonce.

    @return: L{None} for NAT-PMP; for PCP, the internal ports deleted.
    """
    inner = _clientIn(client)
    if isinstance(inner, NATPMPClient):
        await inner.deleteAllMappings(transport, timeouts=schedule)
        return None
    nonces = getattr(inner, "nonces", None)
    keys: list[Any] = getattr(nonces, "keys", list)()
    ports = sorted(
        {
            key.internalPort
            for key in keys
            if key.gateway == inner.gateway and key.transport is transport
        }
    )
    for port in ports:
        await inner.deleteMapping(transport, port, schedule)
    return ports
