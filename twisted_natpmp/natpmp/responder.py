# -*- test-case-name: tests.server.test_responder -*-
"""
The NAT-PMP side of a gateway (RFC 6886): version-0 request bytes in,
response bytes out, over the protocol-neutral gateway core
(L{twisted_natpmp.server.gateway.Gateway}, as a
L{twisted_natpmp.server.dispatch.GatewayCore}) and its mapping table.

The dispatcher (L{twisted_natpmp.server.dispatch.VersionDispatcher}) hands
this responder the packets of version 0, and, until a PCP responder sits
beside it, every other version too: those get Unsupported Version.  It has
already dropped responses (the top bit of the opcode set) and packets from
outside the internal networks.

Choices where RFC 6886 is silent or loose (each tested):

  - A request with an unknown opcode below 128 (s3.5) is echoed with the top
    bit of the opcode set and result 5 when it is long enough (8 bytes or
    more) to hold a result: result code at bytes 2-3 and the epoch at bytes
    4-7, because every response carries the epoch (s3.5).  A shorter one
    is answered with the 8-byte header alone (opcode|128, result 5, epoch),
    as miniupnpd does.
  - The unsupported-version reply carries opcode 128 (Errata 3618), and
    answers any version but 0, so that a PCP (version 2) client falls back
    to NAT-PMP at once (RFC 6886 s1.1).
  - Packets shorter than 2 bytes and map requests shorter than 12 bytes are
    dropped and counted, never answered.  Trailing bytes are ignored.
  - Internal port 0 with a non-zero lifetime is refused with result 2 (Not
    Authorized/Refused): internal port 0 only means "all my mappings" with
    lifetime 0 (s3.4); miniupnpd answers 2 too.  With a L{forwarder
    <NATPMPResponder.forwarder>} (the VPN profile,
    L{twisted_natpmp.server.vpn}) it is granted a forwarded port instead, a
    departure from s3.4 on purpose, as VPN gateways do.
  - A deletion of all mappings (internal port 0, lifetime 0) is honoured
    whatever the suggested external port, although s3.4 says the client
    sends 0 there; it deletes only the request's transport (s3.4; miniupnpd
    deletes both).
  - Without an external address (L{None}, or 0.0.0.0) every request but a
    deletion gets result 3 (s3.2, s3.5); deleting always works (s3.4).
  - A refusal by meaning (the table's, or a backend's
    L{twisted_natpmp.errors.GatewayError}) is answered with NAT-PMP's code
    for that meaning (L{RESULT_FOR_ERROR}); a meaning NAT-PMP has no code
    for gets the error's own code if it carries one, else 2 (refused).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from ..errors import GatewayError, NetworkFailureError, NotAuthorizedError
from ..server._entries import Refused
from ._wire import (
    RESULT_FOR_ERROR,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    ResultCode,
    UnsupportedOpcode,
    UnsupportedVersion,
    decodeRequest,
)

if TYPE_CHECKING:
    from .._types import IPAddress
    from ..server.dispatch import GatewayCore
    from ..server.vpn import VPNProfile

__all__ = ["NATPMPResponder", "resultFor"]

_RESPONSE_BIT = 0x80
_HEADER_SIZE = 8
_UNSPECIFIED = IPv4Address(0)
_SUCCESS = int(ResultCode.SUCCESS)


def resultFor(error: GatewayError) -> int:
    """
    The NAT-PMP result code (RFC 6886 s3.5) for a refusal named by meaning:
    the code of its class (or of the nearest base class that has one); else
    the code it carries, when it carries one that is not another
    protocol's; else 2, Not Authorized/Refused.
    """
    for kind in type(error).__mro__:
        code = RESULT_FOR_ERROR.get(kind)  # type: ignore[call-overload]
        if code is not None:
            return code
    if error.resultCode and error.protocol in (None, "natpmp"):
        return error.resultCode
    return int(ResultCode.NOT_AUTHORIZED)


class NATPMPResponder:
    """
    Answers NAT-PMP requests (RFC 6886) for a gateway.

    @ivar gateway: the protocol-neutral core (a
        L{twisted_natpmp.server.gateway.Gateway}): the table, the external
        address, the rate limit, the drop and refusal logs.
    """

    #: The protocol, as the refusal log names it.
    name = "NAT-PMP"

    #: What grants internal port 0 with a lifetime (the VPN profile), or
    #: L{None}: refused (RFC 6886 s3.4).
    forwarder: VPNProfile | None = None

    def __init__(self, gateway: GatewayCore) -> None:
        self.gateway = gateway

    def respond(self, packet: bytes, client: IPAddress) -> bytes | None:
        """
        Answer one datagram from C{client}, already known to be internal.

        @return: the response, or L{None} when the packet is not answered
            (the reason is counted in the gateway's drop log).
        """
        gateway = self.gateway
        try:
            request = decodeRequest(packet)
        except UnsupportedVersion:
            # RFC 6886 s3.5 with Errata 3618: opcode 128, result 1.
            return ErrorResponse(
                _RESPONSE_BIT, ResultCode.UNSUPPORTED_VERSION, gateway.epoch()
            ).encode()
        except UnsupportedOpcode as e:
            return self._unsupportedOpcode(e.opcode, packet)
        except MalformedPacket as e:
            gateway.drops.drop(str(client), "malformed", e.reason)
            return None
        if isinstance(request, ExternalAddressRequest):
            return self._externalAddress().encode()
        if not gateway.admit(str(client)):
            return None
        return self._map(client, request).encode()

    def announcement(self) -> bytes | None:
        """
        The packet to multicast now (RFC 6886 s3.2.1), with the current
        epoch; L{None} without an external address.
        """
        if self.gateway.externalAddress is None:
            return None
        return self._externalAddress().encode()

    def _externalAddress(self) -> ExternalAddressResponse:
        external = self.gateway.externalAddress
        if external is None:
            # RFC 6886 s3.2: the address is 0 when the result is not.
            return ExternalAddressResponse(
                ResultCode.NETWORK_FAILURE, self.gateway.epoch(), _UNSPECIFIED
            )
        return ExternalAddressResponse(
            ResultCode.SUCCESS, self.gateway.epoch(), external
        )

    def _unsupportedOpcode(self, opcode: int, packet: bytes) -> bytes:
        # RFC 6886 s3.5: the entire request, opcode | 128, result 5.
        epoch = self.gateway.epoch()
        if len(packet) < _HEADER_SIZE:
            return ErrorResponse(
                opcode | _RESPONSE_BIT, ResultCode.UNSUPPORTED_OPCODE, epoch
            ).encode()
        reply = bytearray(packet)
        reply[1] = opcode | _RESPONSE_BIT
        reply[2:4] = ResultCode.UNSUPPORTED_OPCODE.to_bytes(2, "big")
        reply[4:8] = epoch.to_bytes(4, "big")
        return bytes(reply)

    def _map(self, client: IPAddress, request: MapRequest) -> MapResponse:
        gateway = self.gateway
        transport = request.transport
        internalPort = request.internalPort
        externalPort = lifetime = 0
        result = _SUCCESS
        try:
            if request.lifetime == 0:
                # Deleting works with or without an external address (s3.4).
                if internalPort == 0:
                    gateway.deleteAll(client, transport)
                else:
                    gateway.delete(client, transport, internalPort)
            elif gateway.externalAddress is None:
                # RFC 6886 s3.5: no external address yet, nothing granted.
                raise Refused(NetworkFailureError(), "no external address yet")
            elif internalPort == 0 and self.forwarder is not None:
                # A VPN gateway's forwarded port: a departure from s3.4 on
                # purpose (twisted_natpmp.server.vpn); the reply keeps 0.
                mapping = self.forwarder.forward(client, transport)
                externalPort = mapping.externalPort
                lifetime = mapping.lifetime
            elif internalPort == 0:
                # RFC 6886 s3.4: internal port 0 only deletes.
                raise Refused(NotAuthorizedError(), "internal port 0 with a lifetime")
            else:
                mapping = gateway.map(
                    client,
                    transport,
                    internalPort,
                    request.suggestedExternalPort,
                    request.lifetime,
                )
                externalPort = mapping.externalPort
                lifetime = mapping.lifetime
        except Refused as refusal:
            result = resultFor(refusal.error)
            gateway.refused(client, refusal, f"answered result {result}")
        return MapResponse(
            transport, result, gateway.epoch(), internalPort, externalPort, lifetime
        )
