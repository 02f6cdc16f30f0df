# -*- test-case-name: tests.service.natpmp,tests.service.test_service -*-
"""
L{PortMapperService}: an L{IService <twisted.application.service.IService>}
that keeps a declared set of ports mapped on the gateway for as long as it
runs: one L{MappingKeeper} per declaration (L{Declared}), one
L{GatewayWatch} for the gateway in use (found and followed by
L{GatewayFollower}), and L{deleteAll} when it stops.

It talks to an L{IPortMapper}, never to packets: by default the one
L{mapperFor <twisted_natpmp.negotiate.mapperFor>} makes for the protocol
chosen (C{"auto"}: PCP first, NAT-PMP if the gateway speaks only that), and
asks it no protocol-specific question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from ipaddress import IPv6Address, ip_address
from typing import Any, Literal

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger

from .._types import IPAddress, Mapping, Transport
from ..announce import AnnouncementProtocol
from ..discovery import defaultGateway, defaultGateway6
from ..interfaces import IMappingObserver, IPortMapper
from ..pcp._nonces import NonceKeeper
from ._declared import Declared
from ._gateways import GatewayFollower
from .declarations import (
    RECOMMENDED_LIFETIME,
    MappingDeclaration,
    MappingState,
    behindSecondNAT,
)
from .policy import (
    GATEWAY_CHECK_INTERVAL,
    HEALTH_INTERVAL,
    STOP_DEADLINE,
    STOP_TIMEOUTS,
    defaultBackoff,
    randomHoldOff,
)
from .stop import deleteAll

__all__ = ["PortMapperService"]

log = Logger()


class PortMapperService(Service):
    """
    Keep declared ports mapped on the gateway while the service runs.

    Declarations are given to the constructor or added and removed with
    L{addMapping} and L{removeMapping} at any time.  L{states} tells what
    each one holds; observers (L{IMappingObserver}) hear every change.

    @ivar gateway: the gateway in use, or L{None} before one is known.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        mappings: Iterable[MappingDeclaration] = (),
        *,
        gateway: IPAddress | str | None = None,
        discoverGateway: Callable[[], IPAddress] | None = None,
        clientFactory: Callable[[IPAddress], IPortMapper] | None = None,
        protocol: Literal["auto", "pcp", "natpmp"] | str = "auto",
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None]
        | None = None,
        holdOff: Callable[[], float] = randomHoldOff,
        healthInterval: float = HEALTH_INTERVAL,
        gatewayCheckInterval: float = GATEWAY_CHECK_INTERVAL,
        backoff: Callable[[int], float] | None = None,
        stopTimeouts: Sequence[float] = STOP_TIMEOUTS,
        stopDeadline: float = STOP_DEADLINE,
        mapTimeouts: Sequence[float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        allowPublicAddress: bool = False,
        nonces: NonceKeeper | None = None,
        internalAddress: IPAddress | str | None = None,
    ) -> None:
        """
        @param reactor: the clock; also the UDP and multicast reactor of the
            default C{clientFactory} and C{announcements}.
        @param mappings: the initial declarations.
        @param gateway: the gateway to use, IPv4 or IPv6 (PCP only); L{None}
            finds the default gateway with C{discoverGateway} and follows it
            as it changes.
        @param discoverGateway: returns the default gateway, or raises
            L{NoGatewayError <twisted_natpmp.errors.NoGatewayError>}; by
            default the default IPv4 gateway
            (L{defaultGateway <twisted_natpmp.discovery.defaultGateway>}),
            or the IPv6 one
            (L{defaultGateway6 <twisted_natpmp.discovery.defaultGateway6>})
            when C{internalAddress} is IPv6.
        @param clientFactory: makes a listening L{IPortMapper} for a gateway
            (one per gateway, stopped when done with); by default
            L{mapperFor <twisted_natpmp.negotiate.mapperFor>}'s mapper for
            C{protocol}, judging epochs on C{monotonic}.
        @param protocol: the protocol of the default C{clientFactory}:
            C{"auto"} (PCP, falling back to NAT-PMP at once on a NAT-PMP-only
            gateway's reply, RFC 6887 s9), C{"pcp"} or C{"natpmp"}.
            Ignored when a C{clientFactory} is given.
        @param announcements: starts listening with an L{AnnouncementProtocol}
            and returns the port, or L{None} for none; by default it binds
            224.0.0.1:5350 (a failure to bind is logged, not fatal).
        @param holdOff: returns the seconds to wait before re-mapping after a
            loss of state (RFC 6886 s3.7: uniform in 0-5 s).
        @param healthInterval: seconds between health checks (probes).
        @param gatewayCheckInterval: seconds between default-gateway checks,
            which also check again whether a host refused for a public
            address reaches the gateway from a private one now.
        @param backoff: given the number of failures so far, returns the
            seconds to wait before retrying (like the C{retryPolicy} of
            L{twisted.application.internet.ClientService}); by default
            L{defaultBackoff}.
        @param stopTimeouts: the retransmission schedule of deletions.
        @param stopDeadline: the longest L{stopService} waits for deletions.
        @param mapTimeouts: the retransmission schedule of one mapping
            attempt; after it, the attempt fails and is retried after the
            C{backoff}.  By default the protocol's: NAT-PMP's short
            L{MAP_TIMEOUTS <twisted_natpmp.service.policy.MAP_TIMEOUTS>}, the
            PCP client's own RFC 6887 s8.1.1 schedule.
        @param monotonic: returns the seconds of a clock that never steps,
            for the RFC 6886 s3.6 judgement of epochs.
        @param allowPublicAddress: map even when this host reaches the
            gateway from an address that is not private; by default the
            service then maps nothing and each state carries a
            L{PublicAddressError <twisted_natpmp.service.PublicAddressError>}
            (RFC 6886 s3 SHOULD), until the address is private.  A rule of
            NAT-PMP's: with C{protocol="pcp"} the service maps from any
            address (the address is still told, as allowed).
        @param nonces: where the default PCP client keeps its mappings'
            nonces (RFC 6887 s11.1); by default the per-user file
            (L{defaultPath <twisted_natpmp.pcp._nonces.defaultPath>}).
        @param internalAddress: the address the default PCP client maps
            for and binds to: for IPv6, the global address to open an
            inbound pinhole for (RFC 6887 s8.2: the client address is the
            source of the packets); by default the kernel's choice.  Not
            for NAT-PMP.
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
        self._deleteAll = partial(
            deleteAll, reactor, timeouts=tuple(stopTimeouts), deadline=stopDeadline
        )
        self._declared = Declared(
            reactor,
            lambda: (self.gateway, self.externalAddress),
            self._granted,
            backoff=backoff or defaultBackoff(),
            mapTimeouts=mapTimeouts,
            deleteTimeouts=stopTimeouts,
            monotonic=monotonic,
        )
        for declaration in mappings:
            self._declared.declare(declaration)
        self._gateways = GatewayFollower(
            reactor,
            self._declared,
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
            deleteAll=self._deleteAll,
            running=lambda: bool(self.running),
        )

    # What the parts hold

    @property
    def gateway(self) -> IPAddress | None:
        """
        The gateway in use, or L{None} before one is known.
        """
        return self._gateways.gateway

    def _granted(self, mapping: Mapping | None) -> None:
        if self._gateways.watch is not None:
            self._gateways.watch.granted(mapping)

    @property
    def _fixedGateway(self) -> IPAddress | None:
        return self._gateways.fixedGateway

    @property
    def _healthInterval(self) -> float:
        return self._gateways.healthInterval

    @property
    def _allowPublicAddress(self) -> bool:
        return self._gateways.allowPublicAddress

    # Declarations

    @property
    def externalAddress(self) -> IPAddress | None:
        """
        The gateway's external address, if known.
        """
        watch = self._gateways.watch
        return None if watch is None else watch.externalAddress

    @property
    def doubleNAT(self) -> bool:
        """
        Is the gateway's external address private (a second NAT upstream)?
        """
        return behindSecondNAT(self.externalAddress)

    def states(self) -> list[MappingState]:
        """
        The state of every declaration, in the order declared.
        """
        return [self._declared.state(keeper) for keeper in self._declared]

    def state(self, protocol: Transport, internalPort: int) -> MappingState:
        """
        The state of one declaration.

        @raise KeyError: nothing is declared for C{protocol} (the transport)
            and C{internalPort}.
        """
        key = (Transport(protocol), internalPort)
        return self._declared.state(self._declared.keepers[key])

    def addMapping(
        self,
        protocol: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = RECOMMENDED_LIFETIME,
    ) -> Deferred[MappingState]:
        """
        Declare a port to keep mapped, and map it now if the service runs.

        @return: fires with the declaration's state after the first attempt
            (mapped, or with its error: the service keeps trying either way),
            or at once if the service is not running or has no gateway; fails
            with L{ValueError} for a bad or duplicate declaration.
        """
        try:
            declaration = MappingDeclaration(
                Transport(protocol), internalPort, externalPort, lifetime
            )
            keeper = self._declared.declare(declaration)
        except ValueError as e:
            return fail(e)
        watch = self._gateways.watch
        if not self.running or self._gateways.client is None or watch is None:
            return succeed(self._declared.state(keeper))
        waiter = self._declared.nextState(declaration.key)
        keeper.start(watch.mapper, watch.context)
        return waiter

    def removeMapping(self, protocol: Transport, internalPort: int) -> Deferred[None]:
        """
        Forget a declaration and delete its mapping from the gateway.

        @return: fires when the gateway confirmed the deletion (or at once if
            nothing was mapped); fails with the deletion's error, or with
            L{KeyError} if nothing is declared for that port.
        """
        try:
            keeper = self._declared.keepers.pop((Transport(protocol), internalPort))
        except (KeyError, ValueError) as e:
            return fail(e)
        if not self.running or self._gateways.client is None:
            keeper.pause()
            keeper.forget()
        d = keeper.remove()
        self._declared.changed(keeper, removed=True)
        return d

    def addObserver(self, observer: IMappingObserver) -> None:
        """
        Call C{observer.mappingChanged(state)} on every change of state.
        """
        self._declared.observers.append(observer)

    def removeObserver(self, observer: IMappingObserver) -> None:
        """
        Stop calling C{observer}.
        """
        self._declared.observers.remove(observer)

    # IService

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._gateways.start()

    def stopService(self) -> Deferred[None]:
        """
        Stop keeping ports mapped and delete every mapping held.

        Every request still pending is cancelled first, so that nothing but
        the deletions goes out; the deletions are then sent together, each
        resent until answered on the s3.1 doubling schedule within the
        deadline (RFC 6886 s3.1, s3.4), and what could not be deleted is
        logged by name, with the reason.

        @return: fires when the gateway answered every deletion, or after
            at most C{stopDeadline} seconds.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        # What may be mapped on the gateway is known before anything is
        # cancelled: a request in flight may have been granted.
        held, unconfirmed = self._declared.held()
        waits: list[Deferred[Any]] = [self._gateways.stop()]
        client = self._gateways.client
        self._gateways.quiesce()
        if client is not None:
            d = self._deleteAll(client, held, "stopping", unconfirmed)
            waits.append(
                d.addErrback(lambda f: log.failure("deleting the mappings failed", f))
            )
        return DeferredList(waits, consumeErrors=True).addCallback(self._stopped)

    # Internals

    def _stopped(self, result: object) -> Deferred[None]:
        for keeper in self._declared:
            keeper.forget()
            keeper.error = None
            self._declared.changed(keeper, removed=True)
        return self._gateways.forget()


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
