# -*- test-case-name: tests.test_negotiate -*-
"""
Choosing the protocol: PCP first, NAT-PMP when the gateway says it speaks
only that, behind one L{IPortMapper}.

L{mapperFor} makes the mapper for a protocol name: C{"pcp"} and
C{"natpmp"} force one (L{PCPClient}, L{NATPMPClient}); C{"auto"}, the
default, makes a L{NegotiatingMapper}.  That one asks in PCP; a NAT-PMP-only
gateway answers with NAT-PMP's 8-byte "unsupported version" (version 0,
result 1: RFC 6887 s9, RFC 6886 s3.5), and the same call is made again at
once in NAT-PMP, so the fallback costs one round trip.  The choice is
remembered for the gateway (L{ProtocolMemory}) and PCP tried again when the
gateway restarts (a NAT-PMP epoch shows a loss of state, or a PCP ANNOUNCE
arrives) or after L{REPROBE_INTERVAL}.  No other reply is taken for proof of
NAT-PMP: miniupnpd answers a malformed PCP request with a version-0 packet
of another shape, and this package never sends one.

A mapping is deleted with the protocol that made it: miniupnpd answers a
NAT-PMP deletion of a PCP mapping with success and keeps the rule.  The
mapper remembers what it made; for a mapping made by another process, a
PCP nonce kept for it means PCP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, ip_address
from typing import Any, Literal, TypeVar

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._negotiation import BothClientsMixin
from ._protocolmemory import (
    PROTOCOLS,
    REPROBE_INTERVAL,
    ProtocolMemory,
    isNATPMPOnly,
    processMemory,
)
from ._types import (
    DELETION_TIMEOUTS,
    Announcement,
    AnnouncementKind,
    IPAddress,
    Mapping,
    ProtocolName,
    Transport,
)
from .errors import CannotProvideExternalError, NotSupportedError
from .interfaces import IExternalAddressQuery, IPortMapper, MappingKey, Probe
from .natpmp.client import NATPMPClient, listenClient
from .pcp._nonces import NonceKey
from .pcp.client import PCPClient, listenPCPClient

__all__ = [
    "PROTOCOLS",
    "REPROBE_INTERVAL",
    "NegotiatingMapper",
    "ProtocolMemory",
    "isNATPMPOnly",
    "mapperFor",
    "processMemory",
]

log = Logger()

_T = TypeVar("_T")


@implementer(IPortMapper, IExternalAddressQuery)
class NegotiatingMapper(BothClientsMixin):
    """
    The C{auto} mapper: a L{PCPClient} first, its L{NATPMPClient} after the
    gateway said it speaks only NAT-PMP.

    @ivar gateway: the gateway.
    @ivar pcp: the PCP client.
    @ivar natpmp: the NAT-PMP client (L{None} for an IPv6 gateway:
        NAT-PMP is IPv4 only).
    @ivar memory: what is known of the gateway's protocol.
    """

    def __init__(
        self,
        clock: Any,
        pcp: PCPClient,
        natpmp: NATPMPClient | None,
        memory: ProtocolMemory | None = None,
    ) -> None:
        self._clock = clock
        self.gateway: IPAddress = pcp.gateway
        self.pcp = pcp
        self.natpmp = natpmp
        self.memory = ProtocolMemory() if memory is None else memory
        self._madeBy: dict[MappingKey, ProtocolName] = {}
        if natpmp is not None:
            # A NAT-PMP gateway that restarted may speak PCP now.
            natpmp.addStateLossObserver(lambda: self.memory.forget(self.gateway))

    def __repr__(self) -> str:
        return f"<NegotiatingMapper gateway={self.gateway} using {self.protocolName}>"

    @property
    def protocolName(self) -> ProtocolName:  # type: ignore[override]
        """
        The protocol chosen so far: PCP until the gateway says otherwise.
        """
        if self.natpmp is not None and self.memory.speaksOnlyNATPMP(
            self.gateway, self._clock.seconds()
        ):
            return ProtocolName.NATPMP
        return ProtocolName.PCP

    # IPortMapper, IExternalAddressQuery

    def probe(self, timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        """
        Probe in the protocol chosen: a PCP ANNOUNCE, or NAT-PMP's
        external-address request after a fallback.
        """
        return self._negotiated(lambda client: client.probe(timeouts))

    def addMapping(
        self,
        transport: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = 7200,
        timeouts: Sequence[float] | None = None,
        *,
        exactPort: bool = False,
    ) -> Deferred[Mapping]:
        """
        Map in the protocol chosen.  With C{exactPort}, PCP sends
        PREFER_FAILURE; NAT-PMP has no such thing, so a grant of another
        port is deleted again and fails with L{CannotProvideExternalError}.
        """
        try:
            key = (Transport(transport), internalPort)
        except ValueError as e:
            return fail(e)

        def mapped(mapping: Mapping) -> Mapping:
            self._madeBy[key] = mapping.protocolName
            return mapping

        def call(client: PCPClient | NATPMPClient) -> Deferred[Mapping]:
            if isinstance(client, PCPClient):
                return client.addMapping(
                    transport,
                    internalPort,
                    externalPort,
                    lifetime,
                    timeouts,
                    exactPort=exactPort,
                )
            d = client.addMapping(
                transport, internalPort, externalPort, lifetime, timeouts
            )
            if exactPort:
                wanted = internalPort if externalPort is None else externalPort
                d.addCallback(self._exactOrUndo, client, wanted, timeouts)
            return d

        return self._negotiated(call).addCallback(mapped)

    def deleteMapping(
        self,
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete with the protocol that made the mapping (see the module
        docstring); one of unknown origin with the protocol chosen.
        """
        try:
            key = (Transport(transport), internalPort)
        except ValueError as e:
            return fail(e)
        madeBy = self._origin(key)

        def forget(result: _T) -> _T:
            self._madeBy.pop(key, None)
            return result

        if madeBy is ProtocolName.NATPMP and self.natpmp is not None:
            d = self.natpmp.deleteMapping(transport, internalPort, timeouts)
        elif madeBy is ProtocolName.PCP:
            d = self.pcp.deleteMapping(transport, internalPort, timeouts)
        else:
            d = self._negotiated(
                lambda c: c.deleteMapping(transport, internalPort, timeouts)
            )
        return d.addCallback(forget)

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several mappings at once, each with the protocol that made
        it, both batches together.
        """
        try:
            wanted = [(Transport(t), port) for t, port in keys]
        except ValueError as e:
            return fail(e)
        natpmpKeys = [
            k
            for k in wanted
            if self.natpmp is not None
            and (self._origin(k) or self.protocolName) is ProtocolName.NATPMP
        ]
        pcpKeys = [k for k in wanted if k not in natpmpKeys]
        batches = [self.pcp.deleteMappings(pcpKeys, timeouts)]
        if natpmpKeys and self.natpmp is not None:
            batches.append(self.natpmp.deleteMappings(natpmpKeys, timeouts))

        def merged(results: list[dict[MappingKey, Failure | None]]) -> Any:
            outcome = {k: v for result in results for k, v in result.items()}
            for k, v in outcome.items():
                if v is None:
                    self._madeBy.pop(k, None)
            return {k: outcome[k] for k in wanted}

        d = gatherResults(batches, consumeErrors=True)
        return d.addCallback(merged)

    def externalAddress(  # type: ignore[override]
        self, timeouts: Sequence[float] | None = None
    ) -> Deferred[IPAddress]:
        """
        The external address: in PCP by a short MAP of the client's own
        port, deleted again (L{PCPClient.externalAddress}); after a fallback
        by NAT-PMP's external-address request (RFC 6886 s3.2).
        """
        return self._negotiated(lambda client: client.externalAddress(timeouts))

    def announced(self, announcement: Announcement) -> bool:
        """
        Judge an announcement with the client of its protocol (each judges
        the other protocol's epochs apart).  A PCP ANNOUNCE from a gateway
        thought to speak only NAT-PMP means it speaks PCP now: the next
        request is made in PCP.

        @return: whether the gateway lost its state.
        """
        if announcement.kind is AnnouncementKind.PCP:
            self.memory.forget(self.gateway)
            return self.pcp.announced(announcement)
        if self.natpmp is not None:
            return self.natpmp.announced(announcement)
        return self.pcp.announced(announcement)

    def sourceAddress(self) -> IPAddress | None:
        """
        The source address of the client of the protocol chosen.
        """
        return self._active().sourceAddress()

    # Internals

    def _active(self) -> PCPClient | NATPMPClient:
        if self.protocolName is ProtocolName.NATPMP and self.natpmp is not None:
            return self.natpmp
        return self.pcp

    def _origin(self, key: MappingKey) -> ProtocolName | None:
        madeBy = self._madeBy.get(key)
        if madeBy is not None:
            return madeBy
        if self.pcp.nonces.get(
            NonceKey(self.gateway, key[0], key[1], self.pcp.internalAddress)
        ):
            return ProtocolName.PCP
        return None

    def _negotiated(self, call: Callable[[Any], Deferred[_T]]) -> Deferred[_T]:
        client = self._active()
        d = call(client)
        natpmp = self.natpmp
        if client is natpmp or natpmp is None:
            return d

        def fellBack(failure: Failure) -> Deferred[_T]:
            if failure.check(NotSupportedError):
                # Port 5351 refused outright: a NAT-PMP gateway would have
                # answered PCP (RFC 6886 s3.5), so neither is spoken.
                return fail(NotSupportedError(self.gateway, "PCP or NAT-PMP"))
            if not isNATPMPOnly(failure):
                return fail(failure)
            if not self.memory.speaksOnlyNATPMP(self.gateway, self._clock.seconds()):
                log.info(
                    "gateway {gateway} speaks only NAT-PMP: using NAT-PMP",
                    gateway=str(self.gateway),
                )
            self.memory.rememberNATPMP(self.gateway, self._clock.seconds())
            return call(natpmp)

        return d.addErrback(fellBack)

    def _exactOrUndo(
        self,
        mapping: Mapping,
        client: NATPMPClient,
        wanted: int,
        timeouts: Sequence[float] | None,
    ) -> Deferred[Mapping] | Mapping:
        if mapping.externalPort == wanted:
            return mapping
        refusal = CannotProvideExternalError(
            meaning=f"the gateway granted port {mapping.externalPort}, not {wanted}",
            protocol="natpmp",
        )
        d = client.deleteMapping(mapping.transport, mapping.internalPort, timeouts)

        def refuse(_: object) -> Failure:
            return Failure(refusal)

        return d.addBoth(refuse)


def mapperFor(
    reactor: Any,
    gateway: IPAddress | str,
    protocol: Literal["auto", "pcp", "natpmp"] | str = "auto",
    *,
    interface: str = "",
    memory: ProtocolMemory | None = None,
    **kwargs: Any,
) -> IPortMapper:
    """
    Make a listening mapper for C{gateway} in C{protocol}.

    @param reactor: provides L{IReactorUDP<twisted.internet.interfaces.IReactorUDP>}
        and L{IReactorTime<twisted.internet.interfaces.IReactorTime>}.
    @param protocol: C{"auto"} (PCP, falling back to NAT-PMP), C{"pcp"} or
        C{"natpmp"}.
    @param interface: the local address to bind; for NAT-PMP, by default
        C{internalAddress} if it is an IPv4 address (NAT-PMP maps for the
        request's source address, RFC 6886 s3.3, so the address to map for
        is the one to send from).
    @param memory: the L{ProtocolMemory} for C{"auto"}; by default this
        process's own (L{processMemory}), so that every mapper made here
        remembers what any of them found.
    @param kwargs: for both clients: C{monotonic}, C{extraSources},
        C{gatewayPort}; for PCP only: C{nonces}, C{internalAddress},
        C{window}, C{random}, C{takeOver}, C{limit}; C{timeouts} for both.
    @raise ValueError: an unknown protocol, or NAT-PMP for an IPv6 gateway.
    """
    address = ip_address(str(gateway))
    shared = {
        k: kwargs[k]
        for k in ("monotonic", "extraSources", "gatewayPort", "timeouts")
        if k in kwargs and kwargs[k] is not None
    }
    internal = kwargs.get("internalAddress")
    natpmpInterface = interface
    if not interface and isinstance(internal, IPv4Address):
        natpmpInterface = str(internal)
    if protocol == "natpmp":
        if not isinstance(address, IPv4Address):
            raise ValueError(f"NAT-PMP speaks only IPv4, not to {address}")
        return listenClient(reactor, address, interface=natpmpInterface, **shared)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not auto, pcp or natpmp")
    pcp = listenPCPClient(reactor, address, interface=interface, **kwargs)
    if protocol == "pcp":
        return pcp
    natpmp = None
    if isinstance(address, IPv4Address):
        natpmp = listenClient(reactor, address, interface=natpmpInterface, **shared)
    return NegotiatingMapper(
        reactor, pcp, natpmp, processMemory if memory is None else memory
    )
