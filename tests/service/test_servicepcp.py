"""
L{twisted_natpmp.service.PortMapperService} over PCP, end to end: the real
PCP client (C{protocol="pcp"}) against a scripted PCP server that answers
as miniupnpd does, on the in-memory network and a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import ProtocolName, Transport
from twisted_natpmp.announce import AnnouncementProtocol
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.pcp._wire import MapData, Request
from twisted_natpmp.service import MappingDeclaration, PortMapperService
from twisted_natpmp.testing import MemoryUDPNetwork
from twisted_natpmp.testing._gateway import GATEWAY, HOST

from ..pcp._gateway import EXTERNAL, ScriptedPCPServer

TCP8080 = MappingDeclaration(Transport.TCP, 8080, lifetime=3600)


def noAnnouncements(protocol: AnnouncementProtocol) -> IListeningPort | None:
    return None


class ServiceOverPCPTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.server = ScriptedPCPServer()
        self.network.host(GATEWAY).listenUDP(5351, self.server)
        self.service = PortMapperService(
            self.network.host(HOST),
            [TCP8080],
            gateway=GATEWAY,
            protocol="pcp",
            nonces=MemoryNonceStore(),
            announcements=noAnnouncements,
            monotonic=self.clock.seconds,
            healthInterval=10**6,
        )
        self.service.startService()
        self.network.flush()

    def advanceTo(self, when: float) -> None:
        while self.clock.seconds() < when:
            self.clock.advance(min(1.0, when - self.clock.seconds()))
            # The server's epoch runs with the clock (RFC 6887 s8.5).
            self.server.epoch = 1000 + int(self.clock.seconds())
            self.network.flush()

    def test_mapsAndSays(self) -> None:
        """
        The mapping is made in PCP: its state names the protocol and the
        external address the MAP response assigned.
        """
        [state] = self.service.states()
        self.assertTrue(state.mapped)
        self.assertEqual(state.protocolName, ProtocolName.PCP)
        self.assertEqual(state.externalAddress, EXTERNAL)

    def test_renewedInWindow(self) -> None:
        """
        The renewal is sent at a point in [1/2, 5/8] of the lifetime granted.
        """
        # RFC 6887 s11.2.1
        sent: list[float] = []
        answer = self.server.reply

        def recording(request: Request, packet: bytes, addr: Any) -> list[bytes]:
            if isinstance(request.data, MapData) and request.lifetime:
                sent.append(self.clock.seconds())
            return answer(request, packet, addr)

        self.server.reply = recording
        self.advanceTo(3600 * 5 / 8 + 1)
        # One renewal: no re-mapping after it (the epoch is consistent).
        [renewal] = [t for t in sent if t > 0]
        self.assertGreaterEqual(renewal, 3600 / 2)
        self.assertLessEqual(renewal, 3600 * 5 / 8 + 1)
        self.assertTrue(self.service.states()[0].mapped)

    def test_stopDeletes(self) -> None:
        """
        Stopping deletes the mapping in PCP, with its nonce.
        """
        # RFC 6887 s15
        self.assertEqual(len(self.server.held), 1)
        d = self.service.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertEqual(self.server.held, {})
