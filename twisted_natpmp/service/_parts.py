# -*- test-case-name: tests.service.natpmp,tests.service.test_service -*-
"""
How L{PortMapperService <twisted_natpmp.service.PortMapperService>} is put
together from its parts: its L{Declared} declarations and the
L{GatewayFollower} that follows the gateway, with the defaults of the
mapper and of gateway discovery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from ipaddress import IPv6Address, ip_address
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IListeningPort, IReactorTime

from .._types import IPAddress
from ..announce import AnnouncementProtocol
from ..discovery import defaultGateway, defaultGateway6
from ..interfaces import IPortMapper
from ..pcp._nonces import NonceKeeper
from ._declared import Declared
from ._gateways import GatewayFollower
from .declarations import MappingDeclaration
from .policy import defaultBackoff
from .stop import deleteAll

if TYPE_CHECKING:
    from ._service import PortMapperService


def assemble(
    service: PortMapperService,
    reactor: IReactorTime,
    mappings: Iterable[MappingDeclaration],
    *,
    gateway: IPAddress | str | None,
    discoverGateway: Callable[[], IPAddress] | None,
    clientFactory: Callable[[IPAddress], IPortMapper] | None,
    protocol: str,
    announcements: Callable[[AnnouncementProtocol], IListeningPort | None] | None,
    holdOff: Callable[[], float],
    healthInterval: float,
    gatewayCheckInterval: float,
    backoff: Callable[[int], float] | None,
    stopTimeouts: Sequence[float],
    stopDeadline: float,
    mapTimeouts: Sequence[float] | None,
    monotonic: Callable[[], float],
    allowPublicAddress: bool,
    nonces: NonceKeeper | None,
    internalAddress: IPAddress | str | None,
) -> tuple[Declared, GatewayFollower]:
    """
    The declarations and the gateway follower of C{service}, made with the
    arguments of its constructor (which documents them).

    @raise ValueError: C{protocol} is not C{"auto"}, C{"pcp"} or
        C{"natpmp"}, or C{internalAddress} is not an address.
    """
    internal = None if internalAddress is None else ip_address(str(internalAddress))
    if clientFactory is None:
        clientFactory = _defaultClientFactory(
            reactor, protocol, monotonic, nonces, internal
        )
    if discoverGateway is None:
        discoverGateway = (
            defaultGateway6 if isinstance(internal, IPv6Address) else defaultGateway
        )
    deleteAllOn = partial(
        deleteAll, reactor, timeouts=tuple(stopTimeouts), deadline=stopDeadline
    )
    declared = Declared(
        reactor,
        lambda: (service.gateway, service.externalAddress),
        lambda mapping: gateways.granted(mapping),
        backoff=backoff or defaultBackoff(),
        mapTimeouts=mapTimeouts,
        deleteTimeouts=stopTimeouts,
        monotonic=monotonic,
    )
    for declaration in mappings:
        declared.declare(declaration)
    gateways = GatewayFollower(
        reactor,
        declared,
        gateway=None if gateway is None else ip_address(str(gateway)),
        discoverGateway=discoverGateway,
        clientFactory=clientFactory,
        announcements=announcements,
        holdOff=holdOff,
        healthInterval=healthInterval,
        gatewayCheckInterval=gatewayCheckInterval,
        # RFC 6886 s3's rule is NAT-PMP's: PCP maps from any address
        # (auto may fall back to NAT-PMP, so it keeps the rule).
        allowPublicAddress=allowPublicAddress or protocol == "pcp",
        monotonic=monotonic,
        deleteAll=deleteAllOn,
        running=lambda: bool(service.running),
    )
    return declared, gateways


def _defaultClientFactory(
    reactor: IReactorTime,
    protocol: str,
    monotonic: Callable[[], float],
    nonces: NonceKeeper | None,
    internalAddress: IPAddress | None,
) -> Callable[[IPAddress], IPortMapper]:
    """
    The default C{clientFactory}: L{mapperFor}'s listening mapper for
    C{protocol}.

    @raise ValueError: C{protocol} is not one of L{PROTOCOLS}.
    """
    from ..negotiate import PROTOCOLS, mapperFor

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not auto, pcp or natpmp")

    def clientFactory(gateway: IPAddress) -> IPortMapper:
        return mapperFor(
            reactor,
            gateway,
            protocol,
            monotonic=monotonic,
            nonces=nonces,
            internalAddress=internalAddress,
        )

    return clientFactory
