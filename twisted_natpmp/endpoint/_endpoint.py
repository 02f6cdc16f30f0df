# -*- test-case-name: tests.endpoint.test_endpoint -*-
"""
L{MappedServerEndpoint}: a stream server endpoint that wraps another, and
keeps the TCP port it listens on mapped on the gateway; L{parseMappedServer}
makes one from a C{natpmp:} description (the plugin's work).

C{listen()} fires as soon as the wrapped port listens (or, with
C{waitForMapping}, once the first grant came or that many seconds passed:
never later), with a L{MappedListeningPort}.  The mapping is made in the
background; with no gateway, or one that refuses, the port listens all the
same and the mapping is retried as C{twistd natpmp} retries it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._parse import parseGateway46
from .._types import IPAddress, Transport
from ..announce import AnnouncementProtocol
from ..interfaces import IPortMapper
from ..pcp._nonces import NonceKeeper, NonceStore
from ..service import MappingDeclaration, PortMapperService
from ..service.declarations import RECOMMENDED_LIFETIME
from ..service.policy import STOP_DEADLINE
from ._parser import (
    MAX_WAIT_FOR_MAPPING,
    PREFIX,
    checkGatewayProtocol,
    splitDescription,
)
from ._port import MappedListeningPort

__all__ = ["MappedServerEndpoint", "parseMappedServer"]

log = Logger(namespace="twisted_natpmp.endpoint")


@implementer(IStreamServerEndpoint)
class MappedServerEndpoint:
    """
    Listen with a wrapped endpoint, and keep the TCP port it bound mapped on
    the gateway (by PCP or NAT-PMP) for as long as it listens.

    @ivar wrapped: the wrapped endpoint.
    @ivar gateway: the gateway, or L{None} for the default gateway.
    @ivar protocol: C{"auto"}, C{"pcp"} or C{"natpmp"}.
    @ivar lifetime: the lifetime requested, in seconds.
    @ivar externalPort: the external port suggested, or L{None} for the
        port bound.
    @ivar waitForMapping: how long C{listen()} waits for the first grant.
    @ivar nonces: where PCP nonces are kept, or L{None} for the per-user
        file.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        wrapped: IStreamServerEndpoint,
        *,
        gateway: IPAddress | str | None = None,
        protocol: str = "auto",
        lifetime: int = RECOMMENDED_LIFETIME,
        externalPort: int | None = None,
        waitForMapping: float = 0.0,
        nonces: NonceKeeper | None = None,
        stopDeadline: float = STOP_DEADLINE,
        clientFactory: Callable[[IPAddress], IPortMapper] | None = None,
        discoverGateway: Callable[[], IPAddress] | None = None,
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None]
        | None = None,
        backoff: Callable[[int], float] | None = None,
        mapTimeouts: Sequence[float] | None = None,
    ) -> None:
        """
        @param reactor: the clock, and the UDP (and multicast) reactor of
            the mapper and of the announcement listener.
        @param wrapped: the endpoint that listens, on a TCP port.
        @param gateway: the gateway (IPv6: PCP only); by default the
            default gateway, followed when it changes.
        @param protocol: C{"auto"} (PCP, or NAT-PMP if the gateway speaks
            only that), C{"pcp"} or C{"natpmp"}.
        @param lifetime: the lifetime to request, in seconds.
        @param externalPort: the external port to suggest (0: let the
            gateway choose); by default the port bound.
        @param waitForMapping: how long C{listen()} waits for the first
            grant, at most L{MAX_WAIT_FOR_MAPPING} seconds (0: not at all).
        @param nonces: where PCP nonces are kept (RFC 6887 s11.1); by
            default the per-user file.
        @param stopDeadline: the longest C{stopListening()} waits for the
            gateway to confirm the deletion.
        @param clientFactory: makes the L{IPortMapper} for a gateway; by
            default L{mapperFor <twisted_natpmp.negotiate.mapperFor>}'s, for
            C{protocol}.
        @param discoverGateway: finds the default gateway (by default
            L{defaultGateway <twisted_natpmp.discovery.defaultGateway>}).
        @param announcements: listens for the gateway's announcements (by
            default on 224.0.0.1:5350).
        @param backoff: the wait before a retry, given the failures so far.
        @param mapTimeouts: the retransmission schedule of one mapping
            attempt; by default the protocol's.
        @raise ValueError: a value that cannot be used, named.
        """
        from ..negotiate import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r} is not auto, pcp or natpmp")
        if not (
            math.isfinite(waitForMapping)
            and 0 <= waitForMapping <= MAX_WAIT_FOR_MAPPING
        ):
            raise ValueError(
                f"waitForMapping {waitForMapping!r} is not 0 to"
                f" {MAX_WAIT_FOR_MAPPING:g} seconds"
            )
        # (The declaration checks the lifetime and the external port.)
        MappingDeclaration(Transport.TCP, 1, externalPort, lifetime)
        self.gateway = None
        if gateway is not None:
            # The checks of the description's gateway= (no unspecified,
            # multicast or broadcast address; IPv6 for PCP only).
            self.gateway = parseGateway46("gateway", str(gateway))
            checkGatewayProtocol(f"gateway {str(gateway)!r}", self.gateway, protocol)
        self._reactor = reactor
        self.wrapped = wrapped
        self.protocol = protocol
        self.lifetime = lifetime
        self.externalPort = externalPort
        self.waitForMapping = waitForMapping
        self.nonces = nonces
        self._service: dict[str, Any] = dict(
            stopDeadline=stopDeadline,
            clientFactory=clientFactory,
            discoverGateway=discoverGateway,
            announcements=announcements,
            backoff=backoff,
            mapTimeouts=mapTimeouts,
        )

    def __repr__(self) -> str:
        return f"<MappedServerEndpoint {self.wrapped!r}>"

    def listen(  # type: ignore[override]
        self, protocolFactory: IProtocolFactory
    ) -> Deferred[MappedListeningPort]:
        """
        Listen with the wrapped endpoint, then map the port it bound.

        @return: fires with the L{MappedListeningPort} once the wrapped port
            listens (and, with C{waitForMapping}, once it is mapped or that
            many seconds passed); fails as the wrapped endpoint's C{listen()}
            fails, with L{ValueError} if the port it bound is no TCP port, or
            as starting the mapping fails (the wrapped port is then stopped
            again in both cases).
        """
        d: Deferred[IListeningPort] = self.wrapped.listen(protocolFactory)
        return d.addCallback(self._listening)

    def _listening(
        self, wrapped: IListeningPort
    ) -> MappedListeningPort | Deferred[MappedListeningPort]:
        host = wrapped.getHost()
        if not isinstance(host, (IPv4Address, IPv6Address)) or host.type != "TCP":
            error = ValueError(
                f"{PREFIX}: the wrapped endpoint listens on {host}, not on a TCP"
                " port: nothing to map"
            )
            return maybeDeferred(wrapped.stopListening).addBoth(
                lambda _: Failure(error)
            )
        try:
            port = MappedListeningPort(self._reactor, wrapped, self._serviceFor)
        except Exception:
            # Nothing maps the port: it listens no more.
            failure = Failure()
            return maybeDeferred(wrapped.stopListening).addBoth(lambda _: failure)
        if not self.waitForMapping:
            return port
        return self._waitForMapping(port)

    def _waitForMapping(
        self, port: MappedListeningPort
    ) -> Deferred[MappedListeningPort]:
        def waited(result: object) -> MappedListeningPort | Deferred[Any]:
            if isinstance(result, Failure):
                if result.check(CancelledError):
                    # listen() itself was cancelled: listen no more.
                    return port.stopListening().addBoth(lambda _: result)
                if result.check(TimeoutError):
                    log.info(
                        "{error}; listening, still mapping in the background",
                        error=result.getErrorMessage(),
                    )
            return port

        return port.whenMapped(self.waitForMapping).addBoth(waited)

    def _serviceFor(self, internalPort: int) -> PortMapperService:
        declaration = MappingDeclaration(
            Transport.TCP, internalPort, self.externalPort, self.lifetime
        )
        return PortMapperService(
            self._reactor,
            [declaration],
            gateway=self.gateway,
            protocol=self.protocol,
            nonces=self.nonces,
            **self._service,
        )


def parseMappedServer(reactor: Any, *args: str, **kwargs: str) -> MappedServerEndpoint:
    """
    The endpoint of a C{natpmp:} description, from the arguments Twisted's
    tokeniser made of it (L{splitDescription} tells which are whose).

    @raise ValueError: an option that cannot be used, named with its value,
        or a wrapped description that Twisted cannot make an endpoint of.
    """
    options, inner = splitDescription(args, kwargs)
    try:
        wrapped = serverFromString(reactor, inner)  # type: ignore[no-untyped-call]
    except Exception as e:
        # Whatever the wrapped endpoint's parser raises (an ssl: key file
        # that cannot be read, a plugin's own error) is said as the
        # natpmp: description's fault, the cause chained.
        raise ValueError(
            f"{PREFIX}: the wrapped endpoint {inner!r} cannot be made: {e}"
        ) from e
    return MappedServerEndpoint(
        reactor,
        wrapped,
        gateway=options.gateway,
        protocol=options.protocol,
        lifetime=options.lifetime,
        externalPort=options.externalPort,
        waitForMapping=options.waitForMapping,
        nonces=None
        if options.nonceFile is None
        else NonceStore(Path(options.nonceFile)),
    )
