"""
Bounded in-memory fuzzing of NAT-PMP's client side: memory does not grow
with the number of bad packets the client and the announcement listener
are sent, and the log says them in aggregate (RFC 6886 s3.1, s3.2.1).
Deterministic, on a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.announce import AnnouncementProtocol
from twisted_natpmp.natpmp._wire import Protocol
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.testing import MemoryUDPNetwork

from ._fuzzing import (
    BAD_PACKETS,
    GATEWAY,
    HOST,
    MAX_GROWTH,
    MAX_LOUD_LINES,
    OTHER,
    WARM_UP,
    LogWatch,
    badPackets,
    measureGrowth,
    notAnnouncement,
    responseKind,
)


class BoundedTests(SynchronousTestCase):
    """
    Memory does not grow with the number of bad packets, and the log says
    them in aggregate: 20,000 bad packets at each protocol.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.logs = LogWatch(self)

    def checkBounded(
        self,
        deliver: Callable[[bytes, int], None],
        bad: Callable[[bytes], bool],
        memory: bool = True,
    ) -> None:
        """
        Deliver L{BAD_PACKETS} packets for which C{bad} is true; check that
        (with C{memory}) memory stays flat, that nothing raised, and that
        the log stayed quiet.
        """
        packets = badPackets(6, BAD_PACKETS, bad)
        if memory:
            growth = measureGrowth(deliver, packets, WARM_UP)
            self.assertLess(growth, MAX_GROWTH, f"{growth} bytes more")
        else:
            for i, packet in enumerate(packets):
                deliver(packet, i)
        self.assertEqual(self.logs.failures, [])
        self.assertLessEqual(
            self.logs.loud,
            MAX_LOUD_LINES,
            f"{self.logs.loud} loud lines, {self.logs.loudBytes} bytes,"
            f" e.g. {self.logs.examples}",
        )

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

        self.checkBounded(deliver, lambda p: responseKind(p) == "drop")
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

        self.checkBounded(deliver, notAnnouncement)
        self.assertEqual(received, [])
