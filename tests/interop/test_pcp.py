"""
Our PCP client (L{twisted_natpmp.pcp.client}) and the C{auto} mapper
(L{twisted_natpmp.negotiate}) in the trial process, their sockets on a LAN
host, against Debian's miniupnpd on the router (PCP is compiled in and on
with C{enable_natpmp=yes}) and against our own NAT-PMP-only gateway.
"""

from __future__ import annotations

import re
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp._types import ProtocolName
from twisted_natpmp.errors import CannotProvideExternalError, NotAuthorizedError
from twisted_natpmp.interfaces import IPortMapper
from twisted_natpmp.negotiate import NegotiatingMapper, ProtocolMemory, mapperFor
from twisted_natpmp.pcp._nonces import NonceKey, NonceStore
from twisted_natpmp.pcp.client import PCPClient, listenPCPClient
from twisted_natpmp.service import MappingDeclaration

from ._lab import LAN_HOSTS, ROUTER_LAN, ROUTER_WAN, Lab, buildLab, sleep, waitUntil
from .test_service import allMapped, startService

TCP, UDP = Transport.TCP, Transport.UDP
GATEWAY = IPv4Address(ROUTER_LAN)


def nonceFile(testCase: TestCase) -> Path:
    """
    A nonce file of the test's own (never the user's).
    """
    return Path(testCase.mktemp()) / "pcp-nonces.json"


def pcpClientOn(
    testCase: TestCase, lab: Lab, nonces: Path, lan: int = 0, **kwargs: Any
) -> PCPClient:
    """
    A PCP client on LAN host C{lan} with the nonce file C{nonces}, stopped
    at the test's end.
    """
    client = listenPCPClient(
        lab.reactorIn(lab.lans[lan]), ROUTER_LAN, nonces=NonceStore(nonces), **kwargs
    )
    testCase.addCleanup(client.stop)
    return client


def miniupnpdNonce(nonce: bytes) -> str:
    """
    The nonce as miniupnpd prints it in a rule's description: each 4-byte
    word byte-reversed (it prints the words as host-order integers).
    """
    return "".join(nonce[i : i + 4][::-1].hex() for i in range(0, 12, 4))


class PCPAgainstMiniupnpdTests(TestCase):
    """
    Every PCP request the client makes, answered by miniupnpd.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()
        self.nonces = nonceFile(self)
        self.client = pcpClientOn(self, self.lab, self.nonces)

    def nonceOf(self, transport: Transport, port: int) -> bytes | None:
        return NonceStore(self.nonces).get(NonceKey(GATEWAY, transport, port))

    async def test_probe(self) -> None:
        """
        An ANNOUNCE request (RFC 6887 s14.1) is answered with the router's
        epoch.
        """
        probe = await self.client.probe()
        self.assertIs(probe.protocolName, ProtocolName.PCP)
        self.assertFalse(probe.stateLost)

    async def test_map(self) -> None:
        """
        A PCP MAP (RFC 6887 s11) is granted on the internal port, with the
        router's external address, and appears as a forward to this host:
        the client address in the request is the socket's own (s8.2), or
        miniupnpd would answer ADDRESS_MISMATCH.
        """
        mapping = await self.client.addMapping(TCP, 7000, lifetime=600)
        self.assertEqual(
            (mapping.protocolName, mapping.externalPort, mapping.externalAddress),
            (ProtocolName.PCP, 7000, IPv4Address(ROUTER_WAN)),
        )
        self.assertEqual(mapping.lifetime, 600)
        self.assertEqual(self.lab.rules(TCP), {7000: (LAN_HOSTS[0], 7000)})
        self.assertEqual(self.client.sourceAddress(), IPv4Address(LAN_HOSTS[0]))

    async def test_renewKeepsNonceAndPort(self) -> None:
        """
        A renewal (RFC 6887 s11.2.1) sends the same nonce and keeps the
        port; a single forward remains.
        """
        first = await self.client.addMapping(UDP, 7001, 17001, lifetime=600)
        nonce = self.nonceOf(UDP, 7001)
        again = await self.client.addMapping(UDP, 7001, first.externalPort, 900)
        self.assertEqual(again.externalPort, 17001)
        self.assertEqual(again.lifetime, 900)
        self.assertEqual(self.nonceOf(UDP, 7001), nonce)
        self.assertEqual(self.lab.rules(UDP), {17001: (LAN_HOSTS[0], 7001)})

    async def test_delete(self) -> None:
        """
        Deleting with the mapping's nonce (RFC 6887 s15) removes the
        forward; deleting again (miniupnpd: NO_RESOURCES) counts as done.
        """
        await self.client.addMapping(UDP, 7400, lifetime=600)
        self.assertIn(7400, self.lab.rules(UDP))
        await self.client.deleteMapping(UDP, 7400)
        self.assertEqual(self.lab.rules(UDP), {})
        self.assertIsNone(self.nonceOf(UDP, 7400))
        await self.client.deleteMapping(UDP, 7400)

    async def test_anotherClientDeletes(self) -> None:
        """
        The nonce file outlives the client: a second client (as C{natpmp
        unmap} after C{natpmp map}, or a restarted service) deletes what the
        first mapped, without a take-over.
        """
        await self.client.addMapping(TCP, 7100, lifetime=600)
        await self.client.stop()
        second = pcpClientOn(self, self.lab, self.nonces, takeOver=False)
        await second.deleteMapping(TCP, 7100)
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_freshNonceRefused(self) -> None:
        """
        A deletion with a nonce other than the mapping's is refused
        (miniupnpd: NOT_AUTHORIZED); with a take-over (a MAP with the new
        nonce, which miniupnpd allows) the deletion then succeeds.
        """
        await self.client.addMapping(TCP, 7200, lifetime=600)
        strict = pcpClientOn(self, self.lab, nonceFile(self), takeOver=False)
        await self.assertFailure(strict.deleteMapping(TCP, 7200), NotAuthorizedError)
        self.assertIn(7200, self.lab.rules(TCP))
        lenient = pcpClientOn(self, self.lab, nonceFile(self))
        await lenient.deleteMapping(TCP, 7200)
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_takenPort(self) -> None:
        """
        A port held by the other LAN host: another port is granted, or
        with exactPort (PREFER_FAILURE, RFC 6887 s13.2)
        CANNOT_PROVIDE_EXTERNAL.
        """
        other = pcpClientOn(self, self.lab, nonceFile(self), lan=1)
        theirs = await other.addMapping(TCP, 7300, 17300, lifetime=600)
        self.assertEqual(theirs.externalPort, 17300)
        await self.assertFailure(
            self.client.addMapping(TCP, 7301, 17300, 600, exactPort=True),
            CannotProvideExternalError,
        )
        ours = await self.client.addMapping(TCP, 7301, 17300, lifetime=600)
        self.assertNotEqual(ours.externalPort, 17300)
        self.assertEqual(
            self.lab.rules(TCP),
            {17300: (LAN_HOSTS[1], 7300), ours.externalPort: (LAN_HOSTS[0], 7301)},
        )

    async def test_externalAddress(self) -> None:
        """
        PCP tells the external address in a MAP response: the short MAP of
        the client's own port is deleted again.
        """
        address = await self.client.externalAddress()
        self.assertEqual(address, IPv4Address(ROUTER_WAN))
        self.assertEqual(self.lab.rules(UDP), {})

    async def test_stateLossAfterRestart(self) -> None:
        """
        After the router restarts, the epoch of the next response is judged
        a loss of state (RFC 6887 s8.5); 3 s of running first make the
        elapsed times disagree by more than the 2 s slack.
        """
        losses: list[None] = []
        self.client.addStateLossObserver(lambda: losses.append(None))
        await self.client.probe()
        await sleep(3.0)
        await self.client.probe()
        self.assertEqual(losses, [])
        await self.lab.restartMiniupnpd()
        probe = await self.client.probe()
        self.assertTrue(probe.stateLost)
        self.assertEqual(losses, [None])

    async def test_window(self) -> None:
        """
        Many requests in flight at once (the window) are all answered.
        """
        from twisted.internet.defer import gatherResults

        ports = range(7500, 7540)
        await gatherResults(
            [self.client.addMapping(UDP, p, lifetime=600) for p in ports]
        )
        self.assertEqual(set(self.lab.rules(UDP)), set(ports))
        result = await self.client.deleteMappings([(UDP, p) for p in ports])
        self.assertEqual(set(result.values()), {None})
        self.assertEqual(self.lab.rules(UDP), {})


class LeaseFileTests(TestCase):
    """
    miniupnpd's own record of a PCP mapping: its lease file describes it as
    a C{PCP MAP} with the nonce (each 4-byte word byte-reversed).
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        self.leases = self.lab.directory / "miniupnpd.leases"
        self.lab.miniupnpdOptions.append(f"lease_file={self.leases}")
        await self.lab.startMiniupnpd()

    async def test_described(self) -> None:
        nonces = nonceFile(self)
        client = pcpClientOn(self, self.lab, nonces)
        await client.addMapping(TCP, 7600, lifetime=600)
        nonce = NonceStore(nonces).get(NonceKey(GATEWAY, TCP, 7600))
        assert nonce is not None
        await waitUntil(self.leases.exists, "the lease file", 5.0, 0.05)
        text = self.leases.read_text()
        self.assertIn(f"PCP MAP {miniupnpdNonce(nonce)}", text, text)
        self.assertTrue(re.search(r"TCP:7600:10\.77\.0\.2:7600:", text), text)


class NegotiationInteropTests(TestCase):
    """
    The C{auto} mapper against a PCP router and a NAT-PMP-only one.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)

    def auto(self) -> IPortMapper:
        mapper = mapperFor(
            self.lab.reactorIn(self.lab.lans[0]),
            ROUTER_LAN,
            "auto",
            memory=ProtocolMemory(),
            nonces=NonceStore(nonceFile(self)),
        )
        self.addCleanup(mapper.stop)
        return mapper

    async def test_miniupnpdSpeaksPCP(self) -> None:
        await self.lab.startMiniupnpd()
        mapper = self.auto()
        mapping = await mapper.addMapping(TCP, 7700, lifetime=600)
        self.assertIs(mapping.protocolName, ProtocolName.PCP)
        self.assertIs(mapper.protocolName, ProtocolName.PCP)
        await mapper.deleteMapping(TCP, 7700)
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_fallBackToOurGateway(self) -> None:
        """
        Our gateway told to speak NAT-PMP only (C{--no-pcp}): its 8-byte
        unsupported-version reply makes the mapper fall back at once, within
        one round trip (RFC 6887 s9), and map.
        """
        lab = self.lab
        twistd = lab.twistd
        self.patch(lab, "twistd", lambda *args: twistd(*args, "--no-pcp"))
        await lab.startOurGateway()
        mapper = self.auto()
        assert isinstance(mapper, NegotiatingMapper)
        started = time.monotonic()
        mapping = await mapper.addMapping(UDP, 7800, lifetime=600)
        elapsed = time.monotonic() - started
        self.assertIs(mapping.protocolName, ProtocolName.NATPMP)
        self.assertIs(mapper.protocolName, ProtocolName.NATPMP)
        # Well under the first PCP retransmission (3 s): no resend happened.
        self.assertLess(elapsed, 2.0)
        await mapper.deleteMapping(UDP, 7800)

    async def test_ourGatewaySpeaksPCP(self) -> None:
        """
        Our gateway as it runs by default answers PCP: the auto mapper maps
        in PCP (RFC 6887 s9: PCP first), with no fallback.
        """
        # RFC 6887 s9
        await self.lab.startOurGateway()
        mapper = self.auto()
        mapping = await mapper.addMapping(UDP, 7801, lifetime=600)
        self.assertIs(mapping.protocolName, ProtocolName.PCP)
        self.assertIs(mapper.protocolName, ProtocolName.PCP)
        await mapper.deleteMapping(UDP, 7801)


class ServiceOverPCPTests(TestCase):
    """
    The mapper service over PCP: it maps, restores its mappings after
    miniupnpd restarts (the router's PCP ANNOUNCE, RFC 6887 s14.1) and
    deletes them on stop.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()
        self.nonces = nonceFile(self)

    async def test_restoreAndStop(self) -> None:
        reactor = self.lab.reactorIn(self.lab.lans[0])

        def pcp(gateway: IPv4Address) -> IPortMapper:
            return mapperFor(reactor, gateway, "pcp", nonces=NonceStore(self.nonces))

        service = startService(
            self,
            self.lab,
            [
                MappingDeclaration(TCP, 9600, lifetime=600),
                MappingDeclaration(UDP, 9601, 19601, lifetime=600),
            ],
            clientFactory=pcp,
        )
        await waitUntil(lambda: allMapped(service), "the PCP mappings", 10.0, 0.05)
        self.assertEqual(
            self.lab.rulesFor(LAN_HOSTS[0]), {("TCP", 9600): 9600, ("UDP", 9601): 19601}
        )
        await sleep(3.0)
        await self.lab.restartMiniupnpd()
        # The lab checked its flush before miniupnpd started again; the rules
        # are not looked at here: the service may have re-mapped already (its
        # RFC 6886 s3.7 hold-off may be 0 s).
        await waitUntil(
            lambda: len(self.lab.rulesFor(LAN_HOSTS[0])) == 2,
            "the mappings restored after the restart",
            10.0,
            0.1,
        )
        await service.stopService()
        self.assertEqual(self.lab.rulesFor(LAN_HOSTS[0]), {})
