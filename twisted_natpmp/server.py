"""
A NAT-PMP gateway (RFC 6886, the server side).

  - L{NATPMPGateway} turns request bytes into response bytes: the protocol
    logic, on top of a L{MappingTable}; it also keeps the expiry timer.
  - L{NATPMPServerProtocol} is the C{DatagramProtocol} listening on UDP
    port 5351 of one internal address.
  - L{Announcer} multicasts the external address on the schedule of RFC 6886
    s3.2.1.
  - L{GatewayService} puts them together: one listening port per internal
    address, one table, announcements on start and on address change.  It
    is what C{twistd natpmp-gateway} runs, and what tests build directly::

        service = GatewayService(
            reactor, ["10.77.0.1/24"], "192.0.3.1", maxLifetime=3600
        )
        service.startService()

Choices where RFC 6886 is silent or loose (each tested):

  - A request with an unknown opcode below 128 (s3.5) is echoed with the top
    bit of the opcode set and result 5 when it is long enough (8 bytes or
    more) to hold a result: result code at bytes 2-3 and the epoch at bytes
    4-7, because every response carries the epoch (s3.5).  A shorter one
    is answered with the 8-byte header alone (opcode|128, result 5, epoch),
    as miniupnpd does.
  - The unsupported-version reply carries opcode 128 (Errata 3618), and
    answers any version but 0, so that a PCP (version 2) client falls back
    to NAT-PMP at once (RFC 6886 s1.1).
  - Packets shorter than 2 bytes, map requests shorter than 12 bytes and
    anything with the top bit of the opcode set (a response, of any
    version) are dropped and counted, never answered.  Trailing bytes are
    ignored.
  - Internal port 0 with a non-zero lifetime is refused with result 2 (Not
    Authorized/Refused): internal port 0 only means "all my mappings" with
    lifetime 0 (s3.4); miniupnpd answers 2 too.
  - A deletion of all mappings (internal port 0, lifetime 0) is honoured
    whatever the suggested external port, although s3.4 says the client
    sends 0 there; it deletes only the request's protocol (s3.4; miniupnpd
    deletes both).
  - Requests from outside the internal networks, or that arrived on
    another interface than the one holding the listening address (on real
    sockets, L{InterfaceCheckingPort}), are dropped, not answered (s3.3
    says they are not to be accepted; a reply could be reflected at a
    spoofed source).
  - Without an external address (L{None}, or 0.0.0.0) every request but a
    deletion gets result 3 (s3.2, s3.5); deleting always works (s3.4).
  - The epoch and expiry are judged by a monotonic clock (L{monotonicFor}),
    so that setting the wall clock neither restarts the epoch (s3.6) nor
    expires mappings early (s3.3).
  - Against floods and forged sources: a gateway-wide mapping limit, a fair
    share (see L{MappingTable}), and an optional per-source rate limit on
    mapping requests (L{RateLimiter}).  Dropped packets and refused
    requests are counted per source and logged in aggregate
    (L{twisted_natpmp._droplog.DropLog}); each mapping event is logged on
    its own line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorFDSet,
    IReactorMulticast,
    IReactorTime,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._droplog import DropLog
from ._internalport import InterfaceCheckingPort, LocalInterface, interfaceHolding
from ._ratelimit import DEFAULT_REQUEST_BURST, RateLimiter, checkRate
from ._table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
    EventKind,
    MappingTable,
    MonotonicClock,
    Refused,
    TableEvent,
    checkLimits,
)
from ._wire import (
    ANNOUNCE_GROUP,
    CLIENT_PORT,
    SERVER_PORT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    ResultCode,
    UnsupportedOpcode,
    UnsupportedVersion,
    decodeRequest,
)
from .backends import MemoryBackend
from .interfaces import IMappingBackend

log = Logger()

#: The waits between the 10 copies of an announcement: the first two 250 ms
#: apart, then doubling (RFC 6886 s3.2.1).
ANNOUNCE_INTERVALS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

_RESPONSE_BIT = 0x80
_HEADER_SIZE = 8
_UNSPECIFIED = IPv4Address(0)

Endpoint = tuple[str, int]


class _SystemMonotonicClock:
    """
    The system's monotonic clock (C{time.monotonic}).
    """

    def seconds(self) -> float:
        return time.monotonic()


def monotonicFor(clock: IReactorTime) -> MonotonicClock:
    """
    The monotonic clock to judge elapsed time by beside C{clock}: the
    system's for a real reactor (whose C{seconds()} is the wall clock,
    which can be set back or forward), the clock itself for any other (a
    L{twisted.internet.task.Clock} in tests, whose time only the test
    moves).
    """
    if isinstance(clock, ReactorBase):
        return _SystemMonotonicClock()
    return clock


def externalAddressOrNone(address: IPv4Address | str | None) -> IPv4Address | None:
    """
    An external address, or L{None} for none yet: 0.0.0.0 is no address
    (RFC 6886 s3.2 sends it only with a non-zero result).

    @raise ValueError: C{address} is not an IPv4 address.
    """
    if address is None:
        return None
    parsed = IPv4Address(address)
    return None if parsed.is_unspecified else parsed


class NATPMPGateway:
    """
    The request handling of a gateway, shared by all its listening ports.

    @ivar table: the mappings.
    @ivar externalAddress: the address announced and reported; L{None} (no
        external address yet; 0.0.0.0 means the same) answers every request
        but a deletion with result 3, Network Failure (RFC 6886 s3.2, s3.5).
    @ivar internalNetworks: where requests may come from (RFC 6886 s3.3).
    @ivar rateLimiter: each source's request rate limit, or L{None}.
    @ivar drops: every packet dropped, counted by source and reason.
    @ivar refusals: every request refused with a result code, counted by
        client and reason.
    """

    def __init__(
        self,
        clock: IReactorTime,
        externalAddress: IPv4Address | str | None,
        internalNetworks: Iterable[IPv4Network | str],
        *,
        backend: IMappingBackend | None = None,
        minPort: int = DEFAULT_MIN_PORT,
        maxPort: int = DEFAULT_MAX_PORT,
        maxLifetime: int = DEFAULT_MAX_LIFETIME,
        maxMappingsPerClient: int = DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        maxMappings: int | None = None,
        requestRate: float | None = None,
        requestBurst: int = DEFAULT_REQUEST_BURST,
        monotonic: MonotonicClock | None = None,
    ) -> None:
        """
        @param clock: schedules the expiry timer and the drop summaries.
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
        """
        self._clock = clock
        self._monotonic = monotonicFor(clock) if monotonic is None else monotonic
        self.externalAddress = externalAddress
        self.internalNetworks = tuple(IPv4Network(n) for n in internalNetworks)
        self.table = MappingTable(
            self._monotonic,
            MemoryBackend() if backend is None else backend,
            minPort=minPort,
            maxPort=maxPort,
            maxLifetime=maxLifetime,
            maxMappingsPerClient=maxMappingsPerClient,
            maxMappings=maxMappings,
            observer=_logEvent,
        )
        self.rateLimiter = (
            None
            if requestRate is None
            else RateLimiter(self._monotonic, requestRate, requestBurst)
        )
        self._expiryCall: IDelayedCall | None = None
        self._expiryDue = 0.0
        self.drops = DropLog(log, clock, "NAT-PMP gateway")
        self.refusals = DropLog(log, clock, "NAT-PMP gateway", verb="refused")

    @property
    def externalAddress(self) -> IPv4Address | None:
        return self._external

    @externalAddress.setter
    def externalAddress(self, address: IPv4Address | str | None) -> None:
        self._external = externalAddressOrNone(address)

    # Serving

    def isInternal(self, address: IPv4Address) -> bool:
        """
        Whether requests from C{address} are served (RFC 6886 s3.3).
        """
        return any(address in network for network in self.internalNetworks)

    def respond(self, packet: bytes, source: Endpoint) -> bytes | None:
        """
        Answer one datagram.

        @param source: where it came from: the client whose mappings it
            asks about (RFC 6886 s3.3: a client only maps ports to itself).
        @return: the response, or L{None} when the packet is not answered
            (the reason is logged).
        """
        host = str(source[0])
        try:
            client = IPv4Address(host)
        except ValueError:
            self.drops.drop(host, "not an IPv4 source")
            return None
        if not self.isInternal(client):
            self.drops.drop(host, "outside the internal networks")
            return None
        if len(packet) >= 2 and packet[1] & _RESPONSE_BIT:
            # RFC 6886 s3.3: a response sent to the gateway is ignored.
            self.drops.drop(host, "a response, not a request", f"opcode {packet[1]}")
            return None
        try:
            request = decodeRequest(packet)
        except UnsupportedVersion:
            # RFC 6886 s3.5 with Errata 3618: opcode 128, result 1.
            return ErrorResponse(
                _RESPONSE_BIT, ResultCode.UNSUPPORTED_VERSION, self.table.epoch()
            ).encode()
        except UnsupportedOpcode as e:
            return self._unsupportedOpcode(e.opcode, packet)
        except MalformedPacket as e:
            self.drops.drop(host, "malformed", e.reason)
            return None
        if isinstance(request, ExternalAddressRequest):
            return self._externalAddress().encode()
        if self.rateLimiter is not None and not self.rateLimiter.allow(host):
            self.drops.drop(host, "over the rate limit")
            return None
        return self._map(client, request).encode()

    def announcement(self) -> bytes | None:
        """
        The packet to multicast now (RFC 6886 s3.2.1), with the current
        epoch; L{None} without an external address.
        """
        if self.externalAddress is None:
            return None
        return self._externalAddress().encode()

    def _externalAddress(self) -> ExternalAddressResponse:
        if self.externalAddress is None:
            # RFC 6886 s3.2: the address is 0 when the result is not.
            return ExternalAddressResponse(
                ResultCode.NETWORK_FAILURE, self.table.epoch(), _UNSPECIFIED
            )
        return ExternalAddressResponse(
            ResultCode.SUCCESS, self.table.epoch(), self.externalAddress
        )

    def _unsupportedOpcode(self, opcode: int, packet: bytes) -> bytes:
        epoch = self.table.epoch()
        if len(packet) < _HEADER_SIZE:
            return ErrorResponse(
                opcode | _RESPONSE_BIT, ResultCode.UNSUPPORTED_OPCODE, epoch
            ).encode()
        reply = bytearray(packet)
        reply[1] = opcode | _RESPONSE_BIT
        reply[2:4] = ResultCode.UNSUPPORTED_OPCODE.to_bytes(2, "big")
        reply[4:8] = epoch.to_bytes(4, "big")
        return bytes(reply)

    def _map(self, client: IPv4Address, request: MapRequest) -> MapResponse:
        protocol = request.protocol
        internalPort = request.internalPort
        externalPort = lifetime = 0
        result: int
        if request.lifetime == 0:
            # Deleting works with or without an external address (s3.4).
            result = self._delete(client, request)
        elif self.externalAddress is None:
            # RFC 6886 s3.5: no external address yet, nothing granted.
            result = self._refused(
                Refused(ResultCode.NETWORK_FAILURE, "no external address yet"), client
            )
        elif internalPort == 0:
            result = self._refused(
                Refused(ResultCode.NOT_AUTHORIZED, "internal port 0 with a lifetime"),
                client,
            )
        else:
            try:
                mapping = self.table.map(
                    client,
                    protocol,
                    internalPort,
                    request.suggestedExternalPort,
                    request.lifetime,
                )
            except Refused as e:
                result = self._refused(e, client)
            else:
                result = ResultCode.SUCCESS
                externalPort = mapping.externalPort
                lifetime = mapping.lifetime
        self._scheduleExpiry()
        return MapResponse(
            protocol, result, self.table.epoch(), internalPort, externalPort, lifetime
        )

    def _delete(self, client: IPv4Address, request: MapRequest) -> int:
        """
        Delete one mapping, or all of the protocol's (RFC 6886 s3.4).
        Deleting a mapping that does not exist succeeds.
        """
        if request.internalPort == 0:
            _, error = self.table.deleteAll(client, request.protocol)
            if error is not None:
                return self._refused(error, client)
            return ResultCode.SUCCESS
        try:
            self.table.delete(client, request.protocol, request.internalPort)
        except Refused as e:
            return self._refused(e, client)
        return ResultCode.SUCCESS

    def _refused(self, refusal: Refused, client: IPv4Address) -> int:
        """
        Count and log (in aggregate) a request refused with a result code.

        @return: the result code to answer with.
        """
        self.refusals.drop(
            str(client),
            f"{refusal.reason}, answered result {refusal.resultCode}",
            refusal.detail,
        )
        return refusal.resultCode

    # Expiry

    def _scheduleExpiry(self) -> None:
        """
        Make sure the expiry timer fires no later than the table's next
        deadline.
        """
        deadline = self.table.nextExpiry()
        call = self._expiryCall
        if call is not None and call.active():
            if deadline is not None and self._expiryDue <= deadline:
                return
            call.cancel()
        self._expiryCall = None
        if deadline is not None:
            # Deadlines are monotonic; the timer runs on the reactor, which a
            # wall-clock step may fire early (then nothing is due yet, and
            # the timer is set again) or late.
            self._expiryDue = deadline
            delay = max(deadline - self._monotonic.seconds(), 0.0)
            self._expiryCall = self._clock.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._expiryCall = None
        self.table.expire()
        self._scheduleExpiry()

    def stop(self) -> None:
        """
        Stop the expiry timer and remove every mapping, as a gateway that
        shuts down loses its state (RFC 6886 s3.6); say what drops are
        counted and not yet logged.
        """
        if self._expiryCall is not None and self._expiryCall.active():
            self._expiryCall.cancel()
        self._expiryCall = None
        self.table.reset()
        self.drops.stop()
        self.refusals.stop()


def _logEvent(event: TableEvent) -> None:
    mapping = event.mapping
    if event.kind is EventKind.REMOVE_FAILED:
        log.error(
            "backend failed to remove {protocol} mapping of {client}:{internalPort}"
            " from external port {externalPort}: {error}",
            protocol=mapping.protocol.label,
            client=str(mapping.client),
            internalPort=mapping.internalPort,
            externalPort=mapping.externalPort,
            error=repr(event.error),
        )
        return
    log.info(
        "mapping {event}: {protocol} external port {externalPort}"
        " -> {client}:{internalPort}, lifetime {lifetime} s",
        event=event.kind.value,
        protocol=mapping.protocol.label,
        externalPort=mapping.externalPort,
        client=str(mapping.client),
        internalPort=mapping.internalPort,
        lifetime=mapping.lifetime,
    )


class NATPMPServerProtocol(DatagramProtocol):
    """
    Serves NAT-PMP requests arriving at one internal address (bind it to
    that address, not to 0.0.0.0, so that only requests addressed to an
    internal address are served, and listen with an
    L{InterfaceCheckingPort}, so that only those that arrived on an internal
    interface are: RFC 6886 s3.3).

    A packet that cannot be answered is dropped and logged; nothing a
    client sends stops the protocol.
    """

    def __init__(self, gateway: NATPMPGateway) -> None:
        self.gateway = gateway

    def otherInterface(
        self, datagram: bytes, addr: Endpoint, interfaceIndex: int | None
    ) -> None:
        """
        Drop a datagram that arrived on an interface other than the one
        holding this port's address: perhaps the external one, with a
        forged source (RFC 6886 s3.3: the gateway MUST NOT accept requests
        received on its external interface).  It is not answered.
        """
        self.gateway.drops.drop(
            str(addr[0]),
            "not received on an internal interface",
            f"{len(datagram)} bytes on interface index {interfaceIndex}",
        )

    def datagramReceived(self, datagram: bytes, addr: Endpoint) -> None:
        try:
            reply = self.gateway.respond(datagram, addr)
        except Exception:
            log.failure("failed to answer {size}-byte packet", size=len(datagram))
            return
        if reply is None or self.transport is None:
            return
        try:
            self.transport.write(reply, addr)
        except OSError as e:
            self.gateway.drops.drop(str(addr[0]), "reply not sent", str(e))


class Announcer:
    """
    Sends the gateway's external address to the announcement group: 10
    copies, the first two 250 ms apart and then doubling, each with the
    epoch of its own moment (RFC 6886 s3.2.1).  Starting again cancels a
    schedule in progress.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: NATPMPGateway,
        transports: Sequence[IUDPTransport],
        destination: Endpoint = (ANNOUNCE_GROUP, CLIENT_PORT),
        intervals: Sequence[float] = ANNOUNCE_INTERVALS,
    ) -> None:
        self._clock = clock
        self._gateway = gateway
        self._transports = transports
        self._destination = destination
        self._intervals = intervals
        self._call: IDelayedCall | None = None
        self._started = clock.seconds()

    def start(self) -> None:
        """
        Send the first copy now and schedule the rest.
        """
        self.stop()
        self._started = self._clock.seconds()
        self._send(0)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _send(self, sent: int) -> None:
        self._call = None
        packet = self._gateway.announcement()
        if packet is None:
            return
        for transport in self._transports:
            try:
                transport.write(packet, self._destination)
            except OSError as e:
                log.warn(
                    "could not announce to {destination}: {error}",
                    destination="{}:{}".format(*self._destination),
                    error=str(e),
                )
        if sent < len(self._intervals):
            # Each copy at its own time after the start, so that a late
            # timer does not push the rest of the schedule back.
            due = self._started + sum(self._intervals[: sent + 1])
            self._call = self._clock.callLater(
                max(due - self._clock.seconds(), 0.0), self._send, sent + 1
            )


def _cannotAnnounce(failure: Failure, address: str) -> None:
    log.failure("cannot announce from {address}", failure, address=address)


class GatewayService(Service):
    """
    A NAT-PMP gateway: listens on port 5351 of each internal address,
    serves one mapping table, and announces its external address when it
    starts and when the address changes (RFC 6886 s3.2.1).

    Each start begins a new epoch with an empty table; stopping removes
    every mapping from the backend.

    @ivar gateway: the request handler, while running.
    @ivar ports: the listening ports, while running, in the order of
        C{listen}.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        listen: Iterable[IPv4Interface | str],
        externalAddress: IPv4Address | str | None,
        *,
        port: int = SERVER_PORT,
        backend: IMappingBackend | None = None,
        minPort: int = DEFAULT_MIN_PORT,
        maxPort: int = DEFAULT_MAX_PORT,
        maxLifetime: int = DEFAULT_MAX_LIFETIME,
        maxMappingsPerClient: int = DEFAULT_MAX_MAPPINGS_PER_CLIENT,
        maxMappings: int | None = None,
        requestRate: float | None = None,
        requestBurst: int = DEFAULT_REQUEST_BURST,
        announceTo: Endpoint | None = (ANNOUNCE_GROUP, CLIENT_PORT),
        clock: IReactorTime | None = None,
        monotonic: MonotonicClock | None = None,
        interfaceOf: Callable[[IPv4Address], LocalInterface | None] = (
            interfaceHolding
        ),
    ) -> None:
        """
        @param reactor: provides
            L{twisted.internet.interfaces.IReactorTime} and
            L{twisted.internet.interfaces.IReactorMulticast} (the real
            reactor does).  On a reactor with real sockets
            (L{twisted.internet.interfaces.IReactorFDSet}) each port serves
            only the requests that arrive on the interface holding its
            address (RFC 6886 s3.3); a reactor without (an in-memory
            network, in tests) has no interfaces to tell apart.
        @param listen: the internal addresses with their networks, e.g.
            C{"10.77.0.1/24"}: requests are served on C{port} of each
            address, from clients in any of the networks (RFC 6886 s3.3).
        @param externalAddress: the address to report; L{None} (or 0.0.0.0)
            answers every request but a deletion with result 3 until
            L{setExternalAddress} gives one (RFC 6886 s3.2, s3.5).
        @param port: the UDP port to serve; 0 picks one (for tests).
        @param backend: makes mappings real; a L{MemoryBackend} by
            default.
        @param maxMappings: the most mappings the gateway holds; L{None} (the
            default here; C{twistd natpmp-gateway} sets one): as many as the
            port range allows.
        @param requestRate: mapping requests per second each source may
            send, after a burst of C{requestBurst}; beyond it they are
            dropped and counted (see L{NATPMPGateway}).  L{None} (the default
            here; C{twistd natpmp-gateway} sets one): no limit.
        @param announceTo: where announcements go; L{None} sends none.
        @param clock: schedules announcements and the expiry timer;
            C{reactor} by default (tests pass a
            L{twisted.internet.task.Clock} to run real UDP on fake time).
        @param monotonic: the time of the epoch and of expiry;
            L{monotonicFor} C{clock} by default (the system's monotonic
            clock beside a real reactor).
        @param interfaceOf: finds the interface that holds an internal
            address (replaced in tests).
        """
        self._reactor = reactor
        self._clock = reactor if clock is None else clock
        self.listen = tuple(IPv4Interface(i) for i in listen)
        if not self.listen:
            raise ValueError("a gateway needs at least one internal address")
        self.externalAddress = externalAddressOrNone(externalAddress)
        self.port = port
        self.backend = MemoryBackend() if backend is None else backend
        self._limits: dict[str, Any] = {
            "minPort": minPort,
            "maxPort": maxPort,
            "maxLifetime": maxLifetime,
            "maxMappingsPerClient": maxMappingsPerClient,
            "maxMappings": maxMappings,
        }
        checkLimits(minPort, maxPort, maxLifetime, maxMappingsPerClient, maxMappings)
        if requestRate is not None:
            checkRate(requestRate, requestBurst)
        self._requestRate = requestRate
        self._requestBurst = requestBurst
        self.announceTo = announceTo
        self.gateway: NATPMPGateway | None = None
        self.ports: list[IListeningPort] = []
        self._announcer: Announcer | None = None
        self._interfaceOf = interfaceOf
        self._monotonic = monotonic

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.gateway = NATPMPGateway(
            self._clock,
            self.externalAddress,
            [interface.network for interface in self.listen],
            backend=self.backend,
            monotonic=self._monotonic,
            requestRate=self._requestRate,
            requestBurst=self._requestBurst,
            **self._limits,
        )
        transports: list[IUDPTransport] = []
        try:
            for interface in self.listen:
                transports.append(self._listen(interface, self.gateway))
        except BaseException:
            # Do not leave the first addresses bound when a later one fails.
            self.stopService()
            raise
        if self.announceTo is not None:
            self._announcer = Announcer(
                self._clock, self.gateway, transports, self.announceTo
            )
            self._announcer.start()

    def _listen(
        self, interface: IPv4Interface, gateway: NATPMPGateway
    ) -> IUDPTransport:
        """
        Serve on one internal address: a multicast port bound to it, so that
        announcements leave by its interface, and, on real sockets, deaf to
        what arrives on another interface (RFC 6886 s3.3).

        @raise CannotListenError: the address cannot be bound, or no
            interface holds it.
        """
        address = str(interface.ip)
        protocol = NATPMPServerProtocol(gateway)
        reactor = cast(IReactorMulticast, self._reactor)
        port: IUDPTransport
        if IReactorFDSet.providedBy(reactor):
            local = self._interfaceOf(interface.ip)
            if local is None:
                raise CannotListenError(  # type: ignore[no-untyped-call]
                    address, self.port, OSError("no network interface has it")
                )
            checking = InterfaceCheckingPort(
                self.port,
                protocol,
                address,
                local.index,
                protocol.otherInterface,
                reactor,
            )
            checking.startListening()  # type: ignore[no-untyped-call]
            port = checking
            arriving = f"arriving on {local.name}"
        else:
            port = reactor.listenMulticast(self.port, protocol, interface=address)
            arriving = "(in-memory network)"
        self.ports.append(cast(IListeningPort, port))
        setting = port.setOutgoingInterface(address)
        if isinstance(setting, Deferred):
            setting.addErrback(_cannotAnnounce, address)
        log.info(
            "NAT-PMP gateway serving {network} on {address}:{port} {arriving},"
            " external address {external}",
            network=str(interface.network),
            address=address,
            port=port.getHost().port,
            arriving=arriving,
            external=str(self.externalAddress or "none yet"),
        )
        return cast(IUDPTransport, port)

    def setExternalAddress(self, address: IPv4Address | str | None) -> None:
        """
        Change the external address and, if running, announce it (RFC 6886
        s3.2.1); L{None} or 0.0.0.0 means none (requests get result 3 and
        nothing is announced until an address arrives).
        """
        self.externalAddress = externalAddressOrNone(address)
        if self.gateway is not None:
            self.gateway.externalAddress = self.externalAddress
            log.info(
                "external address is now {address}",
                address=str(self.externalAddress or "none"),
            )
        if self._announcer is not None:
            self._announcer.start()

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._announcer is not None:
            self._announcer.stop()
            self._announcer = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        ports, self.ports = self.ports, []
        return gatherResults(
            [maybeDeferred(port.stopListening) for port in ports]
        ).addCallback(lambda _: None)
