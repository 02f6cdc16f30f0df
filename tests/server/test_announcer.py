"""
Tests for L{twisted_natpmp.server.announcer}: a gateway's announcements of
its external address (RFC 6886 s3.2.1).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    SERVER_PORT,
)
from twisted_natpmp.server import (
    ANNOUNCE_INTERVALS,
    Announcer,
    GatewayService,
    NATPMPGateway,
)

from ._helpers import (
    ANNOUNCE,
    EXTERNAL,
    GATEWAY,
    GatewayTestsMixin,
    epochOf,
)


class AnnouncementTests(GatewayTestsMixin, SynchronousTestCase):
    #: When the 10 copies go out, relative to the start.
    times = [sum(ANNOUNCE_INTERVALS[:i]) for i in range(10)]

    def test_schedule(self) -> None:
        """
        On start the gateway multicasts its external address to
        224.0.0.1:5350 10 times, the first two 250 ms apart and then
        doubling, with the epoch updated in each (RFC 6886 s3.2.1).
        """
        self.assertEqual(self.times[:4], [0, 0.25, 0.75, 1.75])
        start = self.clock.seconds()
        self.startGateway()
        self.assertEqual(len(self.announcements()), 1)
        for count, when in enumerate(self.times[1:], 1):
            self.clock.advance(start + when - 0.001 - self.clock.seconds())
            self.assertEqual(len(self.announcements()), count, when)
            self.clock.advance(0.001)
            self.assertEqual(len(self.announcements()), count + 1, when)
        self.clock.advance(10000)
        sent = self.announcements()
        self.assertEqual(len(sent), 10)
        self.assertEqual([epochOf(p) for p in sent], [int(t) for t in self.times])
        for packet in sent:
            self.assertEqual(packet[:4] + packet[8:], bytes.fromhex("00800000c000034d"))
        sources = {d.source for d in self.net.sentTo(ANNOUNCE)}
        self.assertEqual(sources, {(GATEWAY, SERVER_PORT)})

    def test_everyInternalAddress(self) -> None:
        """
        Announcements go out on every internal interface (RFC 6886
        s3.2.1).
        """
        self.startGateway(listen=[f"{GATEWAY}/24", "10.88.0.1/16"])
        self.net.flush()
        sources = [d.source for d in self.net.sentTo(ANNOUNCE)]
        self.assertEqual(sources, [(GATEWAY, SERVER_PORT), ("10.88.0.1", SERVER_PORT)])

    def test_addressChange(self) -> None:
        """
        When the external address changes the gateway announces the new one
        on a fresh schedule (RFC 6886 s3.2.1), replacing the old schedule;
        requests get the new address.
        """
        service = self.startGateway()
        self.clock.advance(1)
        self.net.flush()
        self.assertEqual(len(self.announcements()), 3)
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(1000)
        sent = self.announcements()
        self.assertEqual(len(sent), 3 + 10)
        self.assertEqual({p[8:] for p in sent[3:]}, {bytes([192, 0, 3, 99])})
        self.assertEqual((self.ask(b"\x00\x00") or b"")[8:], bytes([192, 0, 3, 99]))

    def test_addressBeforeStart(self) -> None:
        """
        An address set before starting is the one served and announced.
        """
        service = GatewayService(self.net.host(GATEWAY), [f"{GATEWAY}/24"], None)
        service.setExternalAddress("192.0.3.99")
        self.assertEqual(self.net.log, [])
        service.startService()
        self.addCleanup(service.stopService)
        self.net.flush()
        self.assertEqual(
            [p[8:] for p in self.announcements()], [bytes([192, 0, 3, 99])]
        )

    def test_announcementsOff(self) -> None:
        """
        With C{announceTo=None} nothing is multicast (for tests that must
        keep their traffic on loopback).
        """
        service = self.startGateway(announceTo=None)
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(1000)
        self.assertEqual(self.announcements(), [])
        self.assertEqual(self.net.log, [])

    def test_sendFailureLogged(self) -> None:
        """
        An announcement that cannot be sent (no multicast route) is logged,
        and the schedule goes on.
        """

        class Unroutable:
            def write(self, packet: bytes, addr: Any) -> None:
                raise OSError(101, "Network is unreachable")

        gateway = NATPMPGateway(self.clock, EXTERNAL, ["10.77.0.0/24"])
        announcer = Announcer(self.clock, gateway, [Unroutable()])  # type: ignore[list-item]
        announcer.start()
        self.clock.advance(1000)
        failures = [e for e in self.logged if "could not announce" in e["log_format"]]
        self.assertEqual(len(failures), 10)
