# -*- test-case-name: tests.natpmp.test_client -*-
"""
What the NAT-PMP client needs besides the codec and the request engine:
which reply answers which request (RFC 6886 s3.3, s3.5), what a reply
means, and how a request is named for a person.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from .._types import Mapping, ProtocolName
from ..errors import InvalidResponseError
from ._forwarded import ForwardedPortRequest
from ._wire import (
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Request,
    Response,
    ResultCode,
    errorForResult,
)

__all__ = [
    "LATE_REPLY_SECONDS",
    "checkResult",
    "describeRequest",
    "mappingFrom",
    "matches",
]

#: How long after a deletion was last sent a success with lifetime 0 for the
#: same port is taken for that deletion's late duplicate reply rather than an
#: invalid answer to a mapping request (RFC 6886 s3.3, s3.4).
LATE_REPLY_SECONDS = 30.0

_UNSUPPORTED_VERSION = int(ResultCode.UNSUPPORTED_VERSION)
_SUCCESS = int(ResultCode.SUCCESS)


def matches(request: Request, response: Response, lateDeletion: bool) -> bool:
    """
    Is C{response} the answer to C{request}?  The opcode must be the
    request's plus 128, and a mapping reply must echo the transport and
    internal port (RFC 6886 s3.3, s3.5; old routers garbled ports).  The
    unsupported version reply may carry opcode 0 or 128 whatever was asked
    (Errata 3618).  Only the reply to a L{ForwardedPortRequest} may echo
    another internal port than the request's 0: the external port granted,
    as a VPN gateway's did (see L{twisted_natpmp.natpmp._forwarded}).

    @param lateDeletion: a deletion of the same port was sent lately, so a
        success with lifetime 0 may be its late duplicate reply.
    """
    if isinstance(response, ErrorResponse):
        if response.opcode == RESPONSE_BIT | request.opcode:
            return True
        return (
            response.opcode in (0, RESPONSE_BIT)
            and response.resultCode == _UNSUPPORTED_VERSION
        )
    if isinstance(request, ExternalAddressRequest):
        return isinstance(response, ExternalAddressResponse)
    if not (
        isinstance(response, MapResponse)
        and response.transport == request.transport
        and (
            response.internalPort == request.internalPort
            # A VPN gateway's grant echoes internal port 0 (ProtonVPN now)
            # or the port granted (a 2023 capture), nothing else: a reply
            # for another mapping of this transport is not the grant.
            or (
                isinstance(request, ForwardedPortRequest)
                and response.internalPort in (0, response.externalPort)
            )
        )
    ):
        return False
    # A late duplicate reply to a mapping request must not confirm a
    # deletion of the same port, nor the reverse: a successful reply grants
    # a lifetime exactly when one was asked for (s3.3, s3.4).  Error replies
    # carry lifetime 0 whatever was asked (s3.5).  A success with lifetime 0
    # to a mapping request when no deletion of the port was sent lately is
    # an invalid answer, which fails the request at once (s3.3).
    if response.resultCode != _SUCCESS:
        return True
    if request.lifetime == 0:
        return response.lifetime == 0
    return response.lifetime != 0 or not lateDeletion


def checkResult(response: Response) -> Response:
    """
    Pass a successful reply through; raise for any other.

    @raise twisted_natpmp.errors.GatewayError: the error by meaning of the
        reply's non-zero result code (RFC 6886 s3.5).
    @raise InvalidResponseError: a success in a bare 8-byte header.
    """
    if response.resultCode != _SUCCESS:
        raise errorForResult(response.resultCode)
    if isinstance(response, ErrorResponse):
        raise InvalidResponseError(
            f"gateway answered success in a bare 8-byte header (opcode"
            f" {response.opcode})"
        )
    return response


def mappingFrom(
    response: Response, request: MapRequest, externalAddress: IPv4Address | None
) -> Mapping:
    """
    The L{Mapping} a successful reply to C{request} grants.

    @param externalAddress: the gateway's external address, as last heard
        (a map reply carries none).
    @raise InvalidResponseError: the reply grants no port or no lifetime
        (RFC 6886 s3.3).
    """
    assert isinstance(response, MapResponse)
    if response.externalPort == 0 or response.lifetime == 0:
        raise InvalidResponseError(
            f"gateway granted external port {response.externalPort} for"
            f" {response.lifetime} s: not a usable mapping"
        )
    return Mapping(
        transport=request.transport,
        internalPort=response.internalPort,
        externalPort=response.externalPort,
        lifetime=response.lifetime,
        epoch=response.epoch,
        externalAddress=externalAddress,
        # RFC 6886 s3.3: renew at half the lifetime, reckoned with the one
        # asked for if the gateway granted more.
        renewAfter=min(response.lifetime, request.lifetime) / 2,
        protocolName=ProtocolName.NATPMP,
    )


def describeRequest(request: Request) -> str:
    """
    Say what C{request} asks, for a log line or an error message.

    @return: e.g. C{"the TCP mapping request for port 8080"}.
    """
    if isinstance(request, ExternalAddressRequest):
        return "the external address request"
    assert isinstance(request, MapRequest)
    label = request.transport.name
    if isinstance(request, ForwardedPortRequest):
        return f"the {label} forwarded-port request"
    if request.lifetime:
        return f"the {label} mapping request for port {request.internalPort}"
    if request.internalPort:
        return f"the {label} deletion of port {request.internalPort}"
    return f"the deletion of every {label} mapping"
