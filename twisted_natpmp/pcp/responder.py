# -*- test-case-name: tests.server.test_pcpresponder -*-
"""
The PCP side of a gateway (RFC 6887): version-2 request bytes in, response
bytes out, over the protocol-neutral gateway core
(L{twisted_natpmp.server.gateway.Gateway}, as a
L{twisted_natpmp.server.dispatch.GatewayCore}) and the mapping table it
shares with NAT-PMP.

The dispatcher hands it version 2 and every version it has no responder
for (UNSUPP_VERSION naming 2, RFC 6887 s9), never 0 (NAT-PMP) or 1 (RFC
6886 s1.1: 1 is never used; it gets NAT-PMP's Unsupported Version).  Where
this responder departs from miniupnpd, or chooses where the RFC leaves a
choice, the package docstring of L{twisted_natpmp.server} says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import TYPE_CHECKING

from ..errors import (
    CannotProvideExternalError,
    NetworkFailureError,
    NotAuthorizedError,
)
from ..server._entries import DEFAULT_MAX_LIFETIME, DEFAULT_MIN_LIFETIME, Refused
from ._serverchecks import MapPlan, Network, Rejected, planMap
from ._wire import (
    MalformedPacket,
    MapData,
    Opcode,
    Request,
    Response,
    ResultCode,
    decodeRequest,
    errorForResult,
    errorResponse,
    isShortLived,
    resultForError,
)

if TYPE_CHECKING:
    from .._types import IPAddress
    from ..server.dispatch import GatewayCore

__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_MIN_LIFETIME",
    "LONG_ERROR_LIFETIME",
    "SHORT_ERROR_LIFETIME",
    "PCPResponder",
    "errorLifetime",
]

#: The lifetime of a short-lived error (RFC 6887 s7.4: 30 s).
SHORT_ERROR_LIFETIME = 30
#: The lifetime of a long-lived error (RFC 6887 s7.4: 30 minutes;
#: miniupnpd sends 0).
LONG_ERROR_LIFETIME = 1800


# The fixed reasons the refusal log adds up decoding errors by (the codec's
# own words, which vary, go in the detail).
_REASONS = {
    ResultCode.UNSUPP_VERSION: "unsupported version",
    ResultCode.MALFORMED_REQUEST: "malformed request",
    ResultCode.UNSUPP_OPCODE: "unsupported opcode",
    ResultCode.UNSUPP_OPTION: "unsupported option",
    ResultCode.MALFORMED_OPTION: "malformed option",
}


def errorLifetime(code: int) -> int:
    """
    The lifetime an error response carries (RFC 6887 s7.4).
    """
    return SHORT_ERROR_LIFETIME if isShortLived(code) else LONG_ERROR_LIFETIME


def _isUnspecified(address: IPAddress) -> bool:
    return address.packed == bytes(len(address.packed))


class PCPResponder:
    """
    Answers PCP requests (RFC 6887) for a gateway: ANNOUNCE and MAP (with
    THIRD_PARTY when allowed, PREFER_FAILURE, and FILTER when the backend
    enforces it); PEER is answered UNSUPP_OPCODE (the backends make inbound
    forwards only).

    @ivar gateway: the protocol-neutral core.
    @ivar minLifetime: the shortest lifetime granted, in seconds.
    @ivar maxLifetime: the longest.
    @ivar thirdPartyFrom: the networks whose hosts may use THIRD_PARTY.
    """

    #: The protocol, as the refusal log names it.
    name = "PCP"

    def __init__(
        self,
        gateway: GatewayCore,
        *,
        minLifetime: int = DEFAULT_MIN_LIFETIME,
        maxLifetime: int = DEFAULT_MAX_LIFETIME,
        allowThirdParty: Iterable[Network | str] = (),
    ) -> None:
        """
        @raise ValueError: the lifetimes are not 1 <= min <= max < 2**32.
        """
        if not 1 <= minLifetime <= maxLifetime <= 2**32 - 1:
            raise ValueError(f"bad lifetime range {minLifetime}-{maxLifetime}")
        self.gateway = gateway
        self.minLifetime = minLifetime
        self.maxLifetime = maxLifetime
        self.thirdPartyFrom: tuple[Network, ...] = tuple(
            n if isinstance(n, IPv4Network | IPv6Network) else ip_network(n)
            for n in allowThirdParty
        )

    # What the gateway calls

    def respond(self, packet: bytes, client: IPAddress) -> bytes | None:
        """
        Answer one datagram from C{client}, already known to be internal.

        @return: the response, or L{None} when the packet is not answered
            (counted in the gateway's drop log).
        """
        gateway = self.gateway
        try:
            request = decodeRequest(packet)
        except MalformedPacket as e:
            if e.resultCode is None:
                gateway.drops.drop(str(client), "malformed", e.reason)
                return None
            # RFC 6887 s8.2: answered in a copy of the request, padded to a
            # multiple of 4 and at least 24 bytes; UNSUPP_VERSION carries 2
            # (s9).
            return self._error(
                client,
                packet,
                e.resultCode,
                _REASONS.get(e.resultCode, "malformed"),
                e.reason,
            )
        if request.clientAddress != client:
            # RFC 6887 s8.2: a NAT between the client and us.
            return self._error(
                client, packet, ResultCode.ADDRESS_MISMATCH, "client address mismatch"
            )
        if request.opcode is Opcode.ANNOUNCE:
            # RFC 6887 s14.1: a 24-byte success with the epoch.
            return Response(
                Opcode.ANNOUNCE, ResultCode.SUCCESS, 0, gateway.epoch()
            ).encode()
        if request.opcode is Opcode.PEER:
            # The backends (IMappingBackend) make inbound forwards only; an
            # outbound mapping's external port is the kernel's NAT's to
            # choose, which they cannot read or extend.
            return self._error(
                client, packet, ResultCode.UNSUPP_OPCODE, "PEER not supported"
            )
        if not gateway.admit(str(client)):
            return None
        try:
            plan = planMap(request, client, self.thirdPartyFrom, gateway.canFilter())
        except Rejected as e:
            return self._error(client, packet, e.resultCode, e.reason)
        if plan.client != client and not gateway.isInternal(plan.client):
            # RFC 6887 s13.1: only for hosts this gateway serves.
            return self._error(
                client,
                packet,
                ResultCode.NOT_AUTHORIZED,
                "THIRD_PARTY address outside the internal networks",
            )
        return self._map(client, packet, request, plan)

    def announcement(self) -> bytes:
        """
        The unsolicited ANNOUNCE to multicast now (RFC 6887 s14.1): a
        24-byte success response with the current epoch.
        """
        return Response(
            Opcode.ANNOUNCE, ResultCode.SUCCESS, 0, self.gateway.epoch()
        ).encode()

    # Internals

    def _error(
        self,
        client: IPAddress,
        packet: bytes,
        code: ResultCode,
        reason: str,
        detail: str = "",
    ) -> bytes:
        lifetime = errorLifetime(code)
        self.gateway.refused(
            client,
            Refused(errorForResult(code), reason, detail),
            f"answered PCP result {int(code)}",
        )
        return errorResponse(packet, code, lifetime, self.gateway.epoch())

    def _map(
        self, source: IPAddress, packet: bytes, request: Request, plan: MapPlan
    ) -> bytes:
        gateway = self.gateway
        data = request.data
        assert isinstance(data, MapData)
        client = plan.client
        pinhole = isinstance(client, IPv6Address)
        try:
            if request.lifetime == 0 and data.internalPort == 0:
                # RFC 6887 s11.1: internal port 0 in a deletion is "all
                # ports": every mapping of the transport this nonce owns;
                # those of another owner are not its to delete, and stay.
                try:
                    gateway.deleteAll(client, plan.transport, owner=data.nonce)
                except Refused as refusal:
                    if not isinstance(refusal.error, NotAuthorizedError):
                        raise
                return self._success(
                    request, data, plan, data.externalAddress, data.externalPort, 0
                )
            if request.lifetime == 0:
                # RFC 6887 s15: deleting needs the mapping's nonce; deleting
                # one that is not there succeeds.
                gateway.delete(
                    client, plan.transport, data.internalPort, owner=data.nonce
                )
                return self._success(
                    request, data, plan, data.externalAddress, data.externalPort, 0
                )
            if pinhole:
                # RFC 6887 s11.3: a pinhole's external port and address are
                # the internal ones.
                external: IPAddress = client
                if plan.preferFailure and data.externalPort not in (
                    0,
                    data.internalPort,
                ):
                    raise Refused(
                        CannotProvideExternalError(), "a pinhole keeps its port"
                    )
            elif gateway.externalAddress is None:
                raise Refused(NetworkFailureError(), "no external address yet")
            else:
                external = gateway.externalAddress
            suggested = data.externalAddress
            if not _isUnspecified(suggested) and suggested != external:
                # RFC 6887 s11.3, s13.2: we have one external address.
                if plan.preferFailure:
                    raise Refused(
                        CannotProvideExternalError(), "suggested address not ours"
                    )
            lifetime = min(max(request.lifetime, self.minLifetime), self.maxLifetime)
            mapping = gateway.map(
                client,
                plan.transport,
                data.internalPort,
                data.externalPort,
                lifetime,
                owner=data.nonce,
                exact=plan.preferFailure,
            )
            if plan.filters is not None:
                # RFC 6887 s13.3: enforced by the backend.
                gateway.setFilters(mapping, plan.filters)
        except Refused as refusal:
            code = resultForError(refusal.error)
            gateway.refused(source, refusal, f"answered PCP result {int(code)}")
            return errorResponse(packet, code, errorLifetime(code), gateway.epoch())
        return self._success(
            request, data, plan, external, mapping.externalPort, mapping.lifetime
        )

    def _success(
        self,
        request: Request,
        data: MapData,
        plan: MapPlan,
        external: IPAddress,
        port: int,
        lifetime: int,
    ) -> bytes:
        assigned = MapData(data.nonce, data.protocol, data.internalPort, port, external)
        return Response(
            Opcode.MAP,
            ResultCode.SUCCESS,
            lifetime,
            self.gateway.epoch(),
            assigned,
            plan.echoed,
        ).encode()
