"""
The interfaces of twisted-natpmp.

The layers above the client (the mapper service, the command line) talk to
L{IPortMapper}, never to NAT-PMP packets, so that a PCP (RFC 6887) client can
stand in later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from ipaddress import IPv4Address

    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from ._types import Mapping
    from ._wire import Protocol
    from .service import MappingState


class IPortMapper(Interface):
    """
    Something that asks one gateway for port mappings.

    Every call returns a L{Deferred}; cancelling it stops the request's
    retransmissions.  C{timeouts}, where given, replaces the retransmission
    schedule for that one request: the seconds to wait after each send.
    """

    gateway: IPv4Address = Attribute("The gateway's address.")

    def externalAddress(
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[IPv4Address]:
        """
        Ask the gateway for its external IPv4 address.
        """

    def addMapping(
        protocol: Protocol,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = 7200,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Create or renew a mapping.

        @param externalPort: the external port to suggest; L{None} suggests
            C{internalPort}.
        @param lifetime: requested seconds, at least 1 (deleting is
            L{deleteMapping}).
        @return: fires with the L{Mapping} the gateway granted, or fails with
            a L{twisted_natpmp.errors.NATPMPError}.
        """

    def deleteMapping(
        protocol: Protocol,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete this host's mapping of C{internalPort}.
        """

    def deleteAllMappings(
        protocol: Protocol,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete all of this host's mappings of C{protocol}.
        """

    def deleteMappings(
        keys: Iterable[tuple[Protocol, int]],
        timeouts: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 1.0),
    ) -> Deferred[dict[tuple[Protocol, int], Failure | None]]:
        """
        Delete several of this host's mappings at once, as when stopping:
        every deletion is sent together, outside the one-at-a-time queue of
        the other calls, and resent after each wait of C{timeouts} until
        answered: by default the RFC 6886 s3.1 doubling schedule, cut short
        at 4.75 s (s3.1 lets a client give up on a deletion sooner, after
        at least one send).

        @param keys: the mappings, as C{(protocol, internalPort)}.
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

    def noteEpoch(epoch: int) -> bool:
        """
        Judge an epoch value that arrived outside a response (from an
        announcement) by the RFC 6886 s3.6 rule, telling the state-loss
        observers if the gateway lost its state.

        @return: whether the gateway lost its state.
        """

    def addStateLossObserver(observer: Callable[[], object]) -> None:
        """
        Call C{observer()} whenever the gateway is seen to have lost its
        mapping state (RFC 6886 s3.6).
        """

    def removeStateLossObserver(observer: Callable[[], object]) -> None:
        """
        Stop calling C{observer}.
        """


class IMappingBackend(Interface):
    """
    What a gateway's mapping table calls to make its mappings real.

    Methods may raise L{twisted_natpmp.errors.GatewayError} (for instance
    L{twisted_natpmp.errors.NetworkFailureError} or
    L{twisted_natpmp.errors.OutOfResourcesError}); the gateway answers the
    request with that result code and keeps serving.
    """

    def addMapping(
        internalAddress: IPv4Address,
        protocol: Protocol,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Start forwarding C{externalPort} to C{internalAddress:internalPort}.
        """

    def removeMapping(
        internalAddress: IPv4Address,
        protocol: Protocol,
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

    def mappingChanged(state: MappingState) -> None:
        """
        A declared mapping changed: it was granted, renewed, moved to another
        external address or port, failed, expired or was removed.

        @param state: the declaration's new state.
        """
