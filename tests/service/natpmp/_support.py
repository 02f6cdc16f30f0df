"""
The NAT-PMP end-to-end service tests' LAN: the real NAT-PMP client and the
real gateway (L{GatewayService}) on the in-memory UDP network, on one
L{Clock}, and the helpers the tests share.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from twisted_natpmp.errors import NotAuthorizedError
from twisted_natpmp.interfaces import IMappingObserver, IPortMapper
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    MapRequest,
    Protocol,
    ResultCode,
    decodeRequest,
)
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient
from twisted_natpmp.server import GatewayService
from twisted_natpmp.server.backends.memory import MemoryBackend
from twisted_natpmp.service import (
    MappingDeclaration,
    MappingState,
    PortMapperService,
)
from twisted_natpmp.testing import Datagram, MemoryUDPNetwork

GATEWAY = "10.0.0.1"
OTHER_GATEWAY = "10.0.0.254"
HOST = "10.0.0.2"
NEIGHBOUR = "10.0.0.3"
EXTERNAL = IPv4Address("192.0.3.1")
OTHER_EXTERNAL = IPv4Address("192.0.3.2")
UDP5000 = MappingDeclaration(Protocol.UDP, 5000)
TCP8080 = MappingDeclaration(Protocol.TCP, 8080, 8443)


def pcpAnnounce(epoch: int, result: int = 0, opcode: int = 0x80) -> bytes:
    """
    A PCP ANNOUNCE response (RFC 6887 s7.2, s14.1), as miniupnpd multicasts
    it when it starts.
    """
    return (
        bytes((2, opcode, 0, result))
        + (0).to_bytes(4, "big")
        + epoch.to_bytes(4, "big")
        + bytes(12)
    )


@implementer(IMappingObserver)
class RecordingObserver:
    def __init__(self) -> None:
        self.states: list[MappingState] = []

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        self.states.append(state)


class ServiceTestMixin:
    """
    A LAN with a gateway at L{GATEWAY} (external address L{EXTERNAL}) and
    this host at L{HOST}.
    """

    network: MemoryUDPNetwork

    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = self.startGateway(GATEWAY, EXTERNAL)
        self.network.flush()
        self.clients: list[NATPMPClient] = []
        self.observer = RecordingObserver()

    def startGateway(
        self, address: str, external: IPv4Address | None, **kwargs: Any
    ) -> GatewayService:
        gateway = GatewayService(
            self.network.host(address), [f"{address}/24"], external, **kwargs
        )
        gateway.startService()
        # A gateway that has run for long: the copies of its start-up
        # announcement (RFC 6886 s3.2.1) are over.  It announces when it
        # restarts or its address changes.
        announcer = gateway._announcer
        if announcer is not None:
            announcer.stop()
        return gateway

    def clientFactory(self, gateway: IPv4Address | IPv6Address) -> IPortMapper:
        assert isinstance(gateway, IPv4Address), "NAT-PMP speaks only IPv4"
        client = listenClient(
            self.network.host(HOST), gateway, monotonic=self.clock.seconds
        )
        self.clients.append(client)
        return client

    def makeService(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        options: dict[str, Any] = dict(
            gateway=GATEWAY,
            clientFactory=self.clientFactory,
            holdOff=lambda: 0.0,
            backoff=lambda attempt: 10.0,
            monotonic=self.clock.seconds,
        )
        options.update(kwargs)
        reactor = options.pop("reactor", self.network.host(HOST))
        service = PortMapperService(reactor, declarations, **options)
        service.addObserver(self.observer)
        return service

    def start(
        self, *declarations: MappingDeclaration, **kwargs: Any
    ) -> PortMapperService:
        service = self.makeService(*declarations, **kwargs)
        service.startService()
        self.network.flush()
        return service

    def mapRequests(
        self, since: float = 0.0, gateway: str = GATEWAY
    ) -> list[tuple[float, MapRequest]]:
        """
        The mapping requests (not deletions) sent to C{gateway}, with their
        times.
        """
        found = []
        for datagram in self.network.sentTo((gateway, 5351)):
            request = decodeRequest(datagram.data)
            if (
                datagram.time >= since
                and isinstance(request, MapRequest)
                and request.lifetime
            ):
                found.append((datagram.time, request))
        return found

    def deletions(self, gateway: str = GATEWAY) -> list[tuple[float, MapRequest]]:
        found = []
        for datagram in self.network.sentTo((gateway, 5351)):
            request = decodeRequest(datagram.data)
            if isinstance(request, MapRequest) and not request.lifetime:
                found.append((datagram.time, request))
        return found

    def addressRequests(self, gateway: str = GATEWAY) -> list[float]:
        return [
            d.time
            for d in self.network.sentTo((gateway, 5351))
            if isinstance(decodeRequest(d.data), ExternalAddressRequest)
        ]

    def onGateway(
        self,
        protocol: Protocol,
        internalPort: int,
        gateway: GatewayService | None = None,
    ) -> int | None:
        """
        The external port the gateway holds for this host's C{internalPort}.
        """
        table = (gateway or self.gateway).gateway
        assert table is not None
        mapping = table.table.get(IPv4Address(HOST), protocol, internalPort)
        return None if mapping is None else mapping.externalPort

    def rebootGateway(self, gateway: GatewayService | None = None) -> None:
        """
        Lose the gateway's state without an announcement (RFC 6886 s3.6).
        """
        handler = (gateway or self.gateway).gateway
        assert handler is not None
        handler.table.reset()

    def sendFrom(self, source: str, packet: bytes, port: int = 5350) -> None:
        sender = DatagramProtocol()
        self.network.host(source).listenUDP(0, sender)
        assert sender.transport is not None
        sender.transport.write(packet, ("224.0.0.1", port))
        sender.transport.stopListening()
        self.network.flush()

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """
        Advance the clock in small steps, delivering datagrams as they go.
        """
        steps = int(seconds / step)
        for _ in range(steps):
            self.clock.advance(step)
            self.network.flush()
        rest = seconds - steps * step
        if rest > 1e-9:
            self.clock.advance(rest)
            self.network.flush()

    def sentByUs(self) -> list[Datagram]:
        return [d for d in self.network.log if d.source[0] == HOST]

    def gatewayGone(self) -> None:
        self.network.drop = lambda datagram: True

    def gatewayBack(self) -> None:
        self.network.drop = lambda datagram: False


class RefusingBackend(MemoryBackend):
    """
    A gateway's backend that refuses to forward some internal ports (RFC
    6886 s3.5, result 2).
    """

    def __init__(self, refused: set[int]) -> None:
        super().__init__()
        self.refused = refused

    def addMapping(
        self,
        internalAddress: IPv4Address | IPv6Address,
        protocol: Protocol,
        internalPort: int,
        externalPort: int,
    ) -> None:
        if internalPort in self.refused:
            raise NotAuthorizedError(ResultCode.NOT_AUTHORIZED)
        super().addMapping(internalAddress, protocol, internalPort, externalPort)


def texts(events: Sequence[Any], level: str | None = None) -> list[str]:
    """
    The formatted texts of the events, of one level if C{level} is given.
    """
    return [
        e["log_format"].format(**e)
        for e in events
        if "log_format" in e and (level is None or e["log_level"].name == level)
    ]
