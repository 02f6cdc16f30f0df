# -*- test-case-name: tests.server.test_responder -*-
"""
The protocol-neutral core of a gateway: what every protocol's responder
shares.

L{Gateway} holds the mapping table (L{twisted_natpmp.server.table}), the
external address, the internal networks, the per-source rate limit, the
aggregated drop and refusal logs, and the expiry timer.  It checks where
each datagram comes from (RFC 6886 s3.3, RFC 6887 s8.2) and hands it to a
L{VersionDispatcher}, which picks the responder by version byte
(L{twisted_natpmp.server._responders}).  IPv6 sources speak PCP only
(NAT-PMP is IPv4's, RFC 6886 s1); the checks are
L{twisted_natpmp.server._admission}'s.

A responder asks the core to L{Gateway.map}, L{Gateway.delete} or
L{Gateway.deleteAll}; those raise L{Refused}, by meaning, and the responder
answers with its own code and says so with L{Gateway.refused}.

Against floods and forged sources: a gateway-wide mapping limit, a fair
share (see L{MappingTable}), and an optional per-source rate limit on
mapping requests (L{RateLimiter}).  Dropped packets and refused requests
are counted per source and logged in aggregate
(L{twisted_natpmp._droplog.DropLog}); each mapping event is logged on its
own line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, ip_network

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .._droplog import DropLog
from .._types import IPAddress, Transport
from ..interfaces import IMappingBackend
from ..pcp._serverchecks import Network
from ..pcp.responder import DEFAULT_MIN_LIFETIME
from ._admission import Endpoint, admitted, isInternal, sourceClient
from ._batchedgateway import Batched
from ._clock import externalAddressOrNone, monotonicFor
from ._eventlog import logEvent
from ._expiry import ExpiryTimer
from ._ratelimit import DEFAULT_REQUEST_BURST, RateLimiter
from ._responders import respondersFor
from ._shared import SharedTable
from .backends._batching import IBatchingBackend
from .backends._filters import RemoteFilter
from .backends.memory import MemoryBackend
from .table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
    GatewayMapping,
    MonotonicClock,
    Refused,
    TableEvent,
)

__all__ = ["Endpoint", "Gateway", "NATPMPGateway", "logEvent"]

log = Logger()


class Gateway:
    """
    The request handling of a gateway, shared by all its listening ports
    and all its protocols.

    @ivar table: the mappings.
    @ivar externalAddress: the address announced and reported; L{None} (no
        external address yet; 0.0.0.0 means the same) answers every request
        but a deletion with a network failure (RFC 6886 s3.2, s3.5).
    @ivar internalNetworks: where requests may come from (RFC 6886 s3.3).
    @ivar rateLimiter: each source's request rate limit, or L{None}.
    @ivar drops: every packet dropped, counted by source and reason.
    @ivar refusals: every request refused with a result code, counted by
        client and reason.
    @ivar natpmp: the NAT-PMP responder.
    @ivar pcp: the PCP responder, or L{None} when PCP is off.
    @ivar dispatcher: picks the responder for each packet by version.
    """

    def __init__(
        self,
        clock: IReactorTime,
        externalAddress: IPv4Address | str | None,
        internalNetworks: Iterable[Network | str],
        *,
        backend: IMappingBackend | IBatchingBackend | None = None,
        minPort: int = DEFAULT_MIN_PORT,
        maxPort: int = DEFAULT_MAX_PORT,
        maxLifetime: int = DEFAULT_MAX_LIFETIME,
        maxMappingsPerClient: int = DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        maxMappings: int | None = None,
        requestRate: float | None = None,
        requestBurst: int = DEFAULT_REQUEST_BURST,
        monotonic: MonotonicClock | None = None,
        pcp: bool = False,
        minLifetime: int = DEFAULT_MIN_LIFETIME,
        allowThirdParty: Iterable[Network | str] = (),
    ) -> None:
        """
        @param clock: schedules the expiry timer and the drop summaries.
        @param backend: makes mappings real; a
            C{MemoryBackend} by default.  A batching one
            (L{IBatchingBackend}) has each request answered once its changes
            have committed (L{Committer}, and see L{answer}).
        @param maxMappings: the most mappings the gateway holds (L{None}: as
            many as the port range allows).
        @param requestRate: mapping requests (map, renew, delete: what
            changes state, costs the backend work and the log a line) per
            second each source may send; beyond it (after a burst of
            C{requestBurst}) they are dropped and counted.  External address
            requests, stateless and cheap, are not limited.  L{None}: no
            limit.
        @param monotonic: the time of the epoch and of expiry (RFC 6886
            s3.6, s3.3), which a step of the wall clock must not move;
            L{monotonicFor} C{clock} by default.
        @param pcp: whether to answer PCP (RFC 6887) beside NAT-PMP (off
            by default here, for existing callers; C{twistd natpmp-gateway}
            turns it on).
        @param minLifetime: the shortest PCP lifetime granted (RFC 6887
            s15); the longest is C{maxLifetime}.  NAT-PMP grants what it is
            asked, up to C{maxLifetime} (RFC 6886 s3.3 sets no minimum).
        @param allowThirdParty: the networks whose hosts may ask for
            mappings for other internal hosts with PCP's THIRD_PARTY option
            (RFC 6887 s13.1); nobody by default.
        """
        if backend is None:
            backend = MemoryBackend()
        self._clock = clock
        self._monotonic = monotonicFor(clock) if monotonic is None else monotonic
        self.externalAddress = externalAddress
        self.internalNetworks = tuple(ip_network(n) for n in internalNetworks)
        #: Called when the table was emptied with a new epoch because the
        #: backend lost its state (the service announces it).
        self.stateLost: Callable[[], object] = lambda: None
        self._batched: Batched | None = None
        observer: Callable[[TableEvent], object] = logEvent
        tableBackend: IMappingBackend = backend  # type: ignore[assignment]
        if IBatchingBackend.providedBy(backend):
            self._batched = Batched(backend)
            tableBackend = self._batched.tableBackend
            observer = self._batched.observe
        self.table = SharedTable(
            self._monotonic,
            tableBackend,
            minPort=minPort,
            maxPort=maxPort,
            maxLifetime=maxLifetime,
            maxMappingsPerClient=maxMappingsPerClient,
            maxMappings=maxMappings,
            observer=observer,
        )
        self.rateLimiter = (
            None
            if requestRate is None
            else RateLimiter(self._monotonic, requestRate, requestBurst)
        )
        self._expiry = ExpiryTimer(clock, self._monotonic, self.table)
        name = "NAT-PMP and PCP gateway" if pcp else "NAT-PMP gateway"
        self.drops = DropLog(log, clock, name)
        self.refusals = DropLog(log, clock, name, verb="refused")
        self.natpmp, self.pcp, self.dispatcher = respondersFor(
            self,
            self.drops,
            pcp=pcp,
            minLifetime=minLifetime,
            maxLifetime=maxLifetime,
            allowThirdParty=allowThirdParty,
        )
        if self._batched is not None:
            self._batched.start(
                clock,
                self.table,
                self.dispatcher.respond,
                self._expiry.schedule,
                self.drops.drop,
                lambda: self.stateLost(),
            )

    def checkForwarding(self) -> None:
        """
        Over a batching backend, have it look whether its forwarding state
        is still there (a firewall reload may have deleted it), and start
        afresh if not; nothing over a synchronous one.
        """
        if self._batched is not None:
            self._batched.check()

    _external: IPv4Address | None

    @property
    def externalAddress(self) -> IPv4Address | None:
        return self._external

    @externalAddress.setter
    def externalAddress(self, address: IPv4Address | str | None) -> None:
        new = externalAddressOrNone(address)
        if getattr(self, "pcp", None) is not None and self._external != new:
            # RFC 6887 s8.5: with PCP the epoch restarts when the external
            # address changes; NAT-PMP shares the epoch, and its clients
            # then map again (RFC 6886 s3.6).  NAT-PMP alone keeps it: RFC
            # 6886 s3.2.1 has its clients learn the address from the
            # announcement, their mappings kept.
            self.table.newEpoch()
        self._external = new

    # Serving

    def isInternal(self, address: IPAddress) -> bool:
        """
        Whether requests from C{address} are served (RFC 6886 s3.3).
        """
        return isInternal(address, self.internalNetworks)

    def respond(self, packet: bytes, source: Endpoint) -> bytes | None:
        """
        Answer one datagram, over a synchronous backend (over a batching
        one, use L{answer}).

        @param source: where it came from: the client whose mappings it
            asks about (RFC 6886 s3.3: a client only maps ports to itself).
        @return: the response, or L{None} when the packet is not answered
            (the reason is logged).
        @raise RuntimeError: the backend is a batching one.
        """
        if self._batched is not None:
            raise RuntimeError("a batching backend answers through answer()")
        client = self._source(packet, source)
        return None if client is None else self.dispatcher.respond(packet, client)

    def answer(
        self, packet: bytes, source: Endpoint, send: Callable[[bytes], object]
    ) -> None:
        """
        Answer one datagram with C{send(reply)}: at once over a synchronous
        backend, once its changes have committed over a batching one; not
        at all for a packet not answered (the reason is logged).
        """
        client = self._source(packet, source)
        if client is None:
            return
        if self._batched is not None:
            self._batched.answer(packet, client, send)
            return
        reply = self.dispatcher.respond(packet, client)
        if reply is not None:
            send(reply)

    def _source(self, packet: bytes, source: Endpoint) -> IPAddress | None:
        """
        The client C{packet} is from, if it is to be answered at all.
        """
        return sourceClient(
            packet, source, self.internalNetworks, self.pcp is not None, self.drops
        )

    def announcement(self) -> bytes | None:
        """
        The NAT-PMP packet to multicast now (RFC 6886 s3.2.1), with the
        current epoch; L{None} without an external address.
        """
        return self.natpmp.announcement()

    def pcpAnnouncement(self) -> bytes | None:
        """
        The unsolicited PCP ANNOUNCE to multicast now (RFC 6887 s14.1), with
        the current epoch; L{None} when PCP is off.
        """
        return None if self.pcp is None else self.pcp.announcement()

    # What responders call

    def epoch(self) -> int:
        """
        The table's epoch: seconds since it was created or last reset (RFC
        6886 s3.6, RFC 6887 s8.5).
        """
        return self.table.epoch()

    def canFilter(self) -> bool:
        """
        Whether the backend enforces remote-peer filters (for PCP's FILTER).
        """
        return self.table.canFilter()

    def setFilters(
        self, mapping: GatewayMapping, filters: tuple[RemoteFilter, ...]
    ) -> None:
        """
        Have the backend let only C{filters}' remote peers use C{mapping}.

        @raise Refused: the backend refused or failed (the mapping stays).
        """
        self.table.setFilters(mapping, filters)

    def admit(self, host: str) -> bool:
        """
        Whether a mapping request from C{host} is within its rate limit; if
        not, it is counted as dropped.
        """
        readmitting = self._batched is not None and self._batched.readmitting()
        return admitted(host, self.rateLimiter, readmitting, self.drops)

    def map(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
        *,
        owner: bytes | None = None,
        exact: bool = False,
    ) -> GatewayMapping:
        """
        Create or renew a mapping (L{MappingTable.map}) and keep the expiry
        timer in step.

        @param owner: who may change and delete it (PCP's nonce); L{None}
            for NAT-PMP.
        @param exact: refuse rather than grant another port than the one
            suggested (PCP's PREFER_FAILURE).
        @raise Refused: the table or its backend refused, by meaning.
        """
        if self._batched is not None:
            self._batched.checkRefusing()
        try:
            return self.table.map(
                client,
                transport,
                internalPort,
                suggestedExternalPort,
                lifetime,
                owner=owner,
                exact=exact,
            )
        finally:
            self._expiry.schedule()

    def delete(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        *,
        owner: bytes | None = None,
    ) -> GatewayMapping | None:
        """
        Delete one mapping (L{MappingTable.delete}); deleting one that does
        not exist succeeds (RFC 6886 s3.4, RFC 6887 s15).

        @param owner: the requester's PCP nonce, L{None} for NAT-PMP.
        @raise Refused: the mapping has another owner, or the backend could
            not remove it.
        """
        if self._batched is not None:
            self._batched.checkRefusing()
        try:
            return self.table.delete(client, transport, internalPort, owner=owner)
        finally:
            self._expiry.schedule()

    def deleteAll(
        self, client: IPAddress, transport: Transport, *, owner: bytes | None = None
    ) -> list[GatewayMapping]:
        """
        Delete every mapping of C{transport} that C{client} holds (RFC 6886
        s3.4), as many as can be: those of another owner (PCP-made, for a
        NAT-PMP request) are kept.

        @return: the mappings deleted.
        @raise Refused: for the first that could not be (those are kept).
        """
        if self._batched is not None:
            self._batched.checkRefusing()
        try:
            deleted, error = self.table.deleteAll(client, transport, owner=owner)
        finally:
            self._expiry.schedule()
        if error is not None:
            raise error
        return deleted

    def refused(self, client: IPAddress, refusal: Refused, answer: str) -> None:
        """
        Count and log (in aggregate) a request refused.

        @param answer: what the client was told, in its protocol's words
            (C{"answered result 4"}).
        """
        self.refusals.drop(str(client), f"{refusal.reason}, {answer}", refusal.detail)

    def stop(self) -> Deferred[None]:
        """
        Stop the expiry timer and remove every mapping, as a gateway that
        shuts down loses its state (RFC 6886 s3.6); say what drops are
        counted and not yet logged.

        @return: fires when the backend has removed them (at once for a
            synchronous one).
        """
        self._expiry.stop()
        removed = self.table.reset()
        if removed:
            # One line, not one per mapping (each is said at debug level).
            log.info("gateway stopped: removed {count} mapping(s)", count=len(removed))
        self.drops.stop()
        self.refusals.stop()
        if self._batched is not None:
            return self._batched.stop(removed)
        return succeed(None)


#: The first name of L{Gateway}, kept for existing callers.
NATPMPGateway = Gateway
