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
from typing import Literal

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IListeningPort, IReactorTime

from .._types import IPAddress, Transport
from ..announce import AnnouncementProtocol
from ..interfaces import IMappingObserver, IPortMapper
from ..pcp._nonces import NonceKeeper
from ._parts import assemble
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
    randomHoldOff,
)

__all__ = ["PortMapperService"]


class PortMapperService(Service):
    """
    Keep declared ports mapped on the gateway while the service runs.

    Declarations are given to the constructor or added and removed with
    L{addMapping} and L{removeMapping} at any time.  L{states} tells what
    each one holds; observers (L{IMappingObserver}) hear every change.
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
        @param gateway: the gateway, IPv4 or IPv6 (PCP only); by default
            found with C{discoverGateway} and followed.
        @param discoverGateway: returns the default gateway or raises
            L{NoGatewayError <twisted_natpmp.errors.NoGatewayError>}; by
            default L{defaultGateway <twisted_natpmp.discovery.defaultGateway>},
            or L{defaultGateway6 <twisted_natpmp.discovery.defaultGateway6>}
            when C{internalAddress} is IPv6.
        @param clientFactory: makes a listening L{IPortMapper} for a gateway;
            by default L{mapperFor <twisted_natpmp.negotiate.mapperFor>}'s.
        @param protocol: the default C{clientFactory}'s: C{"auto"} (PCP, or
            NAT-PMP on a NAT-PMP-only reply, RFC 6887 s9), C{"pcp"}, C{"natpmp"}.
        @param announcements: listens with an L{AnnouncementProtocol}, returns
            the port or L{None}; by default binds 224.0.0.1:5350 (or logs why).
        @param holdOff: seconds to wait before re-mapping after a loss of
            state (RFC 6886 s3.7: uniform in 0-5 s).
        @param healthInterval: seconds between health checks (probes).
        @param gatewayCheckInterval: seconds between default-gateway checks.
        @param backoff: seconds to wait before a retry, given the failures so
            far; L{defaultBackoff <twisted_natpmp.service.policy.defaultBackoff>}.
        @param stopTimeouts: the retransmission schedule of deletions.
        @param stopDeadline: the longest L{stopService} waits for deletions.
        @param mapTimeouts: the retransmission schedule of one mapping
            attempt; by default the protocol's (RFC 6886 s3.1, RFC 6887 s8.1.1).
        @param monotonic: a clock that never steps (RFC 6886 s3.6 epochs).
        @param allowPublicAddress: map from a public address too, not put a
            L{PublicAddressError <twisted_natpmp.service.PublicAddressError>}
            in each state (RFC 6886 s3; NAT-PMP's rule: C{"pcp"} maps anyway).
        @param nonces: where the default PCP client keeps nonces (RFC 6887
            s11.1); by default the per-user file.
        @param internalAddress: the address the default PCP client maps for
            and binds to (RFC 6887 s8.2); by default the kernel's.  Not NAT-PMP.
        @raise ValueError: C{protocol} is not C{"auto"}, C{"pcp"} or
            C{"natpmp"}, or C{internalAddress} is not an address.
        """
        self._declared, self._gateways = assemble(
            self,
            reactor,
            mappings,
            gateway=gateway,
            discoverGateway=discoverGateway,
            clientFactory=clientFactory,
            protocol=protocol,
            announcements=announcements,
            holdOff=holdOff,
            healthInterval=healthInterval,
            gatewayCheckInterval=gatewayCheckInterval,
            backoff=backoff,
            stopTimeouts=stopTimeouts,
            stopDeadline=stopDeadline,
            mapTimeouts=mapTimeouts,
            monotonic=monotonic,
            allowPublicAddress=allowPublicAddress,
            nonces=nonces,
            internalAddress=internalAddress,
        )

    @property
    def gateway(self) -> IPAddress | None:
        """
        The gateway in use, or L{None} before one is known.
        """
        return self._gateways.gateway

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
        return self._gateways.startKeeper(keeper)

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
        return self._gateways.removeKeeper(keeper)

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
        return self._gateways.stopAll()
