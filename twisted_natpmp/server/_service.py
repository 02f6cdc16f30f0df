# -*- test-case-name: tests.server.test_service -*-
"""
L{GatewayService}: a gateway's listening ports, table and announcements,
as one L{twisted.application.service.Service}.  It is what C{twistd
natpmp-gateway} runs, and what tests build directly::

    service = GatewayService(
        reactor, ["10.77.0.1/24"], "192.0.3.1", maxLifetime=3600
    )
    service.startService()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Interface,
    ip_interface,
    ip_network,
)
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IMulticastTransport,
    IReactorFDSet,
    IReactorMulticast,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress
from ..interfaces import IMappingBackend
from ..natpmp._wire import ANNOUNCE_GROUP, CLIENT_PORT, SERVER_PORT
from ..pcp._serverchecks import Network
from ..pcp.responder import DEFAULT_MIN_LIFETIME
from ._clock import MonotonicClock, externalAddressOrNone
from ._internalport import InterfaceCheckingPort, LocalInterface, interfaceHolding
from ._protocol import GatewayProtocol
from ._ratelimit import DEFAULT_REQUEST_BURST, checkRate
from .announcer import Announcer, PCPAnnouncements
from .backends._batching import IBatchingBackend
from .backends.memory import MemoryBackend
from .gateway import Endpoint, Gateway
from .table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
    checkLimits,
)

__all__ = ["ANNOUNCE_GROUP6", "GatewayService"]

#: Where PCP's unsolicited ANNOUNCE goes on IPv6 interfaces (RFC 6887
#: s14.1): all nodes on the link.
ANNOUNCE_GROUP6 = "ff02::1"

log = Logger()


def _cannotAnnounce(failure: Failure, address: str) -> None:
    log.failure("cannot announce from {address}", failure, address=address)


class GatewayService(Service):
    """
    A NAT-PMP gateway, and with C{pcp=True} a PCP one too on the same port
    and table: listens on port 5351 of each internal address, serves one
    mapping table, and announces its external address when it starts and
    when the address changes (RFC 6886 s3.2.1), and with PCP an unsolicited
    ANNOUNCE on the same schedule beside it (RFC 6887 s14.1), the epoch
    restarting with each new address (RFC 6887 s8.5).

    Each start begins a new epoch with an empty table; stopping removes
    every mapping from the backend.

    @ivar gateway: the request handler, while running.
    @ivar ports: the listening ports, while running, in the order of
        C{listen}.
    @ivar started: fires when the backend is ready (at once for a
        synchronous one), or fails if it cannot be made ready.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        listen: Iterable[IPv4Interface | IPv6Interface | str],
        externalAddress: IPv4Address | str | None,
        *,
        port: int = SERVER_PORT,
        backend: IMappingBackend | IBatchingBackend | None = None,
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
        interfaceOf: Callable[[IPAddress], LocalInterface | None] = (interfaceHolding),
        pcp: bool = False,
        minLifetime: int = DEFAULT_MIN_LIFETIME,
        allowThirdParty: Iterable[Network | str] = (),
        vpnLease: int | None = None,
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
            With C{pcp}, IPv6 ones too (C{"2001:db8:77::1/64"}), for PCP
            only.
        @param externalAddress: the address to report; L{None} (or 0.0.0.0)
            answers every request but a deletion with result 3 until
            L{setExternalAddress} gives one (RFC 6886 s3.2, s3.5).
        @param port: the UDP port to serve; 0 picks one (for tests).
        @param backend: makes mappings real; a L{MemoryBackend} by
            default.  A batching one (L{IBatchingBackend}, such as
            L{twisted_natpmp.server.backends.nftables.NftablesBackend}) is
            started afresh with the service (L{started}) and stopped with
            it.
        @param maxMappings: the most mappings the gateway holds; L{None} (the
            default here; C{twistd natpmp-gateway} sets one): as many as the
            port range allows.
        @param requestRate: mapping requests per second each source may
            send, after a burst of C{requestBurst}; beyond it they are
            dropped and counted (see L{Gateway}).  L{None} (the default
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
        @param pcp: whether to answer PCP (RFC 6887) too (C{twistd
            natpmp-gateway} does by default; this class, for its existing
            callers, does not).
        @param minLifetime: the shortest PCP lifetime granted (RFC 6887
            s15), or C{maxLifetime} if that is shorter; the longest is
            C{maxLifetime}.
        @param allowThirdParty: the networks whose hosts may use PCP's
            THIRD_PARTY option (RFC 6887 s13.1).
        @param vpnLease: behave like a VPN gateway's port forwarding
            (L{twisted_natpmp.server.vpn.VPNProfile}), granting internal port 0
            with a lifetime a forwarded port for this many seconds; L{None}:
            refused, as RFC 6886 s3.4 has it.
        """
        self._reactor = reactor
        self._clock = reactor if clock is None else clock
        self.listen = tuple(ip_interface(i) for i in listen)
        if not self.listen:
            raise ValueError("a gateway needs at least one internal address")
        if not pcp and any(isinstance(i, IPv6Interface) for i in self.listen):
            # RFC 6886 is IPv4's; PCP serves IPv6 (RFC 6887 s1).
            raise ValueError("IPv6 internal addresses are served by PCP only")
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
        self.gateway: Gateway | None = None
        self.started: Deferred[None] = succeed(None)
        self.ports: list[IListeningPort] = []
        self._announcer: Announcer | None = None
        self._interfaceOf = interfaceOf
        self._monotonic = monotonic
        if minLifetime < 1:
            raise ValueError(f"bad minimum lifetime {minLifetime}")
        self._pcp: dict[str, Any] = {
            "pcp": pcp,
            "minLifetime": minLifetime,
            "allowThirdParty": tuple(ip_network(n) for n in allowThirdParty),
        }
        self._pcpAnnouncer: Announcer | None = None
        self._pcpAnnouncer6: Announcer | None = None
        if vpnLease is not None and not 1 <= vpnLease <= maxLifetime:
            raise ValueError(f"bad VPN lease {vpnLease}")
        self._vpnLease = vpnLease

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if IBatchingBackend.providedBy(self.backend):
            # Its batches wait for the table made afresh.
            self.started = self.backend.start()
        self.gateway = Gateway(
            self._clock,
            self.externalAddress,
            [interface.network for interface in self.listen],
            backend=self.backend,
            monotonic=self._monotonic,
            requestRate=self._requestRate,
            requestBurst=self._requestBurst,
            **self._limits,
            **self._pcp,
        )
        self.gateway.stateLost = self._announce
        if self._vpnLease is not None:
            from .vpn import VPNProfile

            self.gateway.natpmp.forwarder = VPNProfile(self.gateway, self._vpnLease)
            log.info(
                "VPN profile: NAT-PMP internal port 0 with a lifetime gets a"
                " forwarded public port for {lease} s",
                lease=self._vpnLease,
            )
        transports: list[IUDPTransport] = []
        transports6: list[IUDPTransport] = []
        try:
            for interface in self.listen:
                listening = self._listen(interface, self.gateway)
                if isinstance(interface, IPv6Interface):
                    transports6.append(listening)
                else:
                    transports.append(listening)
        except BaseException:
            # Do not leave the first addresses bound when a later one fails.
            self.stopService()
            raise
        if self.announceTo is not None:
            self._announcer = Announcer(
                self._clock, self.gateway, transports, self.announceTo
            )
            self._announcer.start()
            if self.gateway.pcp is not None:
                self._pcpAnnouncer = Announcer(
                    self._clock,
                    PCPAnnouncements(self.gateway),
                    transports,
                    self.announceTo,
                )
                self._pcpAnnouncer.start()
                if transports6:
                    # RFC 6887 s14.1: on IPv6 interfaces, to [ff02::1]:5350.
                    self._pcpAnnouncer6 = Announcer(
                        self._clock,
                        PCPAnnouncements(self.gateway),
                        transports6,
                        (ANNOUNCE_GROUP6, self.announceTo[1]),
                    )
                    self._pcpAnnouncer6.start()

    def _listen(
        self, interface: IPv4Interface | IPv6Interface, gateway: Gateway
    ) -> IUDPTransport:
        """
        Serve on one internal address: a multicast port bound to it, so that
        announcements leave by its interface, and, on real sockets, deaf to
        what arrives on another interface (RFC 6886 s3.3).  An IPv6 address
        gets a plain UDP port (on real sockets the same interface check, and
        its multicast interface set), for PCP.

        @raise CannotListenError: the address cannot be bound, or no
            interface holds it.
        """
        address = str(interface.ip)
        protocol = GatewayProtocol(gateway)
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
        elif isinstance(interface, IPv6Interface):
            port = cast(
                IUDPTransport,
                cast(IReactorUDP, reactor).listenUDP(
                    self.port, protocol, interface=address, maxPacketSize=8192
                ),
            )
            arriving = "(without an interface check)"
        else:
            port = reactor.listenMulticast(self.port, protocol, interface=address)
            arriving = "(in-memory network)"
        self.ports.append(cast(IListeningPort, port))
        if not isinstance(interface, IPv6Interface):
            setting = cast(IMulticastTransport, port).setOutgoingInterface(address)
            if isinstance(setting, Deferred):
                setting.addErrback(_cannotAnnounce, address)
        log.info(
            "{protocols} gateway serving {network} on {address}:{port} {arriving},"
            " external address {external}",
            protocols="NAT-PMP and PCP" if gateway.pcp is not None else "NAT-PMP",
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
        self._announce()

    def _announce(self) -> None:
        """
        Announce the external address and the epoch again (RFC 6886
        s3.2.1, RFC 6887 s14.1).
        """
        if self._announcer is not None:
            self._announcer.start()
        if self._pcpAnnouncer is not None:
            self._pcpAnnouncer.start()
        if self._pcpAnnouncer6 is not None:
            self._pcpAnnouncer6.start()

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._announcer is not None:
            self._announcer.stop()
            self._announcer = None
        if self._pcpAnnouncer is not None:
            self._pcpAnnouncer.stop()
            self._pcpAnnouncer = None
        if self._pcpAnnouncer6 is not None:
            self._pcpAnnouncer6.stop()
            self._pcpAnnouncer6 = None
        stopping: list[Deferred[Any]] = []
        if self.gateway is not None:
            stopping.append(self.gateway.stop())
            self.gateway = None
        ports, self.ports = self.ports, []
        return gatherResults(
            stopping + [maybeDeferred(port.stopListening) for port in ports]
        ).addCallback(lambda _: None)
