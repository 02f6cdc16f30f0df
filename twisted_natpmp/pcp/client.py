# -*- test-case-name: tests.pcp.test_client -*-
"""
The PCP client: L{PCPClient}, an L{IPortMapper} for RFC 6887's MAP (port
mappings and IPv6 pinholes) and ANNOUNCE, over the conversation with one
server (L{twisted_natpmp.pcp._conversation}: the request engine, the
client's own address, s8.1.1 retransmission, s8.5 epochs).

Requests for different mappings may be in flight together, up to
L{WINDOW<twisted_natpmp.pcp._conversation.WINDOW>} (8; see there why RFC
6887 allows it).  Each mapping has one random 96-bit nonce, kept for every
renewal and the deletion in a L{NonceStore} (a per-user file, so that
C{natpmp unmap} and a restarted service can delete what another process
mapped).  A NAT-PMP-only gateway's 8-byte "unsupported version" fails the
request at once with an L{UnsupportedVersionError} whose C{protocol} is
C{"natpmp"} (RFC 6887 s9): the cue for L{twisted_natpmp.negotiate}.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv6Address, ip_address
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._exchange import Exchange
from .._types import DELETION_TIMEOUTS as _DELETION_TIMEOUTS
from .._types import Announcement, IPAddress, Mapping, ProtocolName, Transport
from ..errors import InvalidResponseError, PortMappingError
from ..interfaces import IExternalAddressQuery, IPortMapper, MappingKey, Probe
from ._build import announceRequest, grantedMapping, mapRequest
from ._conversation import WINDOW, Conversation, checkResult
from ._deletion import TAKEOVER_LIFETIME, Deletions
from ._external import EXTERNAL_QUERY_LIFETIME, queryExternalAddress
from ._fields import SERVER_PORT
from ._matching import Reply
from ._nonces import NonceKeeper, NonceKey, NonceStore
from ._retransmit import CALL_LIMIT, renewalPoint
from ._wire import Request, Response

__all__ = [
    "DELETION_TIMEOUTS",
    "EXTERNAL_QUERY_LIFETIME",
    "TAKEOVER_LIFETIME",
    "WINDOW",
    "PCPClient",
    "listenPCPClient",
]

log = Logger()

#: The waits after each send of a batch of deletions at stop: as for
#: NAT-PMP (L{twisted_natpmp._types.DELETION_TIMEOUTS}).
DELETION_TIMEOUTS = _DELETION_TIMEOUTS


@implementer(IPortMapper, IExternalAddressQuery)
class PCPClient:
    """
    Ask one PCP server for port mappings (and, for IPv6, firewall
    pinholes).

    @ivar gateway: the server's address.
    @ivar gatewayPort: its port (5351; others are for tests).
    @ivar internalAddress: the address the mappings are for, if given (an
        IPv6 address to open a pinhole for): the socket is bound to it.
    @ivar nonces: where the mappings' nonces are kept.
    @ivar conversation: the requests and epochs of the server.
    @ivar takeOver: whether a deletion with no kept nonce, refused as
        NOT_AUTHORIZED, takes the mapping over with a new nonce first
        (miniupnpd allows it; an RFC-strict server refuses that too).
    """

    protocolName = ProtocolName.PCP

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPAddress | str,
        *,
        gatewayPort: int = SERVER_PORT,
        nonces: NonceKeeper | None = None,
        internalAddress: IPAddress | str | None = None,
        window: int = WINDOW,
        timeouts: Sequence[float] | None = None,
        limit: float = CALL_LIMIT,
        extraSources: Iterable[IPAddress | str] = (),
        random: Callable[[], float] = _random.random,
        monotonic: Callable[[], float] = time.monotonic,
        takeOver: bool = True,
    ) -> None:
        """
        @param clock: schedules the retransmissions.
        @param gateway: the PCP server (the default gateway, IPv4 or IPv6).
        @param nonces: the nonce store; by default the per-user file
            (L{NonceStore}, at L{defaultPath
            <twisted_natpmp.pcp._nonces.defaultPath>}).
        @param internalAddress: the address to map for and bind to (for
            IPv6 pinholes); by default the one the kernel picks to reach the
            gateway.
        @param window: how many requests may be in flight at once.
        @param timeouts: a fixed retransmission schedule for every request;
            by default a fresh RFC 6887 s8.1.1 schedule for each (3 s,
            doubling, +-10 %, capped at 1024 s) within C{limit}.
        @param limit: the overall limit of a call on the s8.1.1 schedule,
            in seconds (the RFC sets none).
        @param extraSources: other addresses the server may answer from.
        @param random: floats in [0, 1), for the jitter and renewal points.
        @param monotonic: a clock that never steps, for the s8.5 rule.
        @param takeOver: see L{takeOver}.
        """
        self.gateway: IPAddress = ip_address(str(gateway))
        self.gatewayPort = gatewayPort
        self.internalAddress = (
            None if internalAddress is None else ip_address(str(internalAddress))
        )
        self.nonces: NonceKeeper = NonceStore() if nonces is None else nonces
        self.takeOver = takeOver
        self._random = random
        self.conversation = Conversation(
            clock,
            self.gateway,
            gatewayPort,
            internalAddress=self.internalAddress,
            window=window,
            timeouts=timeouts,
            limit=limit,
            extraSources=extraSources,
            random=random,
            monotonic=monotonic,
        )
        self._deletions = Deletions(
            self.conversation, self.nonces, self._key, lambda: self.takeOver
        )

    def __repr__(self) -> str:
        return f"<PCPClient gateway={self.gateway}:{self.gatewayPort}>"

    @property
    def exchange(self) -> Exchange[Request, Reply]:
        """
        The request engine that owns the socket.
        """
        return self.conversation.exchange

    # IPortMapper, IExternalAddressQuery

    def probe(self, timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        """
        Send an ANNOUNCE request (RFC 6887 s14.1): fires with a L{Probe} of
        the server's epoch and whether it shows a loss of state (s8.5).
        """
        try:
            request = announceRequest(self.conversation.clientAddress())
        except PortMappingError as e:
            return fail(e)
        return self.conversation.submit(request, timeouts).addCallback(self._gotProbe)

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
        Create or renew a mapping with a MAP request (RFC 6887 s11), under
        the mapping's nonce.  For IPv6 the external address suggested is
        the internal one (a pinhole: the firewall opens the address itself).

        @param externalPort: the port to suggest; L{None} suggests
            C{internalPort}, 0 none.
        @param lifetime: the lifetime asked for, at least 1 s.
        @param exactPort: insist on C{externalPort} with PREFER_FAILURE
            (s13.2): the server answers CANNOT_PROVIDE_EXTERNAL
            (L{twisted_natpmp.errors.CannotProvideExternalError}) rather
            than grant another port.
        @return: fires with the L{Mapping} granted; its C{renewAfter} is a
            random point in [1/2, 5/8] (s11.2.1) of the lifetime granted,
            or of the one asked for if that is shorter.
        """
        if lifetime < 1:
            return fail(ValueError("lifetime 0 deletes a mapping; use deleteMapping"))
        if internalPort == 0:
            return fail(ValueError("internal port 0 cannot be mapped"))
        suggested = internalPort if externalPort is None else externalPort
        try:
            transport = Transport(transport)
            client = self.conversation.clientAddress()
            nonce = self.nonces.nonceFor(self._key(transport, internalPort))
            request = mapRequest(
                client,
                nonce,
                transport,
                internalPort,
                lifetime,
                suggested,
                client if isinstance(client, IPv6Address) else None,
                preferFailure=exactPort,
            )
        except (ValueError, PortMappingError) as e:
            return fail(e)
        d = self._submit(request, timeouts)
        return d.addCallback(self._gotMapping, lifetime)

    def deleteMapping(
        self,
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete a mapping: a MAP of lifetime 0 under the mapping's nonce
        (RFC 6887 s15).  NO_RESOURCES in answer means nothing is left to
        delete (miniupnpd's answer to a second deletion) and counts as
        done.  With no nonce kept (another user, a lost file), a deletion
        with a new nonce is tried; refused as NOT_AUTHORIZED, the mapping
        is taken over with that nonce and then deleted, if L{takeOver}.
        """
        return self._deletions.delete(transport, internalPort, timeouts)

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several mappings at once, as when stopping: every deletion
        is sent together, outside the window, each under its kept nonce, and
        resent after each wait of C{timeouts} until answered.  A mapping
        with no kept nonce goes through L{deleteMapping} (in the window).

        @return: fires with a C{dict} from each key to L{None} (deleted) or
            the L{Failure} saying why not; cancelling it cancels the
            deletions still waiting.  It fails only with C{ValueError} or
            L{PortMappingError} (a bad key, no socket), sending nothing.
        """
        return self._deletions.deleteAll(keys, timeouts)

    def cancelPending(self) -> None:
        """
        Cancel every request queued or in flight, sending nothing more.
        """
        self.exchange.cancelPending()

    def externalAddress(  # type: ignore[override]
        self, timeouts: Sequence[float] | None = None
    ) -> Deferred[IPAddress]:
        """
        Learn the external address, which PCP tells only in a MAP response
        (RFC 6887 s11): map this client's own UDP port for
        L{EXTERNAL_QUERY_LIFETIME} seconds under a nonce kept nowhere else,
        read the address granted, and delete that mapping again (a failed
        deletion is logged; the mapping then expires by itself).
        """
        return queryExternalAddress(self, timeouts)

    def announced(self, announcement: Announcement) -> bool:
        """
        Judge an announcement: a PCP ANNOUNCE by RFC 6887 s8.5 against every
        response of the server too (one clock); a NAT-PMP one by RFC 6886
        s3.6 against earlier NAT-PMP announcements only.

        @return: whether the gateway lost its state.
        """
        return self.conversation.announced(announcement)

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Call C{observer()} whenever the server is seen to have lost its
        state, by a response's epoch or an announcement's.
        """
        self.conversation.addStateLossObserver(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Stop calling C{observer}.
        """
        self.conversation.removeStateLossObserver(observer)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        """
        Call C{observer(what, attempt, elapsed)} at each retransmission.
        """
        self.exchange.addRetryObserver(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        """
        Stop calling C{observer}.
        """
        self.exchange.removeRetryObserver(observer)

    def sourceAddress(self) -> IPAddress | None:
        """
        The local address the socket reaches the server from, or L{None}.
        """
        return self.exchange.sourceAddress()

    # Lifecycle

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port: at L{internalAddress} if given, else at
        C{interface}, else the wildcard of the server's family.
        """
        return self.conversation.listen(reactor, interface)

    def stop(self) -> Deferred[None]:
        """
        Cancel everything pending and stop listening.
        """
        return self.conversation.stop()

    # Internals

    def _key(self, transport: Transport, internalPort: int) -> NonceKey:
        return NonceKey(self.gateway, transport, internalPort, self.internalAddress)

    def _submit(
        self, request: Request, timeouts: Sequence[float] | None
    ) -> Deferred[Response]:
        return self.conversation.submit(request, timeouts).addCallback(checkResult)

    def _gotProbe(self, reply: Reply) -> Probe:
        response = checkResult(reply)
        return Probe(
            ProtocolName.PCP,
            response.epoch,
            None,
            stateLost=self.conversation.judged(reply),
        )

    def _gotMapping(self, response: Response, lifetime: int) -> Mapping:
        try:
            granted = grantedMapping(response)
        except ValueError as e:
            raise InvalidResponseError(str(e)) from None
        if granted.externalPort == 0 or granted.lifetime == 0:
            raise InvalidResponseError(
                f"gateway granted external port {granted.externalPort} for"
                f" {granted.lifetime} s: not a usable mapping"
            )
        # RFC 6887 s11.2.1, reckoned with the lifetime asked for if the
        # server granted more.
        effective = min(granted.lifetime, lifetime)
        return Mapping(
            granted.transport,
            granted.internalPort,
            granted.externalPort,
            granted.lifetime,
            granted.epoch,
            granted.externalAddress,
            renewalPoint(effective, 0, self._random),
            ProtocolName.PCP,
        )


def listenPCPClient(
    reactor: Any,
    gateway: IPAddress | str,
    *,
    interface: str = "",
    **kwargs: Any,
) -> PCPClient:
    """
    Make a L{PCPClient} for C{gateway} and bind it to an ephemeral UDP port.

    @param reactor: provides L{IReactorUDP} and L{IReactorTime}.
    @param interface: the local address to bind (see L{PCPClient.listen}).
    @param kwargs: passed to L{PCPClient}.
    """
    client = PCPClient(reactor, gateway, **kwargs)
    client.listen(reactor, interface)
    return client
