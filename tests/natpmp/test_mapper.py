"""
Tests for L{twisted_natpmp.natpmp.client.NATPMPClient} as an
L{IPortMapper}: the calls the protocol-neutral service makes (probe,
announcements, the source address, stop), on a L{Clock} and the in-memory
UDP network.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp import errors
from twisted_natpmp._types import (
    Announcement,
    AnnouncementKind,
    ProtocolName,
    Transport,
)
from twisted_natpmp.interfaces import IExternalAddressQuery, IPortMapper, Probe
from twisted_natpmp.natpmp._wire import ExternalAddressResponse
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST

_T = TypeVar("_T")


def natpmp(epoch: int) -> Announcement:
    return Announcement(AnnouncementKind.NATPMP, epoch, EXTERNAL, (GATEWAY, 5351))


def pcp(epoch: int) -> Announcement:
    return Announcement(AnnouncementKind.PCP, epoch, None, (GATEWAY, 5351))


class MapperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )
        self.losses: list[None] = []
        self.client.addStateLossObserver(lambda: self.losses.append(None))

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IPortMapper, self.client))
        self.assertTrue(verifyObject(IExternalAddressQuery, self.client))
        self.assertIs(self.client.protocolName, ProtocolName.NATPMP)

    def test_probe(self) -> None:
        # RFC 6886 s3.2: the probe is the external-address request; its
        # answer's epoch and address come back, and the address is learnt.
        d = self.client.probe()
        self.network.flush()
        self.assertEqual(
            self.successResultOf(d), Probe(ProtocolName.NATPMP, 100, EXTERNAL, False)
        )
        self.assertEqual(self.network.log[0].data, b"\x00\x00")
        self.assertEqual(self.client.lastExternalAddress, EXTERNAL)

    def test_probeSeesStateLoss(self) -> None:
        # RFC 6886 s3.6: a probe's epoch is judged like any reply's; a
        # gateway that restarted says so in the probe, and the observers
        # hear of it too.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.probe()))
        self.clock.advance(10)
        self.gateway.epoch = 3
        probe = self.successResultOf(self.flushed(self.client.probe()))
        self.assertEqual((probe.epoch, probe.stateLost), (3, True))
        self.assertEqual(self.losses, [None])
        self.clock.advance(10)
        self.gateway.epoch = 12
        probe = self.successResultOf(self.flushed(self.client.probe()))
        self.assertFalse(probe.stateLost)

    def test_probeNotFooledByAnotherReply(self) -> None:
        # The loss belongs to the reply that showed it: a mapping reply
        # showing a loss does not make a later probe say it lost state.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.probe()))
        self.gateway.epoch = 3
        self.successResultOf(self.flushed(self.client.addMapping(Transport.TCP, 80)))
        self.assertEqual(self.losses, [None])
        probe = self.successResultOf(self.flushed(self.client.probe()))
        self.assertFalse(probe.stateLost)

    def test_probeFailures(self) -> None:
        # A refusal by result code is an error by meaning (RFC 6886 s3.5).
        self.gateway.reply = lambda r: [
            ExternalAddressResponse(3, 100, IPv4Address(0)).encode()
        ]
        failure = self.failureResultOf(
            self.flushed(self.client.probe()), errors.NetworkFailureError
        )
        assert isinstance(failure.value, errors.GatewayError)
        self.assertEqual(
            (failure.value.resultCode, failure.value.protocol), (3, "natpmp")
        )
        self.gateway.reply = lambda r: []
        d = self.client.probe(timeouts=(1,))
        self.clock.advance(1)
        self.failureResultOf(d, errors.NoResponseError)

    def test_announcedNATPMP(self) -> None:
        # RFC 6886 s3.2.1, s3.6: a NAT-PMP announcement is judged with the
        # epochs of the replies.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.probe()))
        self.clock.advance(10)
        self.assertFalse(self.client.announced(natpmp(5009)))
        self.assertTrue(self.client.announced(natpmp(1)))
        self.assertEqual(self.losses, [None])

    def test_announcedPCP(self) -> None:
        # RFC 6887 s8.5, s14.1: a PCP ANNOUNCE is judged against earlier
        # PCP announcements only: its epoch is not comparable with
        # NAT-PMP's.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.probe()))
        self.assertFalse(self.client.announced(pcp(0)))
        self.clock.advance(10)
        self.assertFalse(self.client.announced(pcp(10)))
        self.assertEqual(self.losses, [])
        self.assertTrue(self.client.announced(pcp(0)))
        self.assertEqual(self.losses, [None])
        # The NAT-PMP epochs were not disturbed.
        self.assertFalse(self.client.announced(natpmp(5010)))

    def test_announcedPCPTwoSided(self) -> None:
        # RFC 6887 s8.5: unlike NAT-PMP's rule, an epoch that ran ahead of
        # the client's clock by more than the tolerance is a loss too.
        self.assertFalse(self.client.announced(pcp(100)))
        self.clock.advance(10)
        self.assertTrue(self.client.announced(pcp(1000)))
        self.assertEqual(self.losses, [None])

    def test_announcedLossLogged(self) -> None:
        with capturedLogs() as events:
            self.client.announced(pcp(100))
            self.client.announced(pcp(0))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["epoch"], 0)

    def test_noteEpochIsNATPMPAnnounced(self) -> None:
        self.assertFalse(self.client.noteEpoch(5000))
        self.assertTrue(self.client.announced(natpmp(0)))

    def test_observersRemoved(self) -> None:
        self.client.removeStateLossObserver(self.client.epochs.observers[0])
        self.client.announced(pcp(100))
        self.assertTrue(self.client.announced(pcp(0)))
        self.assertEqual(self.losses, [])

    def test_sourceAddress(self) -> None:
        # The socket's own address, as the kernel chose it.
        self.assertEqual(self.client.sourceAddress(), IPv4Address(HOST))
        self.assertIsNone(NATPMPClient(self.clock, GATEWAY).sourceAddress())

    def test_renewAfter(self) -> None:
        # RFC 6886 s3.3: renew at half the lifetime granted.
        mapping = self.successResultOf(
            self.flushed(self.client.addMapping(Transport.UDP, 53, lifetime=60))
        )
        self.assertEqual(mapping.renewAfter, 30.0)
        self.assertIs(mapping.protocolName, ProtocolName.NATPMP)

    def test_stop(self) -> None:
        # stop cancels what is pending, releases the socket, and fires.
        self.gateway.reply = lambda r: []
        d = self.client.probe()
        port = self.client.exchange.port
        self.assertIsNone(self.successResultOf(self.client.stop()))
        self.failureResultOf(d, CancelledError)
        self.assertNotIn(port, self.network.ports.values())
        self.assertIsNone(self.client.sourceAddress())
        self.failureResultOf(self.client.probe(), errors.PortMappingError)
        self.network.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def flushed(self, d: Deferred[_T]) -> Deferred[_T]:
        self.network.flush()
        return d
