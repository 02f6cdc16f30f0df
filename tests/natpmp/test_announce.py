"""
Tests for L{twisted_natpmp.announce}: parsing announcements (miniupnpd's
golden packets among them) and the listener on the in-memory network.
"""

from __future__ import annotations

import errno
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import fail
from twisted.internet.error import MulticastJoinError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.announce import (
    Announcement,
    AnnouncementKind,
    AnnouncementProtocol,
    listenAnnouncements,
    parseAnnouncement,
)
from twisted_natpmp.natpmp._wire import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapResponse,
    Protocol,
)
from twisted_natpmp.testing._udp import MemoryUDPNetwork

from ..vectors import loadAnnouncements

GATEWAY = "10.0.0.1"
HOST = "10.0.0.2"
STRANGER = "10.0.0.3"
SOURCE = (GATEWAY, 5351)


def pcp(opcode: int = 0x80, result: int = 0, epoch: int = 7, size: int = 24) -> bytes:
    packet = bytes((2, opcode, 0, result)) + bytes(4) + epoch.to_bytes(4, "big")
    return (packet + bytes(12) + bytes(size))[:size]


class ParseTests(SynchronousTestCase):
    def test_miniupnpdAnnouncements(self) -> None:
        """
        miniupnpd 2.3.1's PCP ANNOUNCE (sent at start) and NAT-PMP
        announcement (sent on an address change) parse.
        """
        atStart, natpmp, pcpOnChange = loadAnnouncements()
        self.assertEqual(
            parseAnnouncement(atStart, SOURCE),
            Announcement(AnnouncementKind.PCP, 0, None, SOURCE),
        )
        self.assertEqual(
            parseAnnouncement(natpmp, SOURCE),
            Announcement(AnnouncementKind.NATPMP, 5, IPv4Address("192.0.3.77"), SOURCE),
        )
        self.assertEqual(
            parseAnnouncement(pcpOnChange, SOURCE).kind, AnnouncementKind.PCP
        )

    def test_natpmp(self) -> None:
        """
        RFC 6886 s3.2.1: the announcement is the 12-byte external address
        response, opcode 128, result 0.
        """
        packet = ExternalAddressResponse(0, 1234, IPv4Address("192.0.3.1")).encode()
        self.assertEqual(len(packet), 12)
        announcement = parseAnnouncement(packet, SOURCE)
        self.assertEqual(announcement.epoch, 1234)
        self.assertEqual(announcement.externalAddress, IPv4Address("192.0.3.1"))

    def test_unspecifiedAddressIsNone(self) -> None:
        """
        An announcement of 0.0.0.0 counts for its epoch but names no external
        address: a gateway without one answers result 3 (RFC 6886 s3.2), so
        0.0.0.0 is never taken for the gateway's address.
        """
        packet = ExternalAddressResponse(0, 77, IPv4Address(0)).encode()
        announcement = parseAnnouncement(packet, SOURCE)
        self.assertEqual(announcement.epoch, 77)
        self.assertIsNone(announcement.externalAddress)

    def test_trailingBytes(self) -> None:
        """
        Trailing bytes are ignored (RFC 6886 is silent on them; PCP pads to
        multiples of 4).
        """
        packet = ExternalAddressResponse(0, 9, IPv4Address("192.0.3.1")).encode()
        self.assertEqual(parseAnnouncement(packet + b"\0" * 4, SOURCE).epoch, 9)
        self.assertEqual(parseAnnouncement(pcp(size=28), SOURCE).epoch, 7)

    def test_pcpAnnounce(self) -> None:
        """
        RFC 6887 s14.1: a 24-byte response, version 2, opcode 0x80 (the R
        bit and ANNOUNCE), result 0; the epoch time is at bytes 8-11.
        """
        announcement = parseAnnouncement(pcp(epoch=0x01020304), SOURCE)
        self.assertEqual(
            (announcement.kind, announcement.epoch, announcement.externalAddress),
            (AnnouncementKind.PCP, 0x01020304, None),
        )

    def test_rejected(self) -> None:
        """
        Anything but a successful announcement is rejected with a reason.
        """
        address = IPv4Address("192.0.3.1")
        for packet in [
            b"",
            b"\x00",
            ExternalAddressRequest().encode(),
            ExternalAddressResponse(3, 1, address).encode(),
            ExternalAddressResponse(0, 1, address).encode()[:11],
            MapResponse(Protocol.UDP, 0, 1, 5000, 5000, 60).encode(),
            pcp(size=23),
            pcp(opcode=0x81),
            pcp(opcode=0x00),
            pcp(result=1),
            b"\x01\x80" + bytes(22),
        ]:
            with self.assertRaises(MalformedPacket, msg=packet.hex()) as caught:
                parseAnnouncement(packet, SOURCE)
            self.assertTrue(caught.exception.reason)


class ListenerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.received: list[Announcement] = []
        self.protocol = AnnouncementProtocol(
            GATEWAY, self.received.append, clock=self.network.clock
        )
        self.port = listenAnnouncements(self.network.host(HOST), self.protocol)

    def send(self, source: str, packet: bytes, to: str = "224.0.0.1") -> None:
        sender = DatagramProtocol()
        self.network.host(source).listenUDP(5351, sender)
        assert sender.transport is not None
        sender.transport.write(packet, (to, 5350))
        sender.transport.stopListening()
        self.network.flush()

    def test_bindsGroup(self) -> None:
        """
        RFC 6886 s3.2.1: the listener binds 224.0.0.1:5350 (not
        0.0.0.0:5350), with address reuse so that several clients on one
        host hear announcements, and joins the group.
        """
        calls: list[tuple[Any, ...]] = []

        class Reactor:
            def listenMulticast(self, *args: Any, **kwargs: Any) -> str:
                calls.append((args, kwargs))
                return "port"

        protocol = AnnouncementProtocol(GATEWAY, self.received.append)
        self.assertEqual(listenAnnouncements(Reactor(), protocol), "port")  # type: ignore[arg-type]
        self.assertEqual(
            calls,
            [((5350, protocol), {"interface": "224.0.0.1", "listenMultiple": True})],
        )
        self.assertEqual(self.port.groups, {"224.0.0.1"})  # type: ignore[attr-defined]

    def test_twoListeners(self) -> None:
        """
        Two listeners on one host both hear an announcement.
        """
        other: list[Announcement] = []
        listenAnnouncements(
            self.network.host(HOST), AnnouncementProtocol(GATEWAY, other.append)
        )
        self.send(GATEWAY, pcp())
        self.assertEqual((len(self.received), len(other)), (1, 1))

    def test_fromGateway(self) -> None:
        self.send(GATEWAY, loadAnnouncements()[1])
        self.assertEqual(
            self.received,
            [
                Announcement(
                    AnnouncementKind.NATPMP,
                    5,
                    IPv4Address("192.0.3.77"),
                    (GATEWAY, 5351),
                )
            ],
        )

    def test_gatewayFloodNotLogged(self) -> None:
        """
        Announcements from the gateway's address can be forged by the
        thousand: each reaches the callback and is counted, none costs a log
        line of its own (the service logs what it acts on).
        """
        with capturedLogs() as events:
            for _ in range(1000):
                self.send(GATEWAY, loadAnnouncements()[1])
        self.assertEqual(len(self.received), 1000)
        self.assertEqual(self.protocol.heard, 1000)
        ours = [e for e in events if e["log_namespace"] == "twisted_natpmp.announce"]
        self.assertEqual(ours, [])

    def test_strangerIgnored(self) -> None:
        """
        RFC 6886 s3.2.1: announcements not from the configured gateway are
        discarded (and logged).
        """
        with capturedLogs() as events:
            self.send(STRANGER, pcp())
            self.send(STRANGER, loadAnnouncements()[1])
        self.assertEqual(self.received, [])
        self.assertEqual(self.protocol.drops.reasons, {"not the gateway": 2})
        self.assertEqual(
            [e["source"] for e in events if e.get("reason") == "not the gateway"],
            [f"{STRANGER}:5351"] * 3,  # the first at once, then two at debug
        )

    def test_gatewayChanges(self) -> None:
        """
        The owner may point the listener at another gateway; L{None} makes
        it ignore everything.
        """
        self.protocol.gateway = IPv4Address(STRANGER)
        self.send(GATEWAY, pcp())
        self.send(STRANGER, pcp())
        self.assertEqual([a.source[0] for a in self.received], [STRANGER])
        self.protocol.gateway = None
        self.send(STRANGER, pcp())
        self.assertEqual(len(self.received), 1)

    def test_malformedDropped(self) -> None:
        """
        A malformed packet from the gateway is dropped and logged, and the
        listener keeps working.
        """
        with capturedLogs() as events:
            self.send(GATEWAY, b"\x00")
            self.send(GATEWAY, pcp(size=20))
            self.send(GATEWAY, ExternalAddressRequest().encode())
        self.assertEqual(self.received, [])
        self.assertEqual(self.protocol.drops.reasons, {"no announcement": 3})
        details = [e["detail"] for e in events if "detail" in e]
        self.assertEqual(len(details), 3)
        self.assertIn(pcp(size=20).hex(), details[1])
        self.send(GATEWAY, pcp())
        self.assertEqual(len(self.received), 1)

    def test_floodLogsBounded(self) -> None:
        """
        Anyone on the LAN can send to the group: 50,000 stray or malformed
        packets are counted and logged in aggregate, a bounded number of
        short lines, not a hex dump each.
        """
        received = self.protocol.datagramReceived
        strays = [(f"10.9.{n // 250}.{n % 250 + 1}", 5351) for n in range(1000)]
        with capturedLogs() as events:
            for _ in range(5):
                for n in range(10000):
                    if n % 2:
                        received(b"\x02" + bytes(40), (GATEWAY, 5351))
                    else:
                        received(pcp(), strays[n % 1000])
                self.network.clock.advance(60)
            self.port.stopListening()
        self.assertEqual(self.protocol.drops.total, 50000)
        self.assertLess(len(events), 300)
        self.assertLess(sum(len(formatEvent(e)) for e in events), 40000)

    def test_callbackFailureLogged(self) -> None:
        def broken(announcement: Announcement) -> None:
            raise RuntimeError("broken")

        self.protocol._received = broken
        self.send(GATEWAY, pcp())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_joinFailureLogged(self) -> None:
        """
        A failure to join the group is a warning (Linux hosts are members of
        224.0.0.1 anyway), not an error.
        """
        protocol = AnnouncementProtocol(GATEWAY, self.received.append)

        class Transport:
            def joinGroup(self, group: str, interface: str = "") -> Any:
                return fail(OSError("no multicast here"))

        protocol.transport = Transport()  # type: ignore[assignment]
        with capturedLogs() as events:
            protocol.startProtocol()
        self.assertEqual(
            [
                (e["error"], e["log_level"])
                for e in events
                if "could not join" in e["log_format"]
            ],
            [("no multicast here", LogLevel.warn)],
        )

    def test_joinNoDeviceSaidAtInfo(self) -> None:
        """
        ENODEV (no route picks an interface for the group, as on a host
        without a default route) is said at info: the socket bound to
        224.0.0.1 hears the group anyway.
        """
        protocol = AnnouncementProtocol(GATEWAY, self.received.append)

        class Transport:
            def joinGroup(self, group: str, interface: str = "") -> Any:
                return fail(
                    MulticastJoinError(group, interface, errno.ENODEV, "No such device")
                )

        protocol.transport = Transport()  # type: ignore[assignment]
        with capturedLogs() as events:
            protocol.startProtocol()
        self.assertEqual(
            [e["log_level"] for e in events if "could not join" in e["log_format"]],
            [LogLevel.info],
        )
