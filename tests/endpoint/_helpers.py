"""
What the endpoint tests share: a L{MappedServerEndpoint} wrapping C{tcp:} on
a memory reactor, its mapper a L{FakePortMapper}, on the memory reactor's
clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from twisted_natpmp.endpoint import MappedListeningPort, MappedServerEndpoint
from twisted_natpmp.interfaces import IMappingObserver, IPortMapper, Probe
from twisted_natpmp.service import MappingState
from twisted_natpmp.testing import FakePortMapper

#: The gateway the fake mapper pretends to ask, and its external address.
GATEWAY = "10.0.0.1"
EXTERNAL = "192.0.2.1"

FACTORY = Factory.forProtocol(Protocol)


@implementer(IMappingObserver)
class Recorder:
    """
    Keeps every state it hears, and calls C{then(state)} after each.
    """

    def __init__(self, then: Any = None) -> None:
        self.states: list[MappingState] = []
        self._then = then

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        self.states.append(state)
        if self._then is not None:
            self._then(state)


def memoryReactor() -> MemoryReactorClock:
    return MemoryReactorClock()  # type: ignore[no-untyped-call]


def tcpEndpoint(reactor: Any, port: int, interface: str = "") -> IStreamServerEndpoint:
    """
    C{tcp:PORT} on C{reactor}.
    """
    endpoint: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor, port, interface=interface
    )
    return endpoint


class EndpointMixin:
    """
    C{self.reactor}, C{self.mappers} (each mapper made, in order) and
    L{endpoint}.
    """

    def setUp(self) -> None:
        self.reactor = memoryReactor()
        self.mappers: list[FakePortMapper] = []
        self.autoAnswer = False

    def clientFactory(self, gateway: Any) -> IPortMapper:
        mapper = FakePortMapper(gateway, autoAnswer=self.autoAnswer, address=EXTERNAL)
        self.mappers.append(mapper)
        return mapper

    @property
    def mapper(self) -> FakePortMapper:
        return self.mappers[-1]

    def endpoint(
        self, wrapped: IStreamServerEndpoint | None = None, **options: Any
    ) -> MappedServerEndpoint:
        options.setdefault("gateway", GATEWAY)
        options.setdefault("clientFactory", self.clientFactory)
        options.setdefault("announcements", lambda protocol: None)
        if wrapped is None:
            wrapped = tcpEndpoint(self.reactor, 8080)
        return MappedServerEndpoint(self.reactor, wrapped, **options)

    def listening(self, **options: Any) -> MappedListeningPort:
        """
        A port listening on memory TCP 8080 (fired at once).
        """
        d = self.endpoint(**options).listen(FACTORY)
        port = self.successResultOf(d)  # type: ignore[attr-defined]
        assert isinstance(port, MappedListeningPort)
        return port

    def grant(self, externalPort: int | None = None) -> None:
        """
        Answer the probe (the external address) and the mapping request.
        """
        for probe in self.mapper.pending("probe"):
            probe.succeed(Probe(self.mapper.protocolName, 1000, self.mapper.address))
        [request] = self.mapper.pending("addMapping")
        request.grant(externalPort)
