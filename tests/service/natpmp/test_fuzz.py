"""
Fuzzed packets at the mapper service's NAT-PMP client port and at its
announcement port, forged from the gateway's address too, with the real
client and our gateway on the in-memory network (L{_support}): every
declaration stays mapped as the gateway's table says.  Deterministic
(seeded mutations from L{tools.impair.mutations}), on the network's
L{Clock}.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import mutations, validResponses
from twisted_natpmp.natpmp._wire import Protocol
from twisted_natpmp.service import MappingDeclaration, PortMapperService

from ..._fuzzing import LogWatch
from ._support import GATEWAY, HOST, NEIGHBOUR, ServiceTestMixin


class ServiceTests(ServiceTestMixin, SynchronousTestCase):
    """
    The mapper service against our gateway, with fuzzed packets at its
    client port and its announcement port, forged from the gateway's
    address too: afterwards (and one renewal later) every declaration is
    mapped, as the gateway's table says.
    """

    def consistent(self, service: PortMapperService) -> None:
        """
        Every declaration of C{service} is mapped, at the external port the
        gateway holds for it.
        """
        states = list(service.states())
        self.assertEqual(len(states), 3)
        for state in states:
            decl = state.declaration
            self.assertTrue(state.mapped, state)
            external = self.onGateway(decl.protocol, decl.internalPort)
            assert external is not None, decl
            self.assertEqual(state.externalPort, external, state)

    def test_declarationsStayConsistent(self) -> None:
        logs = LogWatch(self)
        service = self.start(
            MappingDeclaration(Protocol.UDP, 7000, lifetime=120),
            MappingDeclaration(Protocol.TCP, 7001, 17001, lifetime=120),
            MappingDeclaration(Protocol.UDP, 65535, lifetime=120),
        )
        self.advance(2, step=0.1)
        self.consistent(service)
        ports = [port for (host, port) in self.network.ports if host == HOST]
        self.assertEqual(len(ports), 1)
        clientPort = ports[0]
        rng = random.Random(11)
        packets = list(mutations(11, validResponses(), 3000))
        for i, packet in enumerate(packets):
            source = rng.choice([(GATEWAY, 5351), (NEIGHBOUR, 5351), (GATEWAY, 5350)])
            target = (HOST, clientPort) if i % 2 else ("224.0.0.1", 5350)
            self.network.send(source, target, packet)
            self.network.flush()
            if i % 100 == 0:
                self.clock.advance(0.1)
        # Past a renewal (half the lifetime) and any re-mapping the forged
        # announcements asked for.
        self.advance(90, step=0.1)
        self.consistent(service)
        self.assertGreaterEqual(len(self.network.log), len(packets))
        self.assertEqual(logs.failures, [])
        service.stopService()
        self.advance(10, step=0.1)
        table = self.gateway.gateway
        assert table is not None
        self.assertEqual(len(table.table), 0)
