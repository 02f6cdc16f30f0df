# -*- test-case-name: tests.server.test_pcpresponder -*-
"""
The checks a PCP gateway makes of a decoded MAP request before it touches
the table (RFC 6887 s8.2, s11.1, s13): which options it acts on, for whom
the mapping is, and which transport.  Pure code: no I/O, no reactor.

Each check raises L{Rejected} with the result code to answer; the
responder (L{twisted_natpmp.pcp.responder}) turns it into an error
response built from the request's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from .._types import IPAddress, Transport
from ..server.backends._filters import RemoteFilter
from ._wire import (
    ALL_PROTOCOLS,
    FilterOption,
    MapData,
    Option,
    PreferFailureOption,
    Request,
    ResultCode,
    ThirdPartyOption,
    UnknownOption,
)

__all__ = ["MapPlan", "Rejected", "planMap", "remoteFilter"]

# RFC 6887 s13.3: an IPv4 remote prefix is counted in the 128-bit form.
_MAPPED_PREFIX_BITS = 96

Network = IPv4Network | IPv6Network


class Rejected(Exception):
    """
    A request the gateway refuses before it reaches the table.

    @ivar resultCode: what to answer.
    @ivar reason: why, the same for every such refusal (they add up by
        reason in the refusal log).
    """

    def __init__(self, resultCode: ResultCode, reason: str) -> None:
        super().__init__(resultCode, reason)
        self.resultCode = resultCode
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MapPlan:
    """
    What a MAP request asks of the table, once checked.

    @ivar client: whose mapping it is: the source, or the THIRD_PARTY
        address.
    @ivar transport: the transport mapped.
    @ivar preferFailure: whether PREFER_FAILURE was given (RFC 6887 s13.2).
    @ivar echoed: the options acted on, to echo in a success response
        (RFC 6887 s7.3): THIRD_PARTY, PREFER_FAILURE and FILTER; unknown
        optional options are ignored and not echoed.
    @ivar filters: the remote peers the mapping is limited to, from its
        FILTER options (empty: a FILTER of prefix length 0 removed them
        all); L{None} without FILTER options (the filters stay as they are).
    """

    client: IPAddress
    transport: Transport
    preferFailure: bool
    echoed: tuple[Option, ...]
    filters: tuple[RemoteFilter, ...] | None = None


def remoteFilter(option: FilterOption) -> RemoteFilter | None:
    """
    The remote peers a FILTER option allows (RFC 6887 s13.3), or L{None}
    for prefix length 0, which removes every filter.
    """
    if option.prefixLength == 0:
        return None
    address = option.remoteAddress
    if isinstance(address, IPv4Address):
        prefix = max(option.prefixLength - _MAPPED_PREFIX_BITS, 0)
        network: Network = IPv4Network((address, prefix), strict=False)
    else:
        network = IPv6Network((address, option.prefixLength), strict=False)
    return RemoteFilter(network, option.remotePort)


def _transport(data: MapData, lifetime: int) -> Transport:
    if data.protocol == ALL_PROTOCOLS:
        # RFC 6887 s11.1: with protocol 0 the internal port is ignored on
        # reception.  All protocols at once: no backend here forwards them.
        raise Rejected(ResultCode.UNSUPP_PROTOCOL, "protocol 0 (all) not mapped")
    transport = data.transport
    if transport is None:
        # RFC 6887 s11.1 (SCTP, and any other): miniupnpd answers
        # NO_RESOURCES; the RFC's code is UNSUPP_PROTOCOL.
        raise Rejected(ResultCode.UNSUPP_PROTOCOL, "protocol not mapped")
    if data.internalPort == 0 and lifetime != 0:
        # RFC 6887 s11.1: internal port 0 is "all ports", legal in a
        # deletion (every mapping of the transport this nonce holds) and
        # when asking for all ports, which this gateway's policy refuses.
        raise Rejected(ResultCode.NOT_AUTHORIZED, "a mapping of all ports")
    return transport


def planMap(
    request: Request,
    source: IPAddress,
    thirdPartyFrom: Sequence[Network],
    filtering: bool = False,
) -> MapPlan:
    """
    Check a decoded MAP request from C{source}.

    @param thirdPartyFrom: the networks whose hosts may ask for others with
        THIRD_PARTY (RFC 6887 s13.1); empty: nobody (UNSUPP_OPTION).
    @param filtering: whether the backend enforces FILTER (RFC 6887 s13.3);
        if not, FILTER is refused with UNSUPP_OPTION, never accepted and
        ignored as miniupnpd does.
    @raise Rejected: with the code to answer.
    """
    data = request.data
    assert isinstance(data, MapData)
    client = source
    preferFailure = False
    echoed: list[Option] = []
    filters: list[RemoteFilter] | None = None
    for option in request.options:
        if isinstance(option, ThirdPartyOption):
            if not any(source in network for network in thirdPartyFrom):
                # RFC 6887 s13.1: a server that does not allow it refuses.
                raise Rejected(ResultCode.UNSUPP_OPTION, "THIRD_PARTY not allowed")
            if option.internalAddress == source:
                # RFC 6887 s13.1: THIRD_PARTY naming the sender itself.
                raise Rejected(
                    ResultCode.MALFORMED_REQUEST, "THIRD_PARTY names the sender"
                )
            client = option.internalAddress
            echoed.append(option)
        elif isinstance(option, PreferFailureOption):
            preferFailure = True
            echoed.append(option)
        elif isinstance(option, FilterOption):
            if not filtering:
                raise Rejected(
                    ResultCode.UNSUPP_OPTION, "FILTER not enforced by the backend"
                )
            if filters is None:
                filters = []
            allowed = remoteFilter(option)
            if allowed is None:
                filters.clear()  # RFC 6887 s13.3: prefix length 0
            else:
                filters.append(allowed)
            echoed.append(option)
        else:
            # RFC 6887 s7.3: the codec refused unknown mandatory options;
            # the optional ones are ignored.
            assert isinstance(option, UnknownOption) and not option.mandatory
    transport = _transport(data, request.lifetime)
    if (
        preferFailure
        and data.externalPort == 0
        and data.externalAddress.packed == bytes(len(data.externalAddress.packed))
    ):
        # RFC 6887 s13.2: PREFER_FAILURE needs a suggestion to insist on.
        raise Rejected(
            ResultCode.MALFORMED_OPTION, "PREFER_FAILURE without a suggestion"
        )
    if preferFailure and request.lifetime == 0:
        # RFC 6887 s13.2: a deletion has nothing to prefer.
        raise Rejected(ResultCode.MALFORMED_OPTION, "PREFER_FAILURE on a deletion")
    return MapPlan(
        client,
        transport,
        preferFailure,
        tuple(echoed),
        None if filters is None else tuple(filters),
    )
