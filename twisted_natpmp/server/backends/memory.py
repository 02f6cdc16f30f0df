# -*- test-case-name: tests.server.test_backends -*-
"""
Backends that make a gateway's mappings real (L{IMappingBackend}).

L{MemoryBackend} keeps them in a dictionary: enough for a test gateway, for
trying a client without a router, and as the model for a backend that
writes real forwarding rules.
"""

from __future__ import annotations

from zope.interface import implementer

from ..._types import IPAddress, Transport
from ...errors import NotAuthorizedError, OutOfResourcesError
from ...interfaces import IMappingBackend


@implementer(IMappingBackend)
class MemoryBackend:
    """
    Forwarding "rules" kept in memory.

    @ivar forwards: (transport, external port) -> (internal address,
        internal port) for every mapping in force.
    @ivar capacity: the most mappings it accepts (L{None}: no limit);
        beyond it L{addMapping} raises L{OutOfResourcesError}.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.forwards: dict[tuple[Transport, int], tuple[IPAddress, int]] = {}
        self.capacity = capacity

    def addMapping(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Record a forward.

        @raise NotAuthorizedError: the external port already forwards
            somewhere (the table never asks for that).
        @raise OutOfResourcesError: L{capacity} is reached.
        """
        if (transport, externalPort) in self.forwards:
            raise NotAuthorizedError()
        if self.capacity is not None and len(self.forwards) >= self.capacity:
            raise OutOfResourcesError()
        self.forwards[(transport, externalPort)] = (internalAddress, internalPort)

    def removeMapping(
        self,
        internalAddress: IPAddress,
        transport: Transport,
        internalPort: int,
        externalPort: int,
    ) -> None:
        """
        Forget a forward; forgetting one that is not there does nothing.
        """
        if self.forwards.get((transport, externalPort)) == (
            internalAddress,
            internalPort,
        ):
            del self.forwards[(transport, externalPort)]
