"""
What the table tests share: clients, a backend that fails on demand, a
table on a L{Clock}.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.internet.task import Clock

from twisted_natpmp._types import IPAddress, Transport
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.table import (
    EventKind,
    MappingTable,
    TableEvent,
)

TCP, UDP = Transport.TCP, Transport.UDP
ALICE = IPv4Address("10.0.0.2")
BOB = IPv4Address("10.0.0.3")
CAROL = IPv4Address("10.0.0.4")
DAVE = IPv4Address("10.0.0.5")


class FailingBackend(MemoryBackend):
    """
    A L{MemoryBackend} that raises chosen exceptions, to stand for a
    firewall that refuses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addError: Exception | None = None
        self.removeError: Exception | None = None

    def addMapping(
        self, internalAddress: IPAddress, protocol: Transport, internal: int, ext: int
    ) -> None:
        if self.addError is not None:
            raise self.addError
        super().addMapping(internalAddress, protocol, internal, ext)

    def removeMapping(
        self, internalAddress: IPAddress, protocol: Transport, internal: int, ext: int
    ) -> None:
        if self.removeError is not None:
            raise self.removeError
        super().removeMapping(internalAddress, protocol, internal, ext)


class TableTestsMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.backend = FailingBackend()
        self.events: list[TableEvent] = []
        self.table = self.makeTable()

    def makeTable(self, **limits: int) -> MappingTable:
        return MappingTable(
            self.clock, self.backend, observer=self.events.append, **limits
        )

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events]
