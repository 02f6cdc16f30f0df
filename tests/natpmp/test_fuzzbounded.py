"""
Bounded in-memory fuzzing of NAT-PMP's client side: memory does not grow
with the number of bad packets the client and the announcement listener
are sent, and the log says them in aggregate (RFC 6886 s3.1, s3.2.1).
Deterministic, on a L{Clock}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.announce import AnnouncementProtocol
from twisted_natpmp.natpmp._wire import Protocol
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.testing import MemoryUDPNetwork

from .._fuzzing import GATEWAY, HOST, OTHER, checkBounded, underFire
from ._fuzzing import notAnnouncement, responseKind


class BoundedTests(SynchronousTestCase):
    """
    Memory does not grow with the number of bad packets, and the log says
    them in aggregate: 20,000 bad packets at each protocol.
    """

    def setUp(self) -> None:
        self.clock, self.logs = underFire(self)

    def test_client(self) -> None:
        """
        The client, waiting for a reply, with bad packets from its gateway.
        """
        network = MemoryUDPNetwork(clock=self.clock, drop=lambda d: True)
        client = listenClient(network.host(HOST), GATEWAY, monotonic=self.clock.seconds)
        # A reply to this never comes: only the bad packets do.
        pending = client.addMapping(Protocol.UDP, 5000, lifetime=7200)
        pending.addErrback(lambda f: None)

        def deliver(packet: bytes, i: int) -> None:
            self.clock.advance(0.005)
            client.protocol.datagramReceived(packet, (GATEWAY, 5351))

        checkBounded(self, self.logs, deliver, lambda p: responseKind(p) == "drop")
        self.assertNoResult(pending)
        client.cancelPending()

    def test_announcements(self) -> None:
        """
        The announcement listener, with bad packets from another LAN host
        and from the gateway.
        """
        received: list[object] = []
        protocol = AnnouncementProtocol(GATEWAY, received.append, clock=self.clock)

        def deliver(packet: bytes, i: int) -> None:
            self.clock.advance(0.005)
            host = GATEWAY if i % 2 else OTHER
            protocol.datagramReceived(packet, (host, 5351))

        checkBounded(self, self.logs, deliver, notAnnouncement)
        self.assertEqual(received, [])
