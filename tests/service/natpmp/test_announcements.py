"""
Announcements (RFC 6886 s3.2.1, RFC 6887 s14.1), end to end.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    ExternalAddressResponse,
    MapRequest,
    Protocol,
)
from twisted_natpmp.service import (
    MappingDeclaration,
    PortMapperService,
)

from ._support import (
    EXTERNAL,
    GATEWAY,
    HOST,
    NEIGHBOUR,
    OTHER_EXTERNAL,
    TCP8080,
    UDP5000,
    ServiceTestMixin,
    pcpAnnounce,
    texts,
)


class AnnouncementTests(ServiceTestMixin, SynchronousTestCase):
    def test_natpmpAnnouncement(self) -> None:
        """
        RFC 6886 s3.2.1: a gateway announces itself when it reboots; the
        service re-maps everything after the hold-off, without waiting for
        the health check.
        """
        # RFC 6886 s3.2.1
        self.start(UDP5000, holdOff=lambda: 3.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()  # a reboot: new epoch, empty table
        self.network.flush()
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(3)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 13.0])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)

    def test_announcementTellsAddress(self) -> None:
        """
        RFC 6886 s3.2.1: an announcement carries the external address; when
        the service could not learn it by asking, it takes it from there.
        """
        # RFC 6886 s3.2.1
        # External-address replies and the gateway's own announcements (12
        # bytes) are lost.
        self.network.drop = lambda d: d.source == (GATEWAY, 5351) and len(d.data) == 12
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(130)
        self.assertIsNone(service.externalAddress)
        self.network.drop = lambda datagram: False
        self.sendFrom(GATEWAY, ExternalAddressResponse(0, 130, EXTERNAL).encode())
        self.assertEqual(service.externalAddress, EXTERNAL)
        self.assertEqual(service.states()[0].externalAddress, EXTERNAL)

    def test_repeatsCoalesced(self) -> None:
        """
        RFC 6886 s3.2.1: the gateway repeats its announcement ten times over
        about two minutes; the copies that bring nothing new do not cause
        more re-mapping.
        """
        # RFC 6886 s3.2.1
        self.start(UDP5000, TCP8080, holdOff=lambda: 3.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(200)
        announcements = [
            d
            for d in self.network.log
            if d.destination == ("224.0.0.1", 5350) and d.time >= 10
        ]
        self.assertEqual(len(announcements), 10)
        self.assertEqual([t for t, _ in self.mapRequests(since=1)], [13.0, 13.0])

    def test_copiesEarlyInTheRunConfirmed(self) -> None:
        """
        A re-mapping in the first 2 s of the gateway's run proves nothing
        against a restart just after it: the next copy of the announcement
        confirms the mappings once more (5 s after the re-mapping before),
        and the later copies, whose epochs show the same run, cost nothing.
        """
        self.start(UDP5000, TCP8080, holdOff=lambda: 1.0)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.advance(200)
        self.assertEqual(
            [t for t, _ in self.mapRequests(since=1)], [11.0, 11.0, 16.0, 16.0]
        )

    def test_noAddressAnnouncedIsNoNews(self) -> None:
        """
        An announcement of 0.0.0.0 (a gateway without an external address,
        RFC 6886 s3.2) is no new external address: nothing is re-mapped for
        it, and the address known stays; its epoch is still judged (s3.6).
        """
        # RFC 6886 s3.2
        self.advance(10)
        service = self.start(UDP5000, healthInterval=10**6)
        self.advance(10)
        asked = len(self.mapRequests())
        none = IPv4Address("0.0.0.0")
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, ExternalAddressResponse(0, 20, none).encode())
            self.advance(10)
        self.assertEqual(len(self.mapRequests()), asked, texts(events))
        self.assertEqual(service.externalAddress, EXTERNAL)
        with capturedLogs() as events:
            self.sendFrom(GATEWAY, ExternalAddressResponse(0, 1, none).encode())
        self.assertTrue([t for t in texts(events) if "lost" in t], texts(events))

    def test_addressChangeAnnounced(self) -> None:
        """
        RFC 6886 s3.2.1: a new external address is announced; the service
        re-maps and reports the new address.
        """
        # RFC 6886 s3.2.1
        service = self.start(UDP5000)
        self.advance(10)
        self.gateway.setExternalAddress(OTHER_EXTERNAL)
        self.network.flush()
        self.assertEqual(service.externalAddress, OTHER_EXTERNAL)
        self.assertEqual(service.states()[0].externalAddress, OTHER_EXTERNAL)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])
        self.assertEqual(self.observer.states[-1].externalAddress, OTHER_EXTERNAL)

    def test_pcpAnnounce(self) -> None:
        """
        RFC 6887 s14.1: miniupnpd multicasts a PCP ANNOUNCE (not a NAT-PMP
        announcement) when it starts; it triggers the RFC 6886 s3.7 re-map.
        """
        # RFC 6887 s14.1, RFC 6886 s3.7
        self.start(UDP5000, holdOff=lambda: 2.0)
        self.advance(10)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.advance(2)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 12.0])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        # The re-mapping's first reply shows the reset epoch (RFC 6886
        # s3.6): the re-mapping under way covers it, no second one follows.
        self.advance(100)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 12.0])

    def test_stateLostWhileRemapping(self) -> None:
        """
        A loss of state seen while the re-mapping renews the mappings (the
        gateway lost its state again, RFC 6886 s3.6) is followed by another
        re-mapping once the one under way is done.
        """
        # RFC 6886 s3.6
        declarations = [MappingDeclaration(Protocol.UDP, p) for p in (5000, 5001)]
        self.start(*declarations, holdOff=lambda: 1.0)
        self.advance(10)
        self.network.delay = 0.1
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # arrives at 10.1
        # The re-mapping starts at 11.1: the address request is answered at
        # 11.3, port 5000 mapped at 11.4 and answered at 11.5; the gateway
        # loses its state at 11.45, so the reply for 5001 (mapped at 11.6)
        # shows the new epoch, and the next re-mapping starts at 12.7.
        self.clock.callLater(1.45, self.rebootGateway)
        self.advance(2.4, step=0.05)
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(2, step=0.05)
        requests = [(round(t, 2), r.internalPort) for t, r in self.mapRequests()]
        self.assertEqual(
            requests[2:],
            [(11.3, 5000), (11.5, 5001), (12.9, 5000), (13.1, 5001)],
        )
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)

    def test_pcpAnnounceEachRestart(self) -> None:
        """
        Every restart's PCP ANNOUNCE re-maps, while a repeat of one whose
        epoch shows the gateway's run that granted the mapping (late enough
        in it that a restart since would show) does not.
        """
        self.start(UDP5000, holdOff=lambda: 3.0)
        self.advance(10)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # re-mapped at 13, epoch 3
        self.advance(4)
        self.sendFrom(GATEWAY, pcpAnnounce(4))  # a repeat
        self.advance(16)
        self.rebootGateway()
        self.sendFrom(GATEWAY, pcpAnnounce(0))  # a second restart
        self.advance(3)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 13.0, 33.0])

    def test_restartsCloseTogether(self) -> None:
        """
        Issue 10, item 1: the gateway restarts three times, a second apart,
        each time announcing epoch 0 (miniupnpd's PCP ANNOUNCE).  By the
        RFC 6886 s3.6 rule the later announcements show no loss of state,
        but the mapping made after the first restart was lost at the
        second: every announcement leads to the mappings being confirmed,
        after the s3.7 hold-off and at most one re-mapping every 5 s.
        """
        # RFC 6886 s3.6
        self.start(UDP5000, holdOff=lambda: 0.5)
        self.advance(10)
        for _ in range(3):
            self.rebootGateway()
            self.sendFrom(GATEWAY, pcpAnnounce(0))
            self.advance(1)
        # Re-mapped at 10.5, after the first restart; the second (at 11) is
        # confirmed 5 s after the re-mapping before, covering the third.
        self.assertIsNone(self.onGateway(Protocol.UDP, 5000))
        self.advance(2.5)
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.5, 15.5])
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        # Nothing more without another announcement.
        self.advance(100)
        self.assertEqual(len(self.mapRequests()), 3)

    def test_othersIgnored(self) -> None:
        """
        RFC 6886 s3.2.1: announcements that do not come from the configured
        gateway are ignored, whatever they say; so is anything that is not
        an announcement.
        """
        # RFC 6886 s3.2.1
        service = self.start(UDP5000)
        self.advance(100)
        client = self.clients[0]
        epoch = client.epochTracker.lastEpoch
        with capturedLogs():
            self.sendFrom(
                NEIGHBOUR, ExternalAddressResponse(0, 0, OTHER_EXTERNAL).encode()
            )
            self.sendFrom(NEIGHBOUR, pcpAnnounce(0))
            self.sendFrom(GATEWAY, pcpAnnounce(0, opcode=0x81))
            self.sendFrom(GATEWAY, pcpAnnounce(0, result=3))
            self.sendFrom(GATEWAY, pcpAnnounce(0)[:20])
            self.sendFrom(GATEWAY, ExternalAddressResponse(3, 0, EXTERNAL).encode())
            self.sendFrom(GATEWAY, b"\x00")
            self.sendFrom(GATEWAY, MapRequest(Protocol.UDP, 1, 1, 1).encode())
        self.advance(10)
        self.assertEqual(len(self.mapRequests()), 1)
        self.assertEqual(client.epochTracker.lastEpoch, epoch)
        self.assertEqual(service.externalAddress, EXTERNAL)
        # Dropped and counted, not logged one by one (DropLog).
        assert service._gateways.announcer is not None
        self.assertEqual(service._gateways.announcer.drops.total, 8)

    def test_notListening(self) -> None:
        """
        Without the announcement socket (the port is taken, say), the
        service still works; the health check covers reboots.
        """
        service = self.start(UDP5000, announcements=lambda protocol: None)
        self.advance(10)
        self.gateway.stopService()
        self.gateway.startService()
        self.network.flush()
        self.assertEqual(len(self.mapRequests()), 1)
        self.advance(50)  # the health check at 60 s finds the new epoch
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 60.0])
        self.assertTrue(service.states()[0].mapped)

    def test_cannotListen(self) -> None:
        """
        A failure to bind 224.0.0.1:5350 is logged, not fatal.
        """
        from twisted.internet.error import CannotListenError

        def listenMulticast(*args: Any, **kwargs: Any) -> None:
            raise CannotListenError(  # type: ignore[no-untyped-call]
                "224.0.0.1", 5350, OSError("in use")
            )

        reactor = self.network.host(HOST)
        self.patch(reactor, "listenMulticast", listenMulticast)
        service = PortMapperService(
            reactor, [UDP5000], gateway=GATEWAY, clientFactory=self.clientFactory
        )
        with capturedLogs() as events:
            service.startService()
            self.network.flush()
        self.assertTrue(service.states()[0].mapped)
        self.assertTrue(any("not listening" in e["log_format"] for e in events))

    def test_wrappedReactor(self) -> None:
        """
        A reactor that only looks like one (a wrapper that declares no
        interfaces, as tests that open sockets in network namespaces use)
        still gets the announcement listener.
        """

        class Wrapper:
            def __init__(self, reactor: Any) -> None:
                self._reactor = reactor

            def __getattr__(self, name: str) -> Any:
                return getattr(self._reactor, name)

        reactor = Wrapper(self.network.host(HOST))
        self.start(UDP5000, reactor=reactor)
        self.advance(10)
        self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual([t for t, _ in self.mapRequests()], [0.0, 10.0])

    def test_noMulticast(self) -> None:
        """
        A reactor without multicast: the service works without
        announcements, and says so.
        """

        class Reactor:
            def __init__(self, reactor: Any) -> None:
                self.seconds = reactor.seconds
                self.callLater = reactor.callLater
                self.getDelayedCalls = reactor.getDelayedCalls
                self.listenUDP = reactor.listenUDP

        with capturedLogs() as events:
            service = self.start(UDP5000, reactor=Reactor(self.network.host(HOST)))
        self.assertTrue(service.states()[0].mapped)
        self.assertTrue(any("cannot listen" in e["log_format"] for e in events))
