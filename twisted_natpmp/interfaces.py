"""
The interfaces of twisted-natpmp.

The layers above the protocol clients (the mapper service and its keepers,
the command line, the endpoint) talk to L{IPortMapper}, never to packets, so
that NAT-PMP (RFC 6886) and PCP (RFC 6887) stand behind the same calls.
This module imports no implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

from ._types import DELETION_TIMEOUTS, IPAddress, Mapping, ProtocolName, Transport

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from ._types import Announcement


__all__ = [
    "IExternalAddressQuery",
    "IForwardedPortMapper",
    "IMappingBackend",
    "IMappingObserver",
    "IPortMapper",
    "MappingKey",
    "Probe",
]

#: What identifies a mapping on a gateway, for one host: transport and
#: internal port.
MappingKey = tuple[Transport, int]


@dataclass(frozen=True, slots=True)
class Probe:
    """
    What a gateway said when asked whether it speaks a protocol.

    @ivar protocolName: the protocol that answered.
    @ivar epoch: the gateway's epoch (seconds since start of epoch) in the
        answer.
    @ivar externalAddress: the external address, if the answer tells it
        (NAT-PMP's external-address response does; PCP's ANNOUNCE does not).
    @ivar stateLost: the answer's epoch shows that the gateway lost its
        mapping state since the mapper last heard from it (RFC 6886 s3.6,
        RFC 6887 s8.5); the state-loss observers have been told.
    """

    protocolName: ProtocolName
    epoch: int
    externalAddress: IPAddress | None = None
    stateLost: bool = False


class IPortMapper(Interface):
    """
    Something that asks one gateway for port mappings, in one protocol.

    Every call returns a L{Deferred}; cancelling it stops the request's
    retransmissions.  C{timeouts}, where given, replaces the retransmission
    schedule for that one request: the seconds to wait after each send.
    Failures are L{twisted_natpmp.errors.PortMappingError} subclasses named
    by meaning (L{twisted_natpmp.errors.NoResponseError},
    L{twisted_natpmp.errors.NotSupportedError}, a
    L{twisted_natpmp.errors.GatewayError} carrying the protocol's code).
    """

    gateway: IPAddress = Attribute("The gateway's address.")
    protocolName: ProtocolName = Attribute(
        "The protocol this mapper speaks (for one that negotiates, the one"
        " chosen so far)."
    )

    def probe(timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        """
        Ask the gateway whether it speaks the protocol, and its epoch: the
        health check.  NAT-PMP asks for the external address (RFC 6886
        s3.2); PCP sends an ANNOUNCE request (RFC 6887 s14.1).  The epoch is
        judged like any response's, so a gateway that lost its state is
        noticed (and the state-loss observers told) through a probe too.
        """

    def addMapping(
        transport: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = 7200,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Create or renew a mapping.

        @param externalPort: the external port to suggest; L{None} suggests
            C{internalPort}; 0 lets the gateway choose.
        @param lifetime: requested seconds, at least 1 (deleting is
            L{deleteMapping}).
        @return: fires with the L{Mapping} the gateway granted.
        """

    def deleteMapping(
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete this host's mapping of C{internalPort}.
        """

    def deleteMappings(
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several of this host's mappings at once, as when stopping:
        every deletion is sent together, outside the one-at-a-time queue of
        the other calls, and resent after each wait of C{timeouts} until
        answered (RFC 6886 s3.1 lets a client give up on a deletion sooner,
        after at least one send).

        @param keys: the mappings, as C{(transport, internalPort)}.
        @return: fires, at the latest after the sum of C{timeouts}, with a
            C{dict} from each key to L{None} (deleted) or the L{Failure}
            saying why not; cancelling it cancels the deletions still
            waiting, which then fail with
            L{twisted.internet.defer.CancelledError}.
        """

    def cancelPending() -> None:
        """
        Cancel every request queued or waiting for its reply, sending
        nothing more; the mapper stays usable.
        """

    def announced(announcement: Announcement) -> bool:
        """
        Judge an announcement from the gateway (RFC 6886 s3.2.1, RFC 6887
        s14.1) by the protocol's epoch rule (RFC 6886 s3.6, RFC 6887 s8.5),
        telling the state-loss observers if the gateway lost its state.
        An announcement in the other protocol is judged by that protocol's
        own epoch (the two epochs are not comparable).

        @return: whether the gateway lost its state.
        """

    def addStateLossObserver(observer: Callable[[], object]) -> None:
        """
        Call C{observer()} whenever the gateway is seen to have lost its
        mapping state.
        """

    def removeStateLossObserver(observer: Callable[[], object]) -> None:
        """
        Stop calling C{observer}.
        """

    def addRetryObserver(observer: Callable[[str, int, float], object]) -> None:
        """
        Call C{observer(what, attempt, wait)} before each retransmission:
        what is being asked (for a person), the attempt about to be sent
        (2 for the first resend) and how long it will then wait.
        """

    def removeRetryObserver(observer: Callable[[str, int, float], object]) -> None:
        """
        Stop calling C{observer}.
        """

    def sourceAddress() -> IPAddress | None:
        """
        The local address this mapper's socket reaches the gateway from (the
        kernel's choice, in whatever network namespace the socket is), or
        L{None} if it has none yet.
        """

    def stop() -> Deferred[None]:
        """
        Cancel everything pending and release the socket; fires when it is
        released.  The mapper is not used again.
        """


class IExternalAddressQuery(Interface):
    """
    A mapper that can ask its gateway for the external address on its own
    (NAT-PMP's opcode 0, RFC 6886 s3.2); PCP learns it only from a MAP.
    """

    def externalAddress(
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[IPAddress]:
        """
        Ask the gateway for its external address.
        """


class IForwardedPortMapper(Interface):
    """
    A mapper that can ask a VPN gateway for its forwarded public port
    (internal port 0 with a lifetime, a tolerated departure from RFC 6886
    s3.4): L{twisted_natpmp.natpmp.client.NATPMPClient}.
    """

    def forwardedPort(
        transport: Transport,
        lifetime: int = 60,
        externalPort: int = 0,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Ask for the forwarded port of C{transport} for C{lifetime} seconds,
        suggesting C{externalPort} (0: any).

        @return: fires with the L{Mapping} granted, its C{internalPort} the
            public port when the gateway echoes 0.
        """

    def externalAddress(timeouts: Sequence[float] | None = None) -> Deferred[IPAddress]:
        """
        Ask for the gateway's external address.
        """

    def stop() -> Deferred[None]:
        """
        Stop: cancel what is pending and close the socket.
        """


class IMappingBackend(Interface):
    """
    What a gateway's mapping table calls to make its mappings real.

    Methods may raise L{twisted_natpmp.errors.GatewayError} subclasses
    (L{twisted_natpmp.errors.NetworkFailureError},
    L{twisted_natpmp.errors.OutOfResourcesError}); the gateway answers the
    request with its protocol's code for that meaning and keeps serving.
    """

    def addMapping(
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Start forwarding C{externalPort} to C{internalAddress:internalPort}.
        """

    def removeMapping(
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Stop forwarding C{externalPort}.
        """


class IMappingObserver(Interface):
    """
    Something that wants to hear about the mappings a
    L{twisted_natpmp.service.PortMapperService} keeps, for instance to
    publish the current public address and port of a server.
    """

    def mappingChanged(state: object) -> None:
        """
        A declared mapping changed: it was granted, renewed, moved to another
        external address or port, failed, expired or was removed.

        @param state: the declaration's new
            L{twisted_natpmp.service.MappingState}.
        """
