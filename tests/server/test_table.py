"""
Tests for L{twisted_natpmp.server.table}: creating and renewing mappings,
and the epoch, on a L{Clock}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.errors import (
    OutOfResourcesError,
)
from twisted_natpmp.server.table import (
    HIGH_PORT,
    EventKind,
    GatewayMapping,
    MappingTable,
    Refused,
    checkLimits,
)

from ._tablefakes import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    TCP,
    UDP,
    TableTestsMixin,
)

#: An IPv6 client (a PCP client, some day, with a pinhole or a NAT64 map).
ERIN = IPv6Address("2001:db8::5")


class MapTests(TableTestsMixin, SynchronousTestCase):
    def test_suggestedPortFree(self) -> None:
        """
        A new mapping gets the suggested external port when it is free, and
        the backend is asked to forward it to the client (RFC 6886 s3.3).
        """
        mapping = self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.assertEqual(
            mapping, GatewayMapping(ALICE, TCP, 6000, 7000, 3600, 1000 + 3600)
        )
        self.assertEqual(self.backend.forwards, {(TCP, 7000): (ALICE, 6000)})
        self.assertEqual(self.kinds(), [EventKind.CREATED])
        self.assertEqual(self.table.get(ALICE, TCP, 6000), mapping)
        self.assertEqual(len(self.table), 1)

    def test_renewalKeepsExternalPort(self) -> None:
        """
        The same client asking again for the same internal port renews the
        mapping and gets back the external port it already has, whatever it
        suggests now (RFC 6886 s3.3: a lost reply must not cost the port).
        """
        first = self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.clock.advance(100)
        again = self.table.map(ALICE, TCP, 6000, 8000, 600)
        self.assertEqual(again.externalPort, first.externalPort)
        self.assertEqual(again.lifetime, 600)
        self.assertEqual(again.expires, self.clock.seconds() + 600)
        self.assertEqual(self.kinds(), [EventKind.CREATED, EventKind.RENEWED])
        self.assertEqual(self.backend.forwards, {(TCP, 7000): (ALICE, 6000)})
        self.assertEqual(len(self.table), 1)

    def test_takenPortGetsNextFree(self) -> None:
        """
        When the suggested port is taken, another free one is granted: the
        next free one above it (RFC 6886 s3.3: "MUST return an available
        external port if possible").
        """
        self.table.map(ALICE, TCP, 6000, 7000, 3600)
        self.table.map(ALICE, TCP, 6001, 7001, 3600)
        mapping = self.table.map(BOB, TCP, 6000, 7000, 3600)
        self.assertEqual(mapping.externalPort, 7002)
        self.assertEqual(self.backend.forwards[(TCP, 7002)], (BOB, 6000))

    def test_sameInternalPortOtherClient(self) -> None:
        """
        Mappings are per client: two clients may map the same internal
        port (RFC 6886 s3.3).
        """
        alice = self.table.map(ALICE, UDP, 6000, 6000, 60)
        bob = self.table.map(BOB, UDP, 6000, 6000, 60)
        self.assertEqual(alice.client, ALICE)
        self.assertEqual(bob.client, BOB)
        self.assertNotEqual(alice.externalPort, bob.externalPort)

    def test_suggestionZeroGetsHighPort(self) -> None:
        """
        A suggested external port of 0 gets a high port of the gateway's
        choosing (RFC 6886 s3.3).
        """
        first = self.table.map(ALICE, UDP, 6000, 0, 60)
        second = self.table.map(ALICE, UDP, 6001, 0, 60)
        self.assertGreaterEqual(first.externalPort, HIGH_PORT)
        self.assertGreaterEqual(second.externalPort, HIGH_PORT)
        self.assertNotEqual(first.externalPort, second.externalPort)

    def test_companionPortReserved(self) -> None:
        """
        A TCP mapping reserves the same external UDP port for the same
        client, without creating a UDP mapping; another client cannot get
        it; the holder can (RFC 6886 s3.3), and the reverse for UDP.
        """
        self.table.map(ALICE, TCP, 8080, 8080, 3600)
        self.assertIsNone(self.table.get(ALICE, UDP, 8080))
        self.assertNotIn((UDP, 8080), self.backend.forwards)
        bob = self.table.map(BOB, UDP, 8080, 8080, 3600)
        self.assertNotEqual(bob.externalPort, 8080)
        alice = self.table.map(ALICE, UDP, 8080, 8080, 3600)
        self.assertEqual(alice.externalPort, 8080)
        # And UDP reserves TCP.
        self.table.map(BOB, UDP, 9090, 9090, 3600)
        self.assertNotEqual(
            self.table.map(ALICE, TCP, 9090, 9090, 3600).externalPort, 9090
        )
        self.assertEqual(self.table.map(BOB, TCP, 9090, 9090, 3600).externalPort, 9090)

    def test_companionReleasedWithMapping(self) -> None:
        """
        The companion port is reserved only while the client holds its
        mapping (RFC 6886 s3.3: "as long as the client maintains the
        lease").
        """
        self.table.map(ALICE, TCP, 8080, 8080, 60)
        self.clock.advance(60)
        self.assertEqual(self.table.map(BOB, UDP, 8080, 8080, 60).externalPort, 8080)
        self.table.delete(BOB, UDP, 8080)
        self.assertEqual(self.table.map(ALICE, TCP, 8081, 8081, 60).externalPort, 8081)
        self.table.delete(ALICE, TCP, 8081)
        self.assertEqual(self.table.map(BOB, UDP, 8081, 8081, 60).externalPort, 8081)

    def test_lifetimeCapped(self) -> None:
        """
        The lifetime granted is at most the configured maximum (the gateway
        MAY reduce it) and never more than requested (it SHOULD NOT offer
        more, RFC 6886 s3.3).
        """
        table = self.makeTable(maxLifetime=3600)
        self.assertEqual(table.map(ALICE, TCP, 1, 1025, 2**32 - 1).lifetime, 3600)
        self.assertEqual(table.map(ALICE, TCP, 2, 1026, 10).lifetime, 10)

    def test_perClientLimit(self) -> None:
        """
        Beyond its mapping limit a client is out of resources (result 4,
        RFC 6886 s3.5); TCP and UDP count together; renewals and other
        clients are unaffected.
        """
        table = self.makeTable(maxMappingsPerClient=2)
        table.map(ALICE, TCP, 1, 2001, 60)
        table.map(ALICE, UDP, 2, 2002, 60)
        error = self.assertRaises(Refused, table.map, ALICE, TCP, 3, 0, 60)
        self.assertIsInstance(error.error, OutOfResourcesError)
        self.assertEqual(
            str(error), "client at its limit of 2 mappings (out of resources)"
        )
        self.assertEqual(table.map(ALICE, TCP, 1, 0, 60).externalPort, 2001)
        table.map(BOB, TCP, 3, 0, 60)
        table.delete(ALICE, TCP, 1)
        table.map(ALICE, TCP, 3, 0, 60)

    def test_portRange(self) -> None:
        """
        Only ports in the configured range are granted; a suggestion outside
        it gets one inside; when the range is used up the request is out of
        resources (RFC 6886 s3.3: "or return an error code if no external
        ports are available").
        """
        table = self.makeTable(minPort=5000, maxPort=5002)
        granted = {
            table.map(ALICE, UDP, 80, 80, 60).externalPort,
            table.map(ALICE, UDP, 5001, 5001, 60).externalPort,
            table.map(BOB, UDP, 9000, 9000, 60).externalPort,
        }
        self.assertEqual(granted, {5000, 5001, 5002})
        error = self.assertRaises(Refused, table.map, CAROL, UDP, 1, 0, 60)
        self.assertEqual(str(error), "no external port is free (out of resources)")
        # The companion ports are Alice's: Bob cannot have them for TCP.
        self.assertRaises(Refused, table.map, BOB, TCP, 1, 5001, 60)
        self.assertEqual(table.map(ALICE, TCP, 1, 5001, 60).externalPort, 5001)

    def test_gatewayLimit(self) -> None:
        """
        Beyond the gateway-wide limit every new mapping is out of resources
        (result 4, RFC 6886 s3.5), whoever asks; renewals still work, and a
        deletion makes room.
        """
        table = self.makeTable(maxMappings=3)
        table.map(ALICE, TCP, 1, 2001, 60)
        table.map(BOB, TCP, 1, 2002, 60)
        table.map(CAROL, TCP, 1, 2003, 60)
        error = self.assertRaises(Refused, table.map, DAVE, TCP, 1, 0, 60)
        self.assertEqual(
            str(error), "gateway at its limit of 3 mappings (out of resources)"
        )
        self.assertEqual(table.map(ALICE, TCP, 1, 0, 60).externalPort, 2001)
        table.delete(BOB, TCP, 1)
        self.assertEqual(table.map(DAVE, TCP, 1, 2002, 60).externalPort, 2002)

    def test_fairShare(self) -> None:
        """
        A client may not take a mapping while it holds as many as the
        gateway has left, so that many clients (or forged sources) cannot
        take the last ports from one that holds none: with 10 ports and 4
        greedy clients, a fifth still gets one.
        """
        table = self.makeTable(minPort=5000, maxPort=5009)
        greedy = [IPv4Address(f"10.0.1.{i}") for i in range(1, 5)]
        for port in range(1, 20):
            for client in greedy:
                try:
                    table.map(client, UDP, port, 0, 60)
                except Refused as e:
                    self.assertEqual(
                        str(e),
                        "client holds as many mappings as the gateway has left"
                        " (out of resources)",
                    )
        self.assertEqual([len(table.mappingsOf(c)) for c in greedy], [2, 2, 2, 2])
        self.assertEqual(len(table), 8)
        table.map(ALICE, UDP, 1, 0, 60)
        # Alice's own companion port needs no new port.
        table.map(ALICE, TCP, 1, table.mappingsOf(ALICE)[0].externalPort, 60)
        self.assertRaises(Refused, table.map, ALICE, UDP, 2, 0, 60)

    def test_portZeroAndZeroLifetimeRejected(self) -> None:
        """
        Internal port 0 and lifetime 0 are not mappings (RFC 6886 s3.4:
        they mean deletion); the table refuses them as programming errors.
        """
        self.assertRaises(ValueError, self.table.map, ALICE, TCP, 0, 0, 60)
        self.assertRaises(ValueError, self.table.map, ALICE, TCP, 1, 0, 0)
        self.assertEqual(len(self.table), 0)

    def test_badLimits(self) -> None:
        """
        Limits out of range are refused.
        """
        for limits in [(0, 10, 1, 1), (10, 9, 1, 1), (1, 65536, 1, 1)]:
            self.assertRaises(ValueError, checkLimits, *limits)
        self.assertRaises(ValueError, checkLimits, 1, 2, 0, 1)
        self.assertRaises(ValueError, checkLimits, 1, 2, 2**32, 1)
        self.assertRaises(ValueError, checkLimits, 1, 2, 1, 0)
        self.assertRaises(ValueError, checkLimits, 1, 2, 1, 1, 0)
        self.assertRaises(ValueError, MappingTable, self.clock, self.backend, minPort=0)
        checkLimits(1, 65535, 2**32 - 1, 1)


class EpochTests(TableTestsMixin, SynchronousTestCase):
    def test_wholeSecondsSinceStart(self) -> None:
        """
        The epoch is the whole seconds since the table was created (RFC 6886
        s3.6), from the injected clock.
        """
        self.assertEqual(self.table.epoch(), 0)
        self.clock.advance(0.9)
        self.assertEqual(self.table.epoch(), 0)
        self.clock.advance(0.1)
        self.assertEqual(self.table.epoch(), 1)
        self.clock.advance(86400)
        self.assertEqual(self.table.epoch(), 86401)

    def test_wraps(self) -> None:
        """
        The epoch is a 32-bit field (RFC 6886 s3.2): it wraps.
        """
        self.clock.advance(2**32 + 5)
        self.assertEqual(self.table.epoch(), 5)


class NeutralTests(TableTestsMixin, SynchronousTestCase):
    """
    The table knows transports and clients, IPv4 or IPv6, not a protocol.
    """

    def test_ipv6Client(self) -> None:
        """
        An IPv6 client maps, renews, is found and deletes like an IPv4 one,
        and the backend is handed its address.
        """
        mapping = self.table.map(ERIN, TCP, 443, 8443, 60)
        self.assertEqual((mapping.client, mapping.externalPort), (ERIN, 8443))
        self.assertEqual(self.backend.forwards, {(TCP, 8443): (ERIN, 443)})
        self.assertEqual(self.table.map(ERIN, TCP, 443, 0, 60).externalPort, 8443)
        self.assertEqual(self.table.get(ERIN, TCP, 443), self.table.mappingsOf(ERIN)[0])
        self.assertIsNone(self.table.get(ALICE, TCP, 443))
        self.table.delete(ERIN, TCP, 443)
        self.assertEqual((len(self.table), self.backend.forwards), (0, {}))

    def test_companionAcrossFamilies(self) -> None:
        """
        The companion port a client holds is reserved against clients of
        either family (RFC 6886 s3.3): one external port space.
        """
        self.table.map(ERIN, TCP, 8080, 8080, 60)
        self.assertNotEqual(
            self.table.map(ALICE, UDP, 8080, 8080, 60).externalPort, 8080
        )
        self.assertEqual(self.table.map(ERIN, UDP, 8080, 8080, 60).externalPort, 8080)

    def test_protocolIsTransport(self) -> None:
        """
        A mapping's C{protocol}, its first name, is its transport.
        """
        mapping = self.table.map(ALICE, UDP, 1, 0, 60)
        self.assertIs(mapping.transport, UDP)
        self.assertIs(mapping.protocol, UDP)
        self.assertEqual(mapping.key, (ALICE, UDP, 1))

    def test_refusalByMeaning(self) -> None:
        """
        A refusal carries an error by meaning and no protocol's code; its
        text says the reason and the meaning.
        """
        table = self.makeTable(maxMappingsPerClient=1)
        table.map(ERIN, UDP, 1, 0, 60)
        refusal = self.assertRaises(Refused, table.map, ERIN, UDP, 2, 0, 60)
        self.assertIsInstance(refusal.error, OutOfResourcesError)
        self.assertIsNone(refusal.error.resultCode)
        self.assertEqual(
            str(refusal), "client at its limit of 1 mapping (out of resources)"
        )
