# -*- test-case-name: tests.pcp.test_build -*-
"""
The PCP messages a client sends, built from what it knows, and what it makes
of a successful MAP response.

Pure code: no I/O, no reactor, no logging (the renewal point takes its
randomness as an argument).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from .._types import IPAddress, Mapping, ProtocolName, Transport
from ._fields import Opcode, noPreference, protocolNumber
from ._opdata import MapData
from ._options import Option, PreferFailureOption
from ._results import ResultCode
from ._wire import Request, Response

__all__ = [
    "announceRequest",
    "deleteRequest",
    "grantedMapping",
    "mapRequest",
    "renewalDelay",
]


def announceRequest(clientAddress: IPAddress) -> Request:
    """
    An ANNOUNCE request: the probe for a PCP server (RFC 6887 s14.1).

    @param clientAddress: the client's own address (RFC 6887 s8.2).
    @return: the 24-byte request, lifetime 0.
    """
    return Request(Opcode.ANNOUNCE, 0, clientAddress)


def mapRequest(
    clientAddress: IPAddress,
    nonce: bytes,
    transport: Transport,
    internalPort: int,
    lifetime: int,
    suggestedPort: int = 0,
    suggestedAddress: IPAddress | None = None,
    preferFailure: bool = False,
    options: tuple[Option, ...] = (),
) -> Request:
    """
    A MAP request that creates or renews a mapping (RFC 6887 s11.1).

    @param clientAddress: the client's own address, as the server will see
        the packet's source (RFC 6887 s8.2).
    @param nonce: the mapping's nonce, the same for every renewal and the
        deletion.
    @param transport: TCP or UDP.
    @param internalPort: the port on this host.
    @param lifetime: the lifetime asked for, in seconds (not 0: see
        L{deleteRequest}).
    @param suggestedPort: the external port wanted (on renewal, the one
        granted before), 0 for no preference.
    @param suggestedAddress: the external address wanted; L{None} for no
        preference, sent as the client address family's all-zeros address
        (RFC 6887 s11.1).
    @param preferFailure: add PREFER_FAILURE: the server answers
        CANNOT_PROVIDE_EXTERNAL rather than grant another port or address
        (RFC 6887 s13.2).  It needs a suggested port.
    @param options: further options, after PREFER_FAILURE.
    @return: the request.
    @raise ValueError: C{lifetime} is 0, or PREFER_FAILURE is asked for with
        neither a port nor an address suggested (a server answers
        MALFORMED_OPTION).
    """
    if lifetime == 0:
        raise ValueError("a lifetime of 0 deletes: use deleteRequest")
    if suggestedAddress is None:
        suggestedAddress = noPreference(clientAddress)
    if preferFailure:
        if suggestedPort == 0 and not int(suggestedAddress):
            raise ValueError("PREFER_FAILURE needs a suggested port or address")
        options = (PreferFailureOption(), *options)
    data = MapData(
        nonce,
        protocolNumber(transport),
        internalPort,
        suggestedPort,
        suggestedAddress,
    )
    return Request(Opcode.MAP, lifetime, clientAddress, data, options)


def deleteRequest(
    clientAddress: IPAddress,
    nonce: bytes,
    transport: Transport,
    internalPort: int,
) -> Request:
    """
    A MAP request that deletes a mapping: lifetime 0, the mapping's own
    nonce (a server refuses another: miniupnpd answers NOT_AUTHORIZED), no
    suggestion (RFC 6887 s15).

    @param clientAddress: the client's own address.
    @param nonce: the nonce the mapping was made with.
    @param transport: TCP or UDP.
    @param internalPort: the port on this host.
    @return: the request.
    """
    data = MapData(
        nonce, protocolNumber(transport), internalPort, 0, noPreference(clientAddress)
    )
    return Request(Opcode.MAP, 0, clientAddress, data)


def grantedMapping(response: Response, renewAfter: float | None = None) -> Mapping:
    """
    The mapping a successful MAP response grants.

    @param response: the response, already matched to its request.
    @param renewAfter: when to renew, in seconds after the grant (see
        L{renewalDelay}).
    @return: the mapping, with the assigned external port and address and
        the granted lifetime (never the ones asked for).
    @raise ValueError: the response is not a successful MAP for TCP or UDP.
    """
    data = response.data
    if (
        response.resultCode != ResultCode.SUCCESS
        or not isinstance(data, MapData)
        or data.transport is None
    ):
        raise ValueError("not a successful MAP response for TCP or UDP")
    return Mapping(
        data.transport,
        data.internalPort,
        data.externalPort,
        response.lifetime,
        response.epoch,
        data.externalAddress,
        renewAfter,
        ProtocolName.PCP,
    )


def renewalDelay(
    lifetime: float, random: Callable[[], float] = _random.random
) -> float:
    """
    When to send the first renewal: a uniformly random point from 1/2 to
    5/8 of the granted lifetime (RFC 6887 s11.2.1).

    @param lifetime: the granted lifetime, in seconds.
    @param random: a source of floats in [0, 1).
    @return: seconds after the grant.
    """
    return lifetime * (0.5 + 0.125 * random())
