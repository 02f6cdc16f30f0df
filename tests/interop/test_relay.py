"""
The reliability suite's packet tools (L{tools.impair}): the
impairment relay's seeded decisions, in memory, and the relay itself
between a LAN host and the real miniupnpd; the flooder; the mutations.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tools.impair.flood import udpDatagram
from tools.impair.mutations import MAX_LENGTH, isMapRequest, mutations, validRequests
from tools.impair.relay import Counts, Fate, Impairment
from twisted_natpmp import Transport

from ._lab import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    Inbox,
    Lab,
    buildLab,
    sleep,
    waitUntil,
)

#: The relay's seed in these tests.
SEED = 1234
#: The down direction's seed offset (as L{tools.impair.relay.relayMain} uses).
DOWN_SEED = SEED + 1_000_003


def deleteRequest(internal: int) -> bytes:
    """
    A NAT-PMP UDP deletion of C{internal} (RFC 6886 s3.4): miniupnpd answers
    it at once, echoing the port, without touching its firewall.
    """
    return struct.pack("!BBHHHI", 0, 1, 0, internal, 0, 0)


def internalPort(reply: bytes) -> int:
    """
    The internal port a 16-byte NAT-PMP mapping reply names (RFC 6886 s3.3).
    """
    version, opcode, result, _, internal, _, _ = struct.unpack("!BBHIHHI", reply)
    assert (version, opcode, result) == (0, 129, 0), reply.hex()
    port: int = internal
    return port


class FateTests(SynchronousTestCase):
    """
    L{Fate}: what becomes of each packet, from a seed.
    """

    def test_sameSeedSameFates(self) -> None:
        """
        One seed gives one sequence of fates; another seed another.
        """
        imp = Impairment(loss=0.3, duplicate=0.2, reorder=0.25, delay=0.3)
        a, b, c = Fate(imp, 7), Fate(imp, 7), Fate(imp, 8)
        seqA = [a.decide() for _ in range(200)]
        self.assertEqual(seqA, [b.decide() for _ in range(200)])
        self.assertNotEqual(seqA, [c.decide() for _ in range(200)])

    def test_rates(self) -> None:
        """
        Over many packets each impairment happens about as often as asked,
        and the counts add up.
        """
        fate = Fate(Impairment(loss=0.3, duplicate=0.2, reorder=0.25), 1)
        copies = sum(len(fate.decide()) for _ in range(10_000))
        counts = fate.counts
        self.assertEqual(counts.received, 10_000)
        kept = 10_000 - counts.dropped
        for share, asked in [
            (counts.dropped / 10_000, 0.3),
            (counts.duplicated / kept, 0.2),
            (counts.reordered / kept, 0.25),
        ]:
            self.assertLess(abs(share - asked), 0.02, (share, asked))
        self.assertEqual(copies, kept + counts.duplicated)

    def test_delays(self) -> None:
        """
        Every packet kept waits C{delay}; a reordered one C{hold} more; a
        duplicate goes no earlier than its original and at most C{hold}
        after it.
        """
        imp = Impairment(delay=0.3, duplicate=0.5, reorder=0.5, hold=0.2)
        fate = Fate(imp, 3)
        seen = set()
        for _ in range(500):
            delays = fate.decide()
            self.assertIn(delays[0], (0.3, 0.3 + 0.2))
            seen.add(delays[0])
            if len(delays) == 2:
                self.assertGreaterEqual(delays[1], delays[0])
                self.assertLessEqual(delays[1], delays[0] + 0.2)
        self.assertEqual(seen, {0.3, 0.5})

    def test_noImpairment(self) -> None:
        """
        With no impairment every packet goes once, at once.
        """
        fate = Fate(Impairment(), 0)
        self.assertEqual([fate.decide() for _ in range(100)], [[0.0]] * 100)
        self.assertEqual(fate.counts, Counts(received=100))

    def test_total(self) -> None:
        """
        Certain loss drops everything.
        """
        fate = Fate(Impairment(loss=1.0), 0)
        self.assertEqual([fate.decide() for _ in range(100)], [[]] * 100)

    def test_argumentRoundTrip(self) -> None:
        """
        L{Impairment.argument} and L{Impairment.parse} undo each other; an
        empty string is no impairment.
        """
        imp = Impairment(loss=0.3, delay=0.25, duplicate=0.2, reorder=0.1, hold=0.05)
        self.assertEqual(Impairment.parse(imp.argument()), imp)
        self.assertEqual(Impairment.parse(""), Impairment())

    def test_badValues(self) -> None:
        """
        Chances outside 0-1, negative times and unknown names are refused.
        """
        self.assertRaises(ValueError, Impairment, loss=1.5)
        self.assertRaises(ValueError, Impairment, reorder=-0.1)
        self.assertRaises(ValueError, Impairment, delay=-1)
        self.assertRaises(ValueError, Impairment.parse, "jitter=0.1")


def predictedReplies(up: Impairment, down: Impairment, requests: int) -> int:
    """
    How many replies a relay with C{up} and C{down} (seeded as the lab
    seeds them with L{SEED}) lets through for C{requests} requests, each
    answered once by the router.
    """
    upFate, downFate = Fate(up, SEED), Fate(down, DOWN_SEED)
    return sum(len(downFate.decide()) for _ in range(requests) for _ in upFate.decide())


class RelayTests(TestCase):
    """
    The relay between LAN host 1 and miniupnpd.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()

    def socket(self) -> tuple[Inbox, Callable[[bytes], None]]:
        """
        A socket on LAN host 1, and a function that sends to the router's
        port 5351 from it.
        """
        inbox = Inbox()
        port = self.lab.listenUDP(self.lab.lans[0], 0, inbox)
        self.addCleanup(port.stopListening)

        def send(data: bytes) -> None:
            assert inbox.transport is not None
            inbox.transport.write(data, (ROUTER_LAN, 5351))

        return inbox, send

    async def test_transparent(self) -> None:
        """
        Through an unimpaired relay natpmpc (which takes replies only from
        the router's address and port 5351) maps a port, and miniupnpd maps
        it to the LAN host's own address; the relay saw the traffic.
        """
        relay = await self.lab.startRelay(seed=SEED)
        lan = self.lab.lans[0]
        done = await self.lab.run(
            lan, ["natpmpc", "-g", ROUTER_LAN, "-a", "5001", "5000", "udp", "600"]
        )
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(f"Public IP address : {ROUTER_WAN}", done.out)
        self.assertRegex(done.out, r"Mapped public port 5001 protocol UDP")
        self.assertEqual(self.lab.rules(Transport.UDP), {5001: (LAN_HOSTS[0], 5000)})
        counts = await relay.stop()
        # natpmpc asks for the external address, then maps.
        self.assertGreaterEqual(counts["up"]["received"], 2)
        self.assertEqual(counts["up"]["sent"], counts["up"]["received"])
        self.assertEqual(counts["down"]["sent"], counts["down"]["received"])
        self.assertGreaterEqual(counts["down"]["sent"], 2)

    async def lossRun(self, up: Impairment, down: Impairment) -> None:
        relay = await self.lab.startRelay(up=up, down=down, seed=SEED)
        inbox, send = self.socket()
        requests = 200
        for i in range(requests):
            send(deleteRequest(2000 + i))
            if i % 20 == 19:
                await sleep(0.01)
        expected = predictedReplies(up, down, requests)
        await waitUntil(
            lambda: len(inbox.received) >= expected, f"{expected} replies", 10.0
        )
        await sleep(0.2)
        self.assertEqual(len(inbox.received), expected)
        self.assertEqual({source for _, source in inbox.received}, {(ROUTER_LAN, 5351)})
        counts = await relay.stop()
        self.assertEqual(counts["up"]["received"], requests)
        self.assertEqual(
            counts["up"]["sent"], requests - counts["up"]["dropped"], counts
        )
        self.assertEqual(counts["down"]["sent"], expected)

    async def test_lossUp(self) -> None:
        """
        Loss on the way up only: exactly the seeded share of requests is
        lost, every reply to the rest arrives, from the router's port 5351.
        """
        await self.lossRun(Impairment(loss=0.4), Impairment())

    async def test_lossDown(self) -> None:
        """
        Loss on the way down only: every request arrives, the seeded share
        of replies is lost.
        """
        await self.lossRun(Impairment(), Impairment(loss=0.4))

    async def test_delay(self) -> None:
        """
        A delay on the way down holds every reply back: none has come after
        half of it, the reply comes after it.
        """
        relay = await self.lab.startRelay(down=Impairment(delay=0.6), seed=SEED)
        inbox, send = self.socket()
        send(deleteRequest(3000))
        await sleep(0.3)
        self.assertEqual(inbox.received, [])
        await waitUntil(lambda: inbox.received, "the delayed reply", 5.0)
        self.assertEqual(internalPort(inbox.received[0][0]), 3000)
        await relay.stop()

    async def test_duplicateAndReorder(self) -> None:
        """
        Duplication and reordering on the way down: replies come more than
        once and out of the order they were asked for, as the seed says.
        """
        down = Impairment(duplicate=0.3, reorder=0.3, hold=0.2)
        relay = await self.lab.startRelay(down=down, seed=SEED)
        inbox, send = self.socket()
        ports = list(range(4000, 4040))
        for port in ports:
            send(deleteRequest(port))
            await sleep(0.01)
        expected = predictedReplies(Impairment(), down, len(ports))
        await waitUntil(lambda: len(inbox.received) >= expected, "replies", 10.0)
        got = [internalPort(data) for data, _ in inbox.received]
        self.assertEqual(sorted(set(got)), ports)
        self.assertGreater(len(got), len(ports))
        self.assertNotEqual(got, sorted(got))
        counts = await relay.stop()
        self.assertEqual(counts["down"]["sent"], len(got))
        self.assertEqual(len(got) - len(ports), counts["down"]["duplicated"])

    async def test_exitsWhenBoundReached(self) -> None:
        """
        The relay is bounded: after its packet budget it exits by itself
        and reports.
        """
        relay = await self.lab.startRelay(seed=SEED, maxPackets=10)
        inbox, send = self.socket()
        for port in range(5000, 5020):
            send(deleteRequest(port))
            await sleep(0.01)
        self.assertTrue(await relay.daemon.waitEnded(5.0), relay.daemon.output())
        self.assertIn('{"relay"', relay.daemon.output())


class FlooderTests(TestCase):
    """
    The flooder (C{python -m tools.impair flood}) from LAN host 2 to a socket
    on LAN host 1: it sends what it is asked, as fast as allowed and no
    faster, from a forged source when asked.
    """

    async def flood(self, lab: Lab, *args: str) -> dict[str, float]:
        done = await lab.run(lab.lans[1], lab.impair("flood", *args), timeout=20.0)
        self.assertEqual(done.code, 0, done.describe())
        counts: dict[str, float] = json.loads(done.out.splitlines()[-1])["flood"]
        return counts

    async def test_plainAndForged(self) -> None:
        """
        An ordinary target gets the packets from LAN host 2; a forged one
        from the source given (here the router's port 5351, as a reply
        would come), through a raw socket.  Whole map requests are left out
        when asked.
        """
        lab = buildLab(self)
        inbox = Inbox()
        port = lab.listenUDP(lab.lans[0], 6000, inbox)
        self.addCleanup(port.stopListening)
        counts = await self.flood(
            lab,
            "--to",
            f"{LAN_HOSTS[0]}:6000",
            "--to",
            f"{LAN_HOSTS[0]}:6000<-{ROUTER_LAN}:5351",
            "--count",
            "100",
            "--rate",
            "2000",
            "--no-map-requests",
        )
        self.assertEqual(counts["sent"], 100)
        await waitUntil(lambda: len(inbox.received) >= 100, "100 packets", 5.0)
        sources = [source for _, source in inbox.received]
        self.assertEqual(sources.count((ROUTER_LAN, 5351)), 50)
        self.assertEqual(sum(host == LAN_HOSTS[1] for host, _ in sources), 50)
        self.assertFalse([d for d, _ in inbox.received if isMapRequest(d)])

    async def test_rateBounded(self) -> None:
        """
        The flooder never goes faster than its rate, and stops at its count.
        """
        lab = buildLab(self)
        inbox = Inbox()
        port = lab.listenUDP(lab.lans[0], 6001, inbox)
        self.addCleanup(port.stopListening)
        counts = await self.flood(
            lab, "--to", f"{LAN_HOSTS[0]}:6001", "--count", "300", "--rate", "1000"
        )
        self.assertEqual(counts["sent"], 300)
        # The 300th packet is due 299 ms after the first.
        self.assertGreaterEqual(counts["seconds"], 0.299)
        await waitUntil(lambda: len(inbox.received) >= 300, "300 packets", 5.0)
        await sleep(0.1)
        self.assertEqual(len(inbox.received), 300)


class MutationTests(SynchronousTestCase):
    """
    The seeded mutations the flooder and the fuzz tests send.
    """

    def test_seeded(self) -> None:
        """
        One seed, one sequence; every packet at most L{MAX_LENGTH} bytes;
        most differ from every valid message.
        """
        valid = validRequests()
        first = list(mutations(5, valid, 500))
        self.assertEqual(first, list(mutations(5, valid, 500)))
        self.assertNotEqual(first, list(mutations(6, valid, 500)))
        self.assertTrue(all(len(p) <= MAX_LENGTH for p in first))
        changed = [p for p in first if p not in valid]
        self.assertGreater(len(changed), 400)

    def test_udpDatagram(self) -> None:
        """
        The forged packet is an IPv4 header (TTL 1, UDP) and a UDP header
        naming the ports and length, then the payload.
        """
        packet = udpDatagram(("10.77.0.1", 5351), ("10.77.0.2", 40000), b"abc")
        self.assertEqual(len(packet), 20 + 8 + 3)
        self.assertEqual(packet[0], 0x45)
        self.assertEqual((packet[8], packet[9]), (1, 17))
        self.assertEqual(packet[12:16], bytes([10, 77, 0, 1]))
        self.assertEqual(packet[16:20], bytes([10, 77, 0, 2]))
        self.assertEqual(struct.unpack("!HHH", packet[20:26]), (5351, 40000, 11))
        self.assertEqual(packet[28:], b"abc")
