# -*- test-case-name: tests.pcp.test_matching -*-
"""
What the PCP client needs besides the codec and the request engine: how a
datagram from the gateway is read (a PCP response, or a NAT-PMP-only
gateway's 8-byte "unsupported version"), which reply answers which request
(RFC 6887 s11.1: opcode, nonce, protocol and internal port), and how a
request is named for a person.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._fields import VERSION, Opcode
from ._opdata import MapData
from ._results import ResultCode
from ._wire import Request, Response, decodeResponse, isNATPMPUnsupportedVersion

__all__ = [
    "NATPMPUnsupportedVersion",
    "Reply",
    "decodeReply",
    "describeRequest",
    "matches",
]

_NATPMP_EPOCH = struct.Struct("!4xI")


@dataclass(frozen=True, slots=True)
class NATPMPUnsupportedVersion:
    """
    A NAT-PMP-only gateway's answer to a PCP request: 8 bytes, version 0,
    result 1 (RFC 6887 s9; RFC 6886 s3.5).  It carries no nonce, so it
    answers whatever was asked.

    @ivar epoch: its NAT-PMP epoch (not comparable with a PCP epoch).
    """

    epoch: int


#: What the client makes of a datagram from the gateway.
Reply = Response | NATPMPUnsupportedVersion


def decodeReply(packet: bytes) -> Reply:
    """
    Read a datagram from the gateway.

    @return: a L{NATPMPUnsupportedVersion} for exactly the NAT-PMP reply
        that means "speak NAT-PMP" (see
        L{isNATPMPUnsupportedVersion<twisted_natpmp.pcp._wire.isNATPMPUnsupportedVersion>}),
        else the decoded L{Response}.
    @raise twisted_natpmp.pcp._wire.MalformedPacket: anything else, such as
        miniupnpd's version-0 answer to a malformed request (result 3),
        which is no proof of NAT-PMP (RFC 6887 s8.3: dropped).
    """
    if isNATPMPUnsupportedVersion(packet):
        (epoch,) = _NATPMP_EPOCH.unpack(packet)
        return NATPMPUnsupportedVersion(epoch)
    return decodeResponse(packet)


def matches(request: Request, reply: Reply) -> bool:
    """
    Is C{reply} the answer to C{request}?

    A NAT-PMP "unsupported version" answers any request, and so does a
    PCP UNSUPP_VERSION in another version (header only, RFC 6887 s9) of
    the same opcode.  Otherwise the opcode must be the request's, and a
    MAP response must echo the nonce, protocol and internal port
    (RFC 6887 s11.1, s11.3).  A successful MAP response answers a deletion
    exactly when its lifetime is 0, so that a late duplicate of a grant
    does not confirm a deletion of the same mapping, nor the reverse.  An
    error response too short to carry the MAP data answers every MAP in
    flight (it cannot be told apart).
    """
    if isinstance(reply, NATPMPUnsupportedVersion):
        return True
    if reply.opcode != request.opcode:
        return False
    if reply.version != VERSION:
        return True
    if request.opcode is not Opcode.MAP:
        return True
    asked, got = request.data, reply.data
    assert isinstance(asked, MapData)
    if got is None:
        return reply.resultCode != ResultCode.SUCCESS
    if not (
        isinstance(got, MapData)
        and got.nonce == asked.nonce
        and got.protocol == asked.protocol
        and got.internalPort == asked.internalPort
    ):
        return False
    if reply.resultCode != ResultCode.SUCCESS:
        return True
    return (request.lifetime == 0) == (reply.lifetime == 0)


def describeRequest(request: Request) -> str:
    """
    Say what C{request} asks, for a log line or an error message.

    @return: e.g. C{"the PCP TCP mapping request for port 8080"}.
    """
    data = request.data
    if not isinstance(data, MapData):
        return f"the PCP {request.opcode.name} request"
    transport = data.transport
    label = transport.name if transport is not None else f"protocol {data.protocol}"
    if request.lifetime:
        return f"the PCP {label} mapping request for port {data.internalPort}"
    return f"the PCP {label} deletion of port {data.internalPort}"
