"""
What the gateway tests share: a gateway on an in-memory UDP network
(L{twisted_natpmp.testing.MemoryUDPNetwork}) and a L{Clock}, clients that
ask it, and its log.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import (
    ANNOUNCE_GROUP,
    CLIENT_PORT,
    OPCODES,
    SERVER_PORT,
)
from twisted_natpmp.server import (
    _batchedgateway,
    _eventlog,
    _protocol,
    _service,
    announcer,
    gateway,
)
from twisted_natpmp.server._service import GatewayService
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.table import MappingTable
from twisted_natpmp.testing import MemoryUDPNetwork

#: The modules of the server package that log.
LOGGING_MODULES = (gateway, _batchedgateway, _eventlog, _service, announcer, _protocol)


def captureLogs(testCase: SynchronousTestCase, observer: ILogObserver) -> None:
    """
    Send what every logging module of the server package logs to
    C{observer} for the rest of C{testCase}.
    """
    for module in LOGGING_MODULES:
        testCase.patch(module, "log", Logger(observer=observer))


TCP, UDP = Transport.TCP, Transport.UDP
GATEWAY = "10.77.0.1"
CLIENT = "10.77.0.2"
OTHER = "10.77.0.3"
EXTERNAL = "192.0.3.77"
ANNOUNCE = (ANNOUNCE_GROUP, CLIENT_PORT)


def mapRequest(
    transport: Transport, internal: int, external: int, lifetime: int
) -> bytes:
    return struct.pack(
        "!BBHHHI", 0, OPCODES[transport], 0, internal, external, lifetime
    )


def parseMap(reply: bytes) -> tuple[int, int, int, int, int, int]:
    """
    (opcode, result, epoch, internal port, external port, lifetime).
    """
    assert len(reply) == 16, reply.hex()
    _, opcode, result, epoch, internal, external, lifetime = struct.unpack(
        "!BBHIHHI", reply
    )
    return opcode, result, epoch, internal, external, lifetime


def epochOf(reply: bytes) -> int:
    value: int = struct.unpack_from("!I", reply, 4)[0]
    return value


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))


class GatewayTestsMixin:
    """
    A gateway at 10.77.0.1 serving 10.77.0.0/24, external address
    192.0.3.77, and clients at .2 and .3.
    """

    def setUp(self) -> None:
        self.net = MemoryUDPNetwork()
        self.clock = self.net.clock
        self.clock.advance(5000)
        self.backend = MemoryBackend()
        self.logged: list[dict[str, Any]] = []
        captureLogs(self, self.logged.append)  # type: ignore[arg-type]
        self.clients: dict[str, Recorder] = {}

    def startGateway(self, **kwargs: Any) -> GatewayService:
        kwargs.setdefault("backend", self.backend)
        listen = kwargs.pop("listen", [f"{GATEWAY}/24"])
        external = kwargs.pop("externalAddress", EXTERNAL)
        service = GatewayService(self.net.host(GATEWAY), listen, external, **kwargs)
        service.startService()
        self.addCleanup(service.stopService)  # type: ignore[attr-defined]
        self.service = service
        return service

    def ask(
        self, packet: bytes, source: str = CLIENT, gateway: str = GATEWAY
    ) -> bytes | None:
        """
        Send C{packet} from C{source} to the gateway and return the one
        reply, or L{None}.
        """
        recorder = self.clients.get(source)
        if recorder is None:
            recorder = self.clients[source] = Recorder()
            self.net.host(source).listenUDP(0, recorder)
        before = len(recorder.received)
        port = recorder.transport
        assert port is not None
        port.write(packet, (gateway, SERVER_PORT))
        self.net.flush()
        replies = recorder.received[before:]
        assert len(replies) <= 1, replies
        if not replies:
            return None
        data, addr = replies[0]
        assert addr == (gateway, SERVER_PORT), addr
        return data

    def table(self) -> MappingTable:
        """
        The running gateway's table (started by L{startGateway}).
        """
        return self.service.gateway.table  # type: ignore[union-attr]

    def announcements(self) -> list[bytes]:
        return [d.data for d in self.net.sentTo(ANNOUNCE)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get("event") == kind]
