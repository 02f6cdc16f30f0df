"""
Tests for L{twisted_natpmp.server._committer}: a gateway over a batching
backend answers each request once its changes have committed, and never
holds a mapping the kernel does not.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from zope.interface.verify import verifyObject

from twisted_natpmp.interfaces import IMappingBackend
from twisted_natpmp.pcp._options import FilterOption
from twisted_natpmp.pcp._wire import ResultCode, decodeResponse
from twisted_natpmp.server._committer import DEFAULT_MAX_QUEUED, RETRY_DELAY
from twisted_natpmp.server._tablebackend import TableBackend

from ._batchhelpers import BatchingGatewayMixin
from ._helpers import CLIENT, OTHER, TCP, UDP, epochOf, mapRequest, parseMap
from ._pcp import announcePacket, mapPacket

ELEMENT = "tcp . 8080 timeout 3600s : 10.77.0.2 . 8080"


class AnsweredAfterCommitTests(BatchingGatewayMixin):
    def test_tableBackend(self) -> None:
        """
        The table's own backend over a batching one does nothing but
        provide L{IMappingBackend}.
        """
        self.assertTrue(verifyObject(IMappingBackend, TableBackend()))

    def test_createHeldUntilCommitted(self) -> None:
        """
        A new mapping is answered only once the batch that adds its element
        (timeout: the lifetime granted) has committed.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.assertEqual(self.replies[CLIENT], [])
        self.turn()
        inFlight = self.nft.inFlight
        assert inFlight is not None
        self.assertIn(
            f"add element inet twisted_natpmp forwards {{ {ELEMENT} }}", inFlight.stdin
        )
        self.assertEqual(self.replies[CLIENT], [])
        self.nft.succeed()
        [reply] = self.replies[CLIENT]
        _, result, _, _, external, lifetime = parseMap(reply)
        self.assertEqual((result, external, lifetime), (0, 8080, 3600))

    def test_renewRefreshes(self) -> None:
        """
        A renewal writes the element again with the new lifetime as its
        timeout.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.succeed()
        self.clock.advance(1800)
        self.send(mapRequest(TCP, 8080, 8080, 7200))
        self.turn()
        batch = self.nft.succeed().stdin
        self.assertIn(
            "add element inet twisted_natpmp forwards"
            " { tcp . 8080 timeout 7200s : 10.77.0.2 . 8080 }",
            batch,
        )
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1:6:4], (0, 7200))

    def test_deleteEndsFlows(self) -> None:
        """
        A deletion removes the element (without failing if the kernel has
        expired it: it is added first), is answered once committed, and
        then ends the flows through the mapping.
        """
        self.send(mapRequest(UDP, 5000, 5000, 600))
        self.turn()
        self.nft.succeed()
        self.send(mapRequest(UDP, 5000, 0, 0))
        self.turn()
        self.assertEqual(len(self.replies[CLIENT]), 1)
        batch = self.nft.succeed().stdin
        self.assertEqual(
            batch,
            "add element inet twisted_natpmp forwards"
            " { udp . 5000 timeout 1s : 10.77.0.2 . 5000 }\n"
            "delete element inet twisted_natpmp forwards { udp . 5000 }\n",
        )
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 0)
        # RFC 6886 s3.4: a mapping that has gone SHOULD end its connections:
        # once the element is gone, its flows are looked for.
        [listing] = self.conntrack.runs
        self.assertEqual(listing.arguments, ("-L", "-f", "ipv4", "--dst-nat"))

    def test_expiryRemoves(self) -> None:
        """
        A mapping that expires has its element removed and its flows ended
        (RFC 6886 s3.3: mappings not renewed MUST be deleted).
        """
        self.send(mapRequest(TCP, 8080, 8080, 60))
        self.turn()
        self.nft.succeed()
        self.clock.advance(60)
        self.turn()
        batch = self.nft.succeed().stdin
        self.assertIn(
            "delete element inet twisted_natpmp forwards { tcp . 8080 }", batch
        )
        self.assertEqual(len(self.conntrack.runs), 1)
        self.assertIsNone(self.gateway.table.get(IPv4Address(CLIENT), TCP, 8080))

    def test_nothingToCommit(self) -> None:
        """
        A request that changes nothing (the external address, deleting
        nothing) is answered at once, even while a batch is in flight: a
        gateway busy writing rules still answers.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.send(b"\x00\x00", OTHER)
        self.send(mapRequest(UDP, 9, 0, 0), OTHER)
        self.assertEqual(len(self.replies[OTHER]), 2)
        self.assertEqual(self.replies[CLIENT], [])


class CoalescingTests(BatchingGatewayMixin):
    def test_oneTurnOneBatch(self) -> None:
        """
        Requests that arrive in one reactor turn share one batch.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(TCP, 8081, 8081, 3600), OTHER)
        self.turn()
        self.nft.succeed()
        self.assertEqual(len(self.batches()), 1)
        self.assertEqual(len(self.replies[CLIENT]) + len(self.replies[OTHER]), 2)

    def test_whileInFlight(self) -> None:
        """
        Requests that arrive while a batch is in flight wait for it, then
        go out together in the next.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.send(mapRequest(TCP, 8081, 8081, 3600), OTHER)
        self.send(mapRequest(UDP, 8082, 8082, 3600), OTHER)
        self.turn()
        self.assertEqual(len(self.nft.runs), 2)  # the table, the first batch
        self.nft.succeed()
        self.assertEqual(len(self.replies[CLIENT]), 1)
        second = self.nft.succeed().stdin
        self.assertIn("tcp . 8081 timeout 3600s", second)
        self.assertIn("udp . 8082 timeout 3600s", second)
        self.assertEqual(len(self.replies[OTHER]), 2)
        self.assertEqual(len(self.batches()), 2)

    def test_retransmissionCollapsed(self) -> None:
        """
        A retransmission of a request still waiting for its batch is not
        run again: one change, one reply, to where the last copy came from.
        """
        packet = mapRequest(TCP, 8080, 8080, 3600)
        first: list[bytes] = []
        last: list[bytes] = []
        self.gateway.answer(packet, (CLIENT, 5350), first.append)
        self.turn()
        self.gateway.answer(packet, (CLIENT, 5351), last.append)
        self.nft.succeed()
        self.turn()
        self.assertEqual((len(first), len(last)), (0, 1))
        self.assertEqual(len(self.batches()), 1)


class FailureTests(BatchingGatewayMixin):
    def test_networkFailure(self) -> None:
        """
        A batch that fails is answered with NAT-PMP's network failure
        (result 3, RFC 6886 s3.5), and the table holds nothing the kernel
        does not: the mapping and its port are gone.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.fail("Error: Could not process rule: Operation not permitted")
        [reply] = self.replies[CLIENT]
        _, result, _, _, external, lifetime = parseMap(reply)
        self.assertEqual((result, external, lifetime), (3, 0, 0))
        self.assertEqual(len(self.gateway.table), 0)
        self.send(mapRequest(TCP, 8080, 8080, 3600), OTHER)
        self.turn()
        self.nft.succeed()
        self.assertEqual(parseMap(self.replies[OTHER][0])[4], 8080)

    def test_outOfResources(self) -> None:
        """
        A kernel without room is answered out of resources: NAT-PMP's 4,
        PCP's NO_RESOURCES (RFC 6887 s7.4).
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.fail("Error: Could not process rule: No space left on device")
        self.assertEqual(parseMap(self.replies[CLIENT][0])[1], 4)
        self.send(mapPacket(9000, client=OTHER), OTHER)
        self.turn()
        self.nft.fail("Error: Could not process rule: Cannot allocate memory")
        response = decodeResponse(self.replies[OTHER][0])
        self.assertEqual(response.resultCode, ResultCode.NO_RESOURCES)

    def test_pcpNetworkFailure(self) -> None:
        """
        Over PCP a failed batch is NETWORK_FAILURE, a short-lived error of
        30 s (RFC 6887 s7.4).
        """
        self.send(mapPacket(9000))
        self.turn()
        self.nft.fail()
        response = decodeResponse(self.replies[CLIENT][0])
        self.assertEqual(response.resultCode, ResultCode.NETWORK_FAILURE)
        self.assertEqual(response.lifetime, 30)

    def test_failedRenewalRestored(self) -> None:
        """
        A renewal whose batch fails leaves the mapping as committed: its
        old lifetime, its port.
        """
        self.send(mapRequest(TCP, 8080, 8080, 600))
        self.turn()
        self.nft.succeed()
        before = self.gateway.table.get(IPv4Address(CLIENT), TCP, 8080)
        self.clock.advance(100)
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.fail()
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 3)
        self.assertEqual(self.gateway.table.get(IPv4Address(CLIENT), TCP, 8080), before)

    def test_failedDeleteKept(self) -> None:
        """
        A deletion whose batch fails keeps the mapping (the kernel still
        forwards it) and says so with an error.
        """
        self.send(mapRequest(TCP, 8080, 8080, 600))
        self.turn()
        self.nft.succeed()
        self.send(mapRequest(TCP, 8080, 0, 0))
        self.turn()
        self.nft.fail()
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 3)
        self.assertIsNotNone(self.gateway.table.get(IPv4Address(CLIENT), TCP, 8080))
        self.assertEqual(self.conntrack.runs, [])

    def test_coalescedFailureIsolated(self) -> None:
        """
        When a batch of several requests fails, each is tried again in a
        batch of its own, so that one bad request does not fail the
        others; requests arriving meanwhile wait their turn; then requests
        are coalesced again.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(TCP, 8081, 8081, 3600), OTHER)
        self.turn()
        self.nft.fail()
        self.assertEqual(len(self.gateway.table), 1)  # the first, tried alone
        self.send(mapRequest(UDP, 5000, 5000, 3600), OTHER)
        alone = self.nft.fail().stdin
        self.assertIn("tcp . 8080", alone)
        self.assertNotIn("8081", alone)
        self.assertEqual(parseMap(self.replies[CLIENT][0])[1], 3)
        second = self.nft.succeed().stdin
        self.assertIn("tcp . 8081", second)
        self.assertNotIn("udp . 5000", second)
        self.assertEqual(len(self.replies[OTHER]), 1)
        self.assertIn("udp . 5000", self.nft.succeed().stdin)
        self.assertEqual([parseMap(r)[1] for r in self.replies[OTHER]], [0, 0])
        self.assertEqual(len(self.gateway.table), 2)
        self.send(mapRequest(TCP, 9000, 9000, 3600))
        self.send(mapRequest(TCP, 9001, 9001, 3600), OTHER)
        self.turn()
        together = self.nft.succeed().stdin
        self.assertIn("tcp . 9000", together)
        self.assertIn("tcp . 9001", together)

    def isolating(self) -> None:
        """
        Have a batch of two requests fail: the gateway is isolating, the
        first tried alone, in flight.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(TCP, 8081, 8081, 3600), OTHER)
        self.turn()
        self.nft.fail()

    def test_addressAnsweredWhileIsolating(self) -> None:
        """
        While isolating, what changes nothing is answered at once: a
        NAT-PMP external address request, a PCP ANNOUNCE.
        """
        self.isolating()
        self.send(b"\x00\x00", "10.77.0.9")
        self.send(announcePacket("10.77.0.9"), "10.77.0.9")
        [address, announce] = self.replies["10.77.0.9"]
        self.assertEqual(address[:4], b"\x00\x80\x00\x00")
        self.assertEqual(decodeResponse(announce).resultCode, ResultCode.SUCCESS)

    def test_queueBounded(self) -> None:
        """
        At most L{DEFAULT_MAX_QUEUED} requests wait behind a failed batch;
        the rest are dropped and counted, in aggregate.
        """
        self.isolating()
        # The failed batch's second request waits already.
        for port in range(DEFAULT_MAX_QUEUED):
            self.send(mapRequest(UDP, 10000 + port, 0, 3600), OTHER)
        self.assertEqual(self.gateway.drops.total, 1)
        [reason] = self.gateway.drops.reasons
        self.assertIn("too many waiting", reason)

    def test_applyRaises(self) -> None:
        """
        A backend whose apply raises fails the batch (network failure), and
        the gateway goes on answering.
        """

        def broken(changes: object) -> object:
            raise RuntimeError("bug")

        self.patch(self.backend, "apply", broken)
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.assertEqual(parseMap(self.replies[CLIENT][0])[1], 3)
        self.send(mapRequest(TCP, 8081, 8081, 3600))
        self.turn()
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 3)

    def test_failedExpirySentAgain(self) -> None:
        """
        The removal of a mapping that expired, in a batch that failed, is
        sent again (its flows then cut), after a pause when no request
        comes, at once with the next request otherwise.
        """
        self.send(mapRequest(TCP, 8080, 8080, 60))
        self.turn()
        self.nft.succeed()
        self.clock.advance(60)
        self.turn()
        self.assertIn("delete element", self.nft.fail().stdin)
        self.turn()
        self.assertIsNone(self.nft.inFlight)
        self.clock.advance(RETRY_DELAY)
        self.assertIn("delete element", self.nft.fail().stdin)
        self.send(mapRequest(UDP, 5000, 5000, 600), OTHER)
        self.turn()
        batch = self.nft.succeed().stdin
        self.assertIn(
            "delete element inet twisted_natpmp forwards { tcp . 8080 }", batch
        )
        self.assertIn("udp . 5000 timeout 600s", batch)
        self.assertEqual(len(self.conntrack.runs), 1)

    def test_restoredButExpiredRemoved(self) -> None:
        """
        A renewal whose batch fails after the mapping's committed lifetime
        has ended puts nothing back, and the mapping's forward is removed.
        """
        self.send(mapRequest(TCP, 8080, 8080, 60))
        self.turn()
        self.nft.succeed()
        self.clock.advance(50)
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.clock.advance(20)
        self.nft.fail()
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 3)
        self.assertEqual(len(self.gateway.table), 0)
        self.clock.advance(RETRY_DELAY)
        self.assertIn(
            "delete element inet twisted_natpmp forwards { tcp . 8080 }",
            self.nft.succeed().stdin,
        )

    def test_openBatchRunAgain(self) -> None:
        """
        When a batch fails, the requests coalesced behind it are run again
        on the table put back, not answered from the state that failed.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        # Another host asks for the same port: it gets the next one...
        self.send(mapRequest(TCP, 8080, 8080, 3600), OTHER)
        self.nft.fail()
        # ... but the first failed, so run again it gets 8080 itself.
        self.assertIn(
            "tcp . 8080 timeout 3600s : 10.77.0.3 . 8080", self.nft.succeed().stdin
        )
        self.assertEqual(parseMap(self.replies[OTHER][0])[4], 8080)

    def test_rateLimitOnce(self) -> None:
        """
        A request run again is not charged to its source's rate limit a
        second time.
        """
        gateway = self.gateway = self.makeGateway(requestRate=1, requestBurst=2)
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(TCP, 8081, 8081, 3600))
        self.turn()
        self.nft.fail()
        self.nft.succeed()
        self.nft.succeed()
        self.assertEqual([parseMap(r)[1] for r in self.replies[CLIENT]], [0, 0])
        self.assertEqual(len(gateway.table), 2)


class LostTableTests(BatchingGatewayMixin):
    def test_firewallReload(self) -> None:
        """
        When a batch fails because our table has gone (C{flush ruleset} on
        a firewall reload), the table is made afresh, every mapping is
        forgotten with a new epoch, announced (as after a restart, RFC 6886
        s3.6: clients map again), and the failed request runs again on the
        fresh table, in one warning.
        """
        lost: list[None] = []
        self.gateway.stateLost = lambda: lost.append(None)
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.succeed()
        self.send(mapRequest(UDP, 5000, 5000, 3600), OTHER)
        self.clock.advance(100)
        self.nft.fail("Error: Could not process rule: No such file or directory")
        listed = self.nft.fail("Error: No such file or directory")
        self.assertEqual(listed.arguments, ("list", "table", "inet", "twisted_natpmp"))
        self.assertEqual(lost, [None])
        self.assertIn("add table inet twisted_natpmp", self.nft.succeed().stdin)
        self.assertIn("udp . 5000", self.nft.succeed().stdin)
        reply = self.replies[OTHER][0]
        self.assertEqual(parseMap(reply)[1], 0)
        self.assertLess(epochOf(reply), 100)
        self.assertIsNone(self.gateway.table.get(IPv4Address(CLIENT), TCP, 8080))
        [warning] = [e for e in self.logged if "lost every forward" in e["log_format"]]
        self.assertEqual(warning["count"], 2)  # the one run again too

    def test_otherMissingThing(self) -> None:
        """
        A batch failing with "No such file or directory" while our table
        is there is an ordinary failure.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.fail("Error: Could not process rule: No such file or directory")
        self.nft.succeed(b"table inet twisted_natpmp {}")
        self.assertEqual(parseMap(self.replies[CLIENT][0])[1], 3)
        self.assertIsNone(self.nft.inFlight)


class TimeoutTests(BatchingGatewayMixin):
    def test_timedOutBatchCleared(self) -> None:
        """
        nft killed for taking too long may have committed: before anything
        else, a batch removes the forwards of every mapping the one that
        timed out changed; the table holds none of them (not even as
        committed before), and its requests run again from there, each in
        a batch of its own.
        """
        self.send(mapRequest(TCP, 8080, 8080, 600))
        self.turn()
        self.nft.succeed()
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(UDP, 5000, 5000, 600), OTHER)
        self.turn()
        self.nft.timeOut()
        self.assertEqual(self.replies[OTHER], [])
        cleanup = self.nft.succeed().stdin
        self.assertIn("forwards { tcp . 8080 }", cleanup)
        self.assertIn("forwards { udp . 5000 }", cleanup)
        self.assertNotIn("timeout 3600s", cleanup)
        # Run again on a table without it: a new mapping, a bare add.
        again = self.nft.succeed().stdin
        self.assertEqual(
            again,
            "add element inet twisted_natpmp forwards"
            " { tcp . 8080 timeout 3600s : 10.77.0.2 . 8080 }\n",
        )
        self.assertEqual(parseMap(self.replies[CLIENT][1])[1], 0)
        self.assertIn("udp . 5000 timeout 600s", self.nft.succeed().stdin)

    def test_cleanupFailsStartsAfresh(self) -> None:
        """
        When the clean-up after a timeout fails too, the kernel's state is
        not known: the table is made afresh, as after a firewall reload.
        """
        self.send(mapRequest(TCP, 8080, 8080, 600))
        self.turn()
        self.nft.timeOut()
        self.nft.fail()
        self.assertIn("add table inet twisted_natpmp", self.nft.succeed().stdin)


class RobustnessTests(BatchingGatewayMixin):
    def test_bugDoesNotStop(self) -> None:
        """
        A request whose answer raises is logged and dropped; while
        isolating, the requests behind it are still answered.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.send(mapRequest(TCP, 8081, 8081, 3600), OTHER)
        self.turn()
        respond = self.gateway.dispatcher.respond

        def broken(packet: bytes, client: object) -> bytes | None:
            if packet[4:6] == (8080).to_bytes(2, "big"):
                raise RuntimeError("bug")
            return respond(packet, client)  # type: ignore[arg-type]

        batched = self.gateway._batched
        assert batched is not None
        committer = batched.committer
        assert committer is not None
        self.patch(committer, "_respond", broken)
        self.nft.fail()
        self.nft.succeed()
        self.assertEqual(self.replies[CLIENT], [])
        self.assertEqual(parseMap(self.replies[OTHER][0])[1], 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # Done isolating: requests are coalesced again.
        self.send(mapRequest(UDP, 5000, 5000, 3600), OTHER)
        self.send(mapRequest(UDP, 5001, 5001, 3600), OTHER)
        self.turn()
        together = self.nft.succeed().stdin
        self.assertIn("udp . 5000", together)
        self.assertIn("udp . 5001", together)


class StopTests(BatchingGatewayMixin):
    def test_stopDeletesTable(self) -> None:
        """
        Stopping deletes the table (whether or not it is there) and looks
        for the flows of every mapping still held; pending requests are not
        answered.
        """
        self.send(mapRequest(TCP, 8080, 8080, 3600))
        self.turn()
        self.nft.succeed()
        self.send(mapRequest(TCP, 8081, 8081, 3600))
        self.turn()
        stopped = self.gateway.stop()
        self.nft.succeed()
        self.assertEqual(len(self.replies[CLIENT]), 1)
        self.assertEqual(
            self.nft.succeed().stdin,
            "add table inet twisted_natpmp\ndelete table inet twisted_natpmp\n",
        )
        self.successResultOf(stopped)
        [listing] = self.conntrack.runs
        self.assertEqual(listing.arguments, ("-L", "-f", "ipv4", "--dst-nat"))


class FilterTests(BatchingGatewayMixin):
    def test_filterCommitted(self) -> None:
        """
        A PCP MAP with FILTER (RFC 6887 s13.3) is answered once its
        mapping and its filters have committed, in one batch.
        """
        option = FilterOption(96 + 24, 0, IPv4Address("198.51.100.0"))
        self.send(mapPacket(9000, external=9000, options=(option,)))
        self.turn()
        batch = self.nft.succeed().stdin
        self.assertIn("add element inet twisted_natpmp filtered { tcp . 9000", batch)
        self.assertIn("tcp . 9000 . 198.51.100.0/24 . 0-65535", batch)
        response = decodeResponse(self.replies[CLIENT][0])
        self.assertEqual(response.resultCode, ResultCode.SUCCESS)

    def test_ipv6PeersRefused(self) -> None:
        """
        IPv6 peers cannot be let through an IPv4 forward: UNSUPP_OPTION.
        """
        option = FilterOption(64, 0, IPv6Address("2001:db8::"))
        self.send(mapPacket(9000, options=(option,)))
        self.turn()
        self.nft.succeed()
        response = decodeResponse(self.replies[CLIENT][0])
        self.assertEqual(response.resultCode, ResultCode.UNSUPP_OPTION)
