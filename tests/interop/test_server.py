"""
Our gateway (C{twistd natpmp-gateway}, L{twisted_natpmp.server}) on the
router, against libnatpmp's natpmpc and against our own client on the LAN
hosts.
"""

from __future__ import annotations

import re
import struct
from ipaddress import IPv4Address

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.natpmp._wire import MapRequest
from twisted_natpmp.natpmp.client import NATPMPClient

from ._forge import Forger, flood
from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    Completed,
    Daemon,
    Inbox,
    buildLab,
    sleep,
    waitUntil,
)
from .test_client import clientOn

TCP, UDP = Transport.TCP, Transport.UDP


class _GatewayLab(TestCase):
    """
    A lab whose router runs C{twistd -n natpmp-gateway} (no miniupnpd),
    with the default options plus L{gatewayOptions}.
    """

    #: Options for the gateway beyond --listen and --external-address.
    gatewayOptions: tuple[str, ...] = ()

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        if self.gatewayOptions:
            self.gateway: Daemon = self.lab.spawn(
                self.lab.router,
                self.lab.twistd(
                    "natpmp-gateway",
                    f"--listen={ROUTER_LAN}/24",
                    f"--external-address={ROUTER_WAN}",
                    *self.gatewayOptions,
                ),
                "natpmp-gateway",
            )
            await self.lab.waitListening(self.gateway, 5351)
        else:
            self.gateway = await self.lab.startOurGateway()

    async def natpmpc(self, lan: int, *args: str) -> Completed:
        """
        Run natpmpc against our gateway from LAN host C{lan}; it must exit 0.
        """
        done = await self.lab.run(
            self.lab.lans[lan], ["natpmpc", "-g", ROUTER_LAN, *args]
        )
        self.assertEqual(done.code, 0, done.describe())
        return done

    def assertGatewayRuns(self) -> None:
        self.assertFalse(
            self.gateway.ended,
            f"the gateway exited {self.gateway.code}:\n{self.gateway.output()}",
        )

    def client(self, lan: int = 0) -> NATPMPClient:
        return clientOn(self, self.lab, lan)


class NatpmpcAgainstOurGatewayTests(_GatewayLab):
    """
    libnatpmp's natpmpc, a real client we did not write, accepts our
    gateway's answers.
    """

    async def test_externalAddress(self) -> None:
        """
        natpmpc gets the configured external address (RFC 6886 s3.2) and an
        epoch that counts from the gateway's start.
        """
        done = await self.natpmpc(0)
        self.assertIn(f"Public IP address : {ROUTER_WAN}", done.out, done.describe())
        epoch = re.search(r"epoch = (\d+)", done.out)
        assert epoch is not None, done.describe()
        self.assertLess(int(epoch.group(1)), 60)

    async def test_mapAndDelete(self) -> None:
        """
        natpmpc maps a TCP port on the external port it suggests (RFC 6886
        s3.3) and deletes it with lifetime 0 (s3.4): afterwards the other LAN
        host is granted that external port, which it could not be while the
        mapping existed.
        """
        done = await self.natpmpc(0, "-a", "18000", "8000", "tcp", "600")
        self.assertRegex(
            done.out,
            r"Mapped public port 18000 protocol TCP to local port 8000 liftime 600",
        )
        held = await self.natpmpc(1, "-a", "18000", "8001", "tcp", "600")
        self.assertNotRegex(held.out, r"Mapped public port 18000 ")

        done = await self.natpmpc(0, "-a", "0", "8000", "tcp", "0")
        self.assertRegex(done.out, r"local port 8000 liftime 0")
        free = await self.natpmpc(1, "-a", "18000", "8002", "tcp", "600")
        self.assertRegex(free.out, r"Mapped public port 18000 protocol TCP")

    async def test_malformedPacketsDoNotStopIt(self) -> None:
        """
        Junk from a LAN host (too short, a reply, a wrong version, an unknown
        opcode, a short map request, noise) does not stop the gateway: it
        keeps running and natpmpc still maps a port afterwards.  The unknown
        opcode is answered with result 5 (RFC 6886 s3.5) and the wrong
        version with the 8-byte result-1 reply whose opcode is 128 (Errata
        3618); the rest get no answer.
        """
        inbox = Inbox()
        port = self.lab.listenUDP(self.lab.lans[0], 0, inbox)
        self.addCleanup(port.stopListening)
        junk = [
            b"",
            b"\x00",
            b"\x00\x80\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04",  # a reply
            b"\x01\x00",  # version 1
            b"\x00\x07\x00\x00",  # unknown opcode
            b"\x00\x02\x00\x00\x1f\x40",  # map request cut short
            b"\x00\xc8" + bytes(range(256)) * 4,  # long noise, opcode 200
        ]
        for packet in junk:
            port.write(packet, (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
        await waitUntil(lambda: len(inbox.received) >= 2, "replies to junk", 5.0)
        await sleep(0.3)
        replies = sorted(data for data, _ in inbox.received)
        self.assertEqual(len(replies), 2, replies)
        versionReply, opcodeReply = replies
        self.assertEqual(struct.unpack("!BBH", versionReply[:4]), (0, 128, 1))
        self.assertEqual(len(versionReply), 8)
        self.assertEqual(struct.unpack("!BBH", opcodeReply[:4]), (0, 128 + 7, 5))
        self.assertGatewayRuns()
        done = await self.natpmpc(0, "-a", "18100", "8100", "udp", "600")
        self.assertRegex(done.out, r"Mapped public port 18100 protocol UDP")
        self.assertGatewayRuns()


class OurClientAgainstOurGatewayTests(_GatewayLab):
    """
    Our client and our gateway, each in its own namespace.
    """

    async def test_externalAddressMapRenewDelete(self) -> None:
        """
        Across the bridge our client gets the external address, a mapping
        on the suggested port, the same port again on renewal (RFC 6886
        s3.3), and deletes it (s3.4), after which the port is free for the
        other host.
        """
        client = self.client(0)
        self.assertEqual(await client.externalAddress(), IPv4Address(ROUTER_WAN))
        mapping = await client.addMapping(UDP, 8200, externalPort=18200, lifetime=300)
        self.assertEqual(
            (mapping.internalPort, mapping.externalPort, mapping.lifetime),
            (8200, 18200, 300),
        )
        renewed = await client.addMapping(UDP, 8200, externalPort=18200, lifetime=300)
        self.assertEqual(renewed.externalPort, 18200)
        await client.deleteMapping(UDP, 8200)
        other = await self.client(1).addMapping(UDP, 8201, externalPort=18200)
        self.assertEqual(other.externalPort, 18200)

    async def test_hostsCannotTouchEachOthersMappings(self) -> None:
        """
        A LAN host's delete and delete-all reach only its own mappings (RFC
        6886 s3.3: the internal address is the request's source): after the
        other host deletes "the same" internal port and all its TCP
        mappings, the first host's mapping still holds its external port.
        """
        ours, theirs = self.client(0), self.client(1)
        mapping = await ours.addMapping(TCP, 8300, externalPort=18300)
        self.assertEqual(mapping.externalPort, 18300)
        await theirs.deleteMapping(TCP, 8300)
        await theirs.deleteAllMappings(TCP)
        blocked = await theirs.addMapping(TCP, 8300, externalPort=18300)
        self.assertNotEqual(blocked.externalPort, 18300)
        renewed = await ours.addMapping(TCP, 8300, externalPort=18300)
        self.assertEqual(renewed.externalPort, 18300)


class OutsideRequestsTests(_GatewayLab):
    """
    Who the gateway serves.
    """

    async def test_wanRequestsAreNotServed(self) -> None:
        """
        Requests from the WAN host, to the gateway's external address or
        routed to its internal one, get no answer (RFC 6886 s3.3: only
        requests from the internal network, to an internal address), while
        the same request from a LAN host is answered.
        """
        request = b"\x00\x00"
        outside = Inbox()
        wan = self.lab.listenUDP(self.lab.wan, 0, outside)
        self.addCleanup(wan.stopListening)
        inside = Inbox()
        lan = self.lab.listenUDP(self.lab.lans[0], 0, inside)
        self.addCleanup(lan.stopListening)
        for destination in (ROUTER_WAN, ROUTER_LAN):
            wan.write(request, (destination, 5351))  # type: ignore[attr-defined]
        lan.write(request, (ROUTER_LAN, 5351))  # type: ignore[attr-defined]
        await waitUntil(lambda: inside.received, "the answer to the LAN host", 5.0)
        await sleep(0.5)
        self.assertEqual(inside.received[0][1], (ROUTER_LAN, 5351))
        self.assertEqual(outside.received, [])
        self.assertGatewayRuns()


class ExternalInterfaceTests(_GatewayLab):
    """
    A request that arrives on the router's external interface is not served
    even when its source address is a LAN host's (RFC 6886 s3.3).
    """

    def forger(self, namespace: str) -> Forger:
        forger = Forger(namespace)
        self.addCleanup(forger.close)
        return forger

    async def assertHeld(self, lan: int, internal: int, suggested: int) -> None:
        """
        LAN host C{lan}, asking for external port C{suggested}, is given
        another: someone holds it.
        """
        mapping = await self.client(lan).addMapping(TCP, internal, suggested, 600)
        self.assertNotEqual(mapping.externalPort, suggested)

    async def assertFree(self, lan: int, internal: int, suggested: int) -> None:
        mapping = await self.client(lan).addMapping(TCP, internal, suggested, 600)
        self.assertEqual(mapping.externalPort, suggested)

    async def test_forgedFromWanNeitherMapsNorDeletes(self) -> None:
        """
        With the router's reverse-path filter off, datagrams from the WAN
        host with LAN host 1's source address reach the gateway's socket; a
        deletion of LAN host 1's mapping and a new mapping of internal port
        22 among them change nothing (RFC 6886 s3.3: the gateway MUST NOT
        accept mapping requests received on its external interface).  The
        very same datagrams forged on the LAN (from LAN host 2) are served,
        which shows they are well-formed.
        """
        for interface in ("all", "wan0"):
            self.lab.check(
                self.lab.router,
                ["sysctl", "-qw", f"net.ipv4.conf.{interface}.rp_filter=0"],
            )
        first = await self.client(0).addMapping(TCP, 8000, 18000, 600)
        self.assertEqual(first.externalPort, 18000)
        victim = (LAN_HOSTS[0], 40000)
        gateway = (ROUTER_LAN, 5351)
        delete = MapRequest(TCP, 8000, 0, 0).encode()

        wan = self.forger(self.lab.wan)
        wan.send(victim, gateway, delete)
        wan.send(victim, gateway, MapRequest(TCP, 22, 2222, 3600).encode())
        await sleep(0.5)
        await self.assertHeld(1, 9000, 18000)
        await self.assertFree(1, 9001, 2222)
        self.assertIn(
            f"dropped a packet from {LAN_HOSTS[0]} (not received on an internal"
            " interface)",
            self.gateway.output(),
        )

        lan = self.forger(self.lab.lans[1])
        lan.send(victim, gateway, delete)
        lan.send(victim, gateway, MapRequest(TCP, 22, 3333, 3600).encode())
        await sleep(0.5)
        await self.assertFree(1, 9002, 18000)
        await self.assertHeld(1, 9003, 3333)
        self.assertGatewayRuns()


class FloodTests(_GatewayLab):
    """
    A flood of mapping requests from many forged LAN sources, bounded in
    packets and time, against a gateway with a small port range.
    """

    #: 1,000 external ports; each source 1 mapping request a second after
    #: a burst of 5.
    gatewayOptions = (
        "--min-port=20000",
        "--max-port=20999",
        "--rate-limit=1",
        "--rate-burst=5",
    )
    #: 200 forged sources on the LAN, none of them a lab host.
    sources = tuple(f"10.77.0.{i}" for i in range(4, 204))
    #: Requests per source: 6,000 packets in all, six times the port range.
    perSource = 30

    async def test_otherHostStillServed(self) -> None:
        """
        While LAN host 1 floods the gateway with 6,000 map requests in about
        2 s, forged from 200 other LAN addresses in turn (each far below the
        per-client limit), the forged sources take most of the ports but
        not the last ones (each holds about its share), requests beyond a
        source's rate are dropped and counted, and LAN host 2 (natpmpc)
        maps a port during the flood and after it.  The gateway logs each
        mapping it creates, and drops and refusals only in aggregate (it
        says the counts when it stops).
        """
        forger = Forger(self.lab.lans[0])
        self.addCleanup(forger.close)
        packets = [
            ((source, 40000), MapRequest(UDP, 1000 + k, 0, 3600).encode())
            for k in range(self.perSource)
            for source in self.sources
        ]
        flooding = Deferred.fromCoroutine(
            flood(forger, packets, (ROUTER_LAN, 5351), perBatch=150, interval=0.05)
        )
        await sleep(1.0)
        during = await self.natpmpc(1, "-a", "20500", "8500", "tcp", "600")
        await flooding
        await sleep(0.5)
        after = await self.natpmpc(1, "-a", "20501", "8501", "tcp", "600")
        for done in (during, after):
            self.assertRegex(done.out, r"Mapped public port \d+ protocol TCP")
        self.assertEqual(forger.sent, len(packets))
        self.assertGatewayRuns()
        await self.gateway.stop()  # which says what it counted
        log = self.gateway.output()
        lines = log.splitlines()
        created = log.count("mapping created: udp")
        tail = "\n".join(lines[-15:])
        self.assertGreater(created, 700, tail)
        self.assertLess(created, 1000, tail)
        self.assertRegex(log, r"dropped \d+ packets from .*over the rate limit", tail)
        # Besides one line per mapping event (its stopping deletes them all),
        # a few lines for 6,000 packets.
        others = [line for line in lines if "] mapping " not in line]
        self.assertLess(len(others), 150, tail)
