"""
Our client (L{twisted_natpmp.client}) in the trial process, its socket on a
LAN host, against Debian's miniupnpd on the router.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.trial.unittest import TestCase

from tools.impair.relay import Impairment
from twisted_natpmp import Transport
from twisted_natpmp.errors import NoResponseError, NotSupportedError
from twisted_natpmp.natpmp.client import NATPMPClient, listenClient

from ._lab import (
    LAN_HOSTS,
    NOBODY,
    ROUTER_LAN,
    ROUTER_WAN,
    Lab,
    buildLab,
    sleep,
)

TCP, UDP = Transport.TCP, Transport.UDP


def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def clientOn(
    testCase: TestCase, lab: Lab, lan: int = 0, gateway: str = ROUTER_LAN, **kwargs: Any
) -> NATPMPClient:
    """
    A client whose socket is on LAN host C{lan} (as is any socket it might
    open later), stopped at the test's end.
    """
    client = listenClient(lab.reactorIn(lab.lans[lan]), gateway, **kwargs)
    testCase.addCleanup(client.stop)
    return client


class ClientAgainstMiniupnpdTests(TestCase):
    """
    Every request our client makes, answered by a real router.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()
        self.client = clientOn(self, self.lab)

    async def test_externalAddress(self) -> None:
        """
        The client learns the router's WAN address (RFC 6886 s3.2) and
        remembers it.
        """
        address = await self.client.externalAddress()
        self.assertEqual(address, IPv4Address(ROUTER_WAN))
        self.assertEqual(self.client.lastExternalAddress, IPv4Address(ROUTER_WAN))

    async def test_mapTCP(self) -> None:
        """
        A TCP mapping is granted on the suggested port (by default the
        internal one) and appears as a TCP forward to this host in the
        router's firewall, with no UDP companion (RFC 6886 s3.3: a gateway
        MUST NOT create the other protocol's mapping).
        """
        mapping = await self.client.addMapping(TCP, 7000, lifetime=600)
        self.assertEqual(
            (mapping.transport, mapping.internalPort, mapping.externalPort),
            (TCP, 7000, 7000),
        )
        self.assertEqual(mapping.lifetime, 600)
        self.assertEqual(self.lab.rules(TCP), {7000: (LAN_HOSTS[0], 7000)})
        self.assertEqual(self.lab.rules(UDP), {})

    async def test_mapUDP(self) -> None:
        """
        A UDP mapping on a suggested external port different from the
        internal one appears as a UDP forward, and no TCP one.
        """
        mapping = await self.client.addMapping(UDP, 7001, externalPort=17001)
        self.assertEqual(
            (mapping.transport, mapping.internalPort, mapping.externalPort),
            (UDP, 7001, 17001),
        )
        self.assertEqual(self.lab.rules(UDP), {17001: (LAN_HOSTS[0], 7001)})
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_renewKeepsPort(self) -> None:
        """
        Renewing (the same request again, suggesting the port granted; RFC
        6886 s3.3) keeps the external port and leaves a single forward.
        """
        first = await self.client.addMapping(TCP, 7002, externalPort=17002)
        again = await self.client.addMapping(
            TCP, 7002, externalPort=first.externalPort, lifetime=900
        )
        self.assertEqual(again.externalPort, first.externalPort)
        self.assertEqual(again.lifetime, 900)
        self.assertEqual(self.lab.rules(TCP), {17002: (LAN_HOSTS[0], 7002)})

    async def test_takenPortAnsweredWithAnother(self) -> None:
        """
        When the suggested external port is taken by the other LAN host, the
        router grants a different free port (RFC 6886 s3.3), and both
        forwards point at their own host.
        """
        other = clientOn(self, self.lab, lan=1)
        theirs = await other.addMapping(TCP, 7200, externalPort=17200)
        self.assertEqual(theirs.externalPort, 17200)
        ours = await self.client.addMapping(TCP, 7300, externalPort=17200)
        self.assertNotEqual(ours.externalPort, 17200)
        self.assertEqual(
            self.lab.rules(TCP),
            {
                17200: (LAN_HOSTS[1], 7200),
                ours.externalPort: (LAN_HOSTS[0], 7300),
            },
        )

    async def test_delete(self) -> None:
        """
        Deleting a mapping (lifetime 0, RFC 6886 s3.4) removes its forward;
        deleting it again, when it no longer exists, still succeeds.
        """
        await self.client.addMapping(UDP, 7400)
        self.assertIn(7400, self.lab.rules(UDP))
        await self.client.deleteMapping(UDP, 7400)
        self.assertEqual(self.lab.rules(UDP), {})
        await self.client.deleteMapping(UDP, 7400)

    async def test_deleteAll(self) -> None:
        """
        Deleting all TCP mappings (internal port 0, RFC 6886 s3.4) removes
        every TCP forward of this host and leaves the other host's alone.

        miniupnpd departs from the RFC here: it removes the host's UDP
        mappings too, whatever the opcode (PROTOCOL.md Part B), so this test
        says nothing about UDP.
        """
        other = clientOn(self, self.lab, lan=1)
        await other.addMapping(TCP, 7500, externalPort=17500)
        await self.client.addMapping(TCP, 7501, externalPort=17501)
        await self.client.addMapping(TCP, 7502, externalPort=17502)
        self.assertEqual(
            set(self.lab.rules(TCP)),
            {17500, 17501, 17502},
        )
        await self.client.deleteAllMappings(TCP)
        self.assertEqual(self.lab.rules(TCP), {17500: (LAN_HOSTS[1], 7500)})

    async def test_stateLossAfterRouterRestart(self) -> None:
        """
        After the router restarts (rules gone, epoch back to 0) the next
        reply's epoch is far below the expected one and the client tells
        its state-loss observers (RFC 6886 s3.6).  The epoch rule allows 2 s
        of slack, so the router must have run about 3 s first.
        """
        losses: list[None] = []
        self.client.addStateLossObserver(lambda: losses.append(None))
        await self.client.externalAddress()
        await sleep(3.0)
        await self.client.externalAddress()
        self.assertEqual(losses, [])
        await self.lab.restartMiniupnpd()
        await self.client.externalAddress()
        self.assertEqual(losses, [None])


class StopDeletionsTests(TestCase):
    """
    L{NATPMPClient.deleteMappings}, the deletions of a stopping client,
    against miniupnpd behind the impairment relay: twenty mappings over a
    600 ms round trip (RFC 6886 s3.4; s3.1 lets a client give up on a
    deletion sooner than on other requests: here after two sends).  About
    4 s each.
    """

    ports = range(7600, 7610)

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()
        # Mapped without the relay, by a client whose flow it will not see.
        mapper = clientOn(self, self.lab)
        for protocol in (TCP, UDP):
            for port in self.ports:
                await mapper.addMapping(protocol, port, lifetime=600)
        self.keys = [(p, port) for p in (TCP, UDP) for port in self.ports]

    async def deleteThrough(
        self, up: Impairment, down: Impairment
    ) -> tuple[dict[Any, Any], float, dict[str, dict[str, int]]]:
        relay = await self.lab.startRelay(up=up, down=down, seed=6886)
        client = clientOn(self, self.lab)
        started = reactor().seconds()
        results = await client.deleteMappings(self.keys, timeouts=(1.0, 1.5))
        elapsed = reactor().seconds() - started
        return results, elapsed, await relay.stop()

    async def test_slowLink(self) -> None:
        """
        Sent together, all twenty are deleted after about one round trip,
        where one at a time would take twelve seconds.
        """
        delay = Impairment(delay=0.3)
        results, elapsed, counts = await self.deleteThrough(delay, delay)
        self.assertEqual(results, dict.fromkeys(self.keys))
        self.assertLess(elapsed, 2.0)
        self.assertEqual((self.lab.rules(TCP), self.lab.rules(UDP)), ({}, {}))
        self.assertEqual(counts["up"]["received"], 20)

    async def test_lossyLink(self) -> None:
        """
        With 30% loss each way, every deletion is sent at least once and at
        most twice, the answer comes by the last timeout, and each one
        reported deleted is gone from the firewall; each other one says
        why (no answer).
        """
        lossy = Impairment(loss=0.3, delay=0.3)
        results, elapsed, counts = await self.deleteThrough(lossy, lossy)
        self.assertLess(elapsed, 2.5 + 0.5)
        self.assertGreaterEqual(counts["up"]["received"], 20)
        self.assertLessEqual(counts["up"]["received"], 40)
        left = set(self.lab.rules(TCP)) | set(self.lab.rules(UDP))
        for (protocol, port), outcome in results.items():
            if outcome is None:
                self.assertNotIn(port, self.lab.rules(protocol))
            else:
                outcome.trap(NoResponseError)
        self.assertLessEqual(len(left), sum(1 for o in results.values() if o))


class ClientWithoutRouterTests(TestCase):
    """
    Our client when no NAT-PMP server answers.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)

    async def test_silentGatewayFailsAfterSchedule(self) -> None:
        """
        A request to an address where nothing answers fails with
        L{NoResponseError} once every send of the schedule went unanswered,
        and not before (RFC 6886 s3.1, on a short injected schedule).
        """
        timeouts = (0.25, 0.5)
        client = clientOn(self, self.lab, gateway=NOBODY, timeouts=timeouts)
        started = reactor().seconds()
        with self.assertRaises(NoResponseError) as caught:
            await client.externalAddress()
        elapsed = reactor().seconds() - started
        self.assertEqual(caught.exception.attempts, len(timeouts))
        self.assertGreaterEqual(elapsed, sum(timeouts) - 0.01)
        self.assertLess(elapsed, sum(timeouts) + 1.0)

    async def test_gatewayWithoutNATPMP(self) -> None:
        """
        The router without a NAT-PMP server answers with ICMP port
        unreachable, and the client gives up at once with
        L{NotSupportedError} instead of retrying for two minutes (RFC 6886
        s3.1).  The client survives it: once miniupnpd runs, the same client
        is answered.  (Twisted's epoll and poll reactors close a connected
        UDP port on that ICMP error, Twisted #5377 and #6467; the client
        must notice and bind again.)
        """
        client = clientOn(self, self.lab)
        started = reactor().seconds()
        with self.assertRaises(NotSupportedError):
            await client.externalAddress()
        self.assertLess(reactor().seconds() - started, 2.0)
        await self.lab.startMiniupnpd()
        self.assertEqual(await client.externalAddress(), IPv4Address(ROUTER_WAN))
