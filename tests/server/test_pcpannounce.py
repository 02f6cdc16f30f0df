"""
Tests for PCP's unsolicited ANNOUNCE (RFC 6887 s14.1) beside NAT-PMP's
announcements, and the epoch restarting with the external address (RFC
6887 s8.5), through L{twisted_natpmp.server.GatewayService}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import SERVER_PORT
from twisted_natpmp.pcp._wire import decodeResponse
from twisted_natpmp.server import ANNOUNCE_INTERVALS

from ._helpers import ANNOUNCE, CLIENT, GATEWAY, GatewayTestsMixin, epochOf
from ._pcp import announcePacket, mapPacket


class PCPAnnounceTests(GatewayTestsMixin, SynchronousTestCase):
    times = [sum(ANNOUNCE_INTERVALS[:i]) for i in range(10)]

    def pcpAnnouncements(self) -> list[bytes]:
        return [p for p in self.announcements() if p[:1] == b"\x02"]

    def natpmpAnnouncements(self) -> list[bytes]:
        return [p for p in self.announcements() if p[:1] == b"\x00"]

    def test_onStart(self) -> None:
        """
        On start the gateway multicasts PCP's unsolicited ANNOUNCE to
        224.0.0.1:5350 from port 5351, on NAT-PMP's schedule and beside its
        announcements: 24 bytes, opcode 0x80, result 0, lifetime 0, the
        epoch of each moment (RFC 6887 s14.1).
        """
        # RFC 6887 s14.1
        self.startGateway(pcp=True)
        self.clock.pump(list(ANNOUNCE_INTERVALS) + [1000])
        pcp = self.pcpAnnouncements()
        self.assertEqual(len(pcp), 10)
        self.assertEqual(len(self.natpmpAnnouncements()), 10)
        for packet, when in zip(pcp, self.times, strict=True):
            self.assertEqual(len(packet), 24)
            response = decodeResponse(packet)
            self.assertEqual(
                (response.opcode, response.resultCode, response.lifetime), (0, 0, 0)
            )
            self.assertEqual(response.epoch, int(when))
        sources = {d.source for d in self.net.sentTo(ANNOUNCE)}
        self.assertEqual(sources, {(GATEWAY, SERVER_PORT)})

    def test_notWithoutPCP(self) -> None:
        """
        With PCP off only NAT-PMP announces (RFC 6886 s3.2.1).
        """
        # RFC 6886 s3.2.1
        self.startGateway()
        self.clock.advance(1000)
        self.assertEqual(self.pcpAnnouncements(), [])

    def test_addressChange(self) -> None:
        """
        A new external address restarts the epoch (RFC 6887 s8.5) and
        starts a new round of ANNOUNCE beside NAT-PMP's (RFC 6887 s14.1);
        the mappings stay in the table.
        """
        # RFC 6887 s8.5
        service = self.startGateway(pcp=True)
        self.assertIsNotNone(self.ask(mapPacket(5000, 3600, client=CLIENT)))
        self.clock.advance(500)
        before = len(self.pcpAnnouncements())
        service.setExternalAddress("192.0.3.99")
        self.net.flush()
        pcp = self.pcpAnnouncements()
        self.assertEqual(len(pcp), before + 1)
        self.assertEqual(epochOf(pcp[-1]), 0)
        self.assertEqual(epochOf(self.natpmpAnnouncements()[-1]), 0)
        self.clock.advance(3)
        reply = self.ask(announcePacket())
        assert reply is not None
        self.assertEqual(decodeResponse(reply).epoch, 3)
        self.assertEqual(len(self.table()), 1)

    def test_sameAddressKeepsEpoch(self) -> None:
        """
        Setting the address it already has does not restart the epoch (RFC
        6887 s8.5).
        """
        # RFC 6887 s8.5
        service = self.startGateway(pcp=True)
        self.clock.advance(50)
        service.setExternalAddress(service.externalAddress)
        reply = self.ask(announcePacket())
        assert reply is not None
        self.assertEqual(decodeResponse(reply).epoch, 50)

    def test_stopEndsSchedule(self) -> None:
        """
        Stopping the service stops the ANNOUNCE schedule.
        """
        service = self.startGateway(pcp=True)
        service.stopService()
        sent = len(self.pcpAnnouncements())
        self.clock.advance(1000)
        self.assertEqual(len(self.pcpAnnouncements()), sent)

    def test_natpmpAloneKeepsEpoch(self) -> None:
        """
        Without PCP a new external address keeps the epoch: NAT-PMP's
        clients learn the address from the announcements and keep their
        mappings (RFC 6886 s3.2.1).
        """
        # RFC 6886 s3.2.1
        service = self.startGateway()
        self.clock.advance(50)
        service.setExternalAddress("192.0.3.99")
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 50)
