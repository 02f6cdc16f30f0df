"""
Second NATs and public addresses, end to end: the doubleNAT flag, and the
RFC 6886 s3 refusal to map from a public address.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.interfaces import IPortMapper
from twisted_natpmp.natpmp._wire import Protocol
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.service import (
    PublicAddressError,
    isPrivateAddress,
)

from ._support import (
    EXTERNAL,
    GATEWAY,
    HOST,
    UDP5000,
    ServiceTestMixin,
    pcpAnnounce,
    texts,
)


class DoubleNATTests(ServiceTestMixin, SynchronousTestCase):
    def test_private(self) -> None:
        """
        RFC 1918 and RFC 6598 (100.64/10) addresses mean a second NAT.
        """
        for text in (
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
        ):
            self.assertTrue(isPrivateAddress(IPv4Address(text)), text)
        for text in ("192.0.3.1", "172.32.0.1", "100.128.0.1", "8.8.8.8", "11.0.0.1"):
            self.assertFalse(isPrivateAddress(IPv4Address(text)), text)

    def test_doubleNAT(self) -> None:
        """
        A private external address is reported in the state and the log.
        """
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, IPv4Address("100.64.7.7"))
        with capturedLogs() as events:
            service = self.start(UDP5000)
        state = service.states()[0]
        self.assertTrue(state.doubleNAT)
        self.assertTrue(service.doubleNAT)
        self.assertIn("second NAT", state.describe())
        self.assertTrue(
            any(
                "second NAT" in e["log_format"]
                for e in events
                if e["log_level"].name == "warn"
            )
        )

    def test_publicAgain(self) -> None:
        self.gateway.stopService()
        self.gateway = self.startGateway(GATEWAY, IPv4Address("192.168.5.5"))
        service = self.start(UDP5000)
        self.assertTrue(service.states()[0].doubleNAT)
        self.gateway.setExternalAddress(EXTERNAL)
        self.network.flush()
        self.assertFalse(service.states()[0].doubleNAT)
        self.assertFalse(self.observer.states[-1].doubleNAT)


class PublicAddressTests(ServiceTestMixin, SynchronousTestCase):
    """
    Issue 10, item 13: RFC 6886 s3, a client SHOULD use NAT-PMP only when
    its primary IPv4 address is private.
    """

    PUBLIC = "198.51.100.7"

    def publicClient(self, gateway: IPv4Address) -> IPortMapper:
        client = listenClient(self.network.host(self.PUBLIC), gateway)
        self.clients.append(client)
        return client

    def test_refusedByDefault(self) -> None:
        """
        From a public address the service maps nothing, says why once, and
        each state carries the reason.
        """
        with capturedLogs() as events:
            service = self.start(UDP5000, clientFactory=self.publicClient)
            self.advance(120)
        self.assertEqual(self.mapRequests(), [])
        self.assertEqual(self.addressRequests(), [])
        error = service.states()[0].error
        self.assertIsInstance(error, PublicAddressError)
        self.assertIn("198.51.100.7", str(error))
        (warning,) = texts(events, "warn")
        self.assertIn("from 198.51.100.7, which is not a private address", warning)
        self.assertIn("mapping nothing", warning)

    def test_refusedStillHearsGateway(self) -> None:
        """
        Refused for a public address, the service still counts the
        gateway's announcements as the gateway's (RFC 6886 s3.2.1), never
        drops them as a stranger's.
        """
        # RFC 6886 s3.2.1
        service = self.start(UDP5000, clientFactory=self.publicClient)
        self.advance(1)
        assert service._gateways.announcer is not None
        self.assertEqual(service._gateways.announcer.gateway, IPv4Address(GATEWAY))
        with capturedLogs():
            self.sendFrom(GATEWAY, pcpAnnounce(0))
        self.assertEqual(service._gateways.announcer.drops.total, 0)
        self.assertEqual(service._gateways.announcer.heard, 1)
        self.assertEqual(self.mapRequests(), [])

    def test_allowed(self) -> None:
        """
        Told to go ahead, the service maps from a public address, with the
        warning.
        """
        with capturedLogs() as events:
            self.start(
                UDP5000, clientFactory=self.publicClient, allowPublicAddress=True
            )
            self.advance(2)
        self.assertEqual(self.mapRequests()[0][0], 1.75)
        self.assertTrue([t for t in texts(events, "warn") if "mapping anyway" in t])

    def test_privateLater(self) -> None:
        """
        The address is checked again with the gateway, every minute: a host
        that reaches the same gateway from a private address later maps
        then; the refusal was said once, not each minute.
        """
        here = [self.PUBLIC]

        def client(gateway: IPv4Address) -> IPortMapper:
            mapper = listenClient(
                self.network.host(here[0]), gateway, monotonic=self.clock.seconds
            )
            self.clients.append(mapper)
            return mapper

        with capturedLogs() as events:
            service = self.start(UDP5000, clientFactory=client)
            self.advance(150, step=1)
            self.assertEqual(self.mapRequests(), [])
            here[0] = HOST
            self.advance(30, step=1)
        self.assertTrue(service.states()[0].mapped)
        self.assertEqual(self.onGateway(Protocol.UDP, 5000), 5000)
        self.assertEqual(len(texts(events, "warn")), 1, texts(events, "warn"))
        self.assertIn(
            "now reaching gateway 10.0.0.1 from 10.0.0.2, a private address: mapping",
            texts(events, "info"),
        )
        stopped = service.stopService()
        self.network.flush()
        self.successResultOf(stopped)

    def test_privateSaysNothing(self) -> None:
        with capturedLogs() as events:
            self.start(UDP5000)
        self.assertFalse([t for t in texts(events) if "private address" in t])
