"""
What the PCP gateway tests share: a gateway with PCP on, on a L{Clock},
and requests built with the codec.
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_natpmp._types import IPAddress, Transport
from twisted_natpmp.interfaces import IMappingBackend
from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    Option,
    Request,
    Response,
    decodeResponse,
    noPreference,
    protocolNumber,
)
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.gateway import Gateway

from ._helpers import CLIENT, EXTERNAL, captureLogs

NONCE = bytes(range(12))
OTHER_NONCE = bytes(range(1, 13))
CLIENT6 = "2001:db8:77::2"
NETWORK6 = "2001:db8:77::/64"


def mapPacket(
    internal: int,
    lifetime: int = 3600,
    *,
    transport: Transport = Transport.TCP,
    protocol: int | None = None,
    nonce: bytes = NONCE,
    client: str = CLIENT,
    clientField: str | None = None,
    external: int = 0,
    externalAddress: str | None = None,
    options: tuple[Option, ...] = (),
) -> bytes:
    """
    A MAP request's bytes.
    """
    address: IPAddress = ip_address(client)
    suggested = (
        noPreference(address)
        if externalAddress is None
        else ip_address(externalAddress)
    )
    data = MapData(
        nonce,
        protocolNumber(transport) if protocol is None else protocol,
        internal,
        external,
        suggested,
    )
    field = address if clientField is None else ip_address(clientField)
    return Request(Opcode.MAP, lifetime, field, data, options).encode()


@implementer(IMappingBackend)
class ForwardsOnly:
    """
    A backend that makes port forwards only: no pinholes, no filters.
    """

    def __init__(self) -> None:
        self.forwards: set[tuple[IPAddress, Transport, int, int]] = set()

    def addMapping(
        self, address: IPAddress, transport: Transport, internal: int, external: int
    ) -> None:
        self.forwards.add((address, transport, internal, external))

    def removeMapping(
        self, address: IPAddress, transport: Transport, internal: int, external: int
    ) -> None:
        self.forwards.discard((address, transport, internal, external))


def announcePacket(client: str = CLIENT) -> bytes:
    return Request(Opcode.ANNOUNCE, 0, ip_address(client)).encode()


class PCPGatewayMixin(SynchronousTestCase):
    """
    A gateway with PCP on, serving 10.77.0.0/24 and 2001:db8:77::/64,
    external address 192.0.3.77, on a L{Clock} at 5000 s.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(5000)
        self.backend = MemoryBackend()
        self.logged: list[dict[str, Any]] = []
        captureLogs(self, self.logged.append)  # type: ignore[arg-type]
        self.gateway = self.makeGateway()

    def makeGateway(self, **kwargs: Any) -> Gateway:
        kwargs.setdefault("backend", self.backend)
        kwargs.setdefault("pcp", True)
        networks = kwargs.pop("networks", ["10.77.0.0/24", NETWORK6])
        external = kwargs.pop("externalAddress", EXTERNAL)
        gateway = Gateway(self.clock, external, networks, **kwargs)
        self.addCleanup(gateway.stop)
        return gateway

    def raw(self, packet: bytes, source: str = CLIENT) -> bytes | None:
        return self.gateway.respond(packet, (source, 5350))

    def ask(self, packet: bytes, source: str = CLIENT) -> Response:
        """
        Send C{packet} from C{source}; decode the answer, which must come.
        """
        reply = self.raw(packet, source)
        assert reply is not None, "no reply"
        return decodeResponse(reply)

    def forwards(self) -> dict[tuple[Transport, int], tuple[IPAddress, int]]:
        return self.backend.forwards


EXTERNAL_ADDRESS = IPv4Address(EXTERNAL)
