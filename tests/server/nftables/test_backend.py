"""
Tests for L{twisted_natpmp.server.backends.nftables.backend}: every batch
the backend sends, through a recording nft.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_natpmp._types import Transport
from twisted_natpmp.errors import NetworkFailureError, OutOfResourcesError
from twisted_natpmp.server._entries import GatewayMapping
from twisted_natpmp.server.backends._batching import (
    ChangeKind,
    CommitFailed,
    ForwardChange,
    IBatchingBackend,
)
from twisted_natpmp.server.backends.nftables import (
    BackendState,
    ForwardChain,
    NftablesBackend,
    ProcessFailed,
    Ruleset,
)
from twisted_natpmp.server.backends.nftables import _flowcut as flowcutModule
from twisted_natpmp.server.backends.nftables import _stale as staleModule
from twisted_natpmp.server.backends.nftables import backend as backendModule
from twisted_natpmp.server.backends.nftables.backend import errorFor
from twisted_natpmp.server.backends.nftables.testing import RecordingRunner

MAPPING = GatewayMapping(IPv4Address("10.77.0.2"), Transport.TCP, 22, 2222, 60, 0)
CHAIN = ForwardChain("inet", "filter", "forward")
# conntrack -L: a flow through MAPPING, one to the same port from a LAN
# host's own connection, and one through another mapping (udp 5353).
LISTING = (
    b"tcp      6 99 ESTABLISHED src=198.51.100.9 dst=192.0.2.1 sport=40000"
    b" dport=2222 src=10.77.0.2 dst=198.51.100.9 sport=22 dport=40000"
    b" [ASSURED] mark=0 use=1\n"
    b"tcp      6 99 ESTABLISHED src=10.77.0.2 dst=198.51.100.9 sport=22"
    b" dport=2222 src=198.51.100.9 dst=192.0.2.1 sport=2222 dport=22"
    b" mark=0 use=1\n"
    b"udp      17 25 src=198.51.100.9 dst=192.0.2.1 sport=5000 dport=5353"
    b" src=10.77.0.3 dst=198.51.100.9 sport=53 dport=5000 mark=0 use=1\n"
)


def listing(*handles: int) -> bytes:
    rules = [{"rule": {"handle": h, "comment": "twisted_natpmp"}} for h in handles]
    return json.dumps({"nftables": [{"rule": {"handle": 1}}, *rules]}).encode()


class BackendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.nft = RecordingRunner("nft")
        self.conntrack = RecordingRunner("conntrack")
        self.backend = NftablesBackend(Ruleset("wan0"), self.nft, self.conntrack)

    def running(self) -> None:
        """
        Start the backend: its table made.
        """
        self.backend.start()
        self.nft.succeed()

    def test_interface(self) -> None:
        """
        L{NftablesBackend} provides L{IBatchingBackend}.
        """
        self.assertTrue(verifyObject(IBatchingBackend, self.backend))

    def test_startAfresh(self) -> None:
        """
        Starting makes the table afresh through C{nft -f -} (RFC 6886 s3.6:
        a restarted gateway has no mappings); batches wait behind it.
        """
        started = self.backend.start()
        self.assertIs(self.backend.state, BackendState.STARTING)
        applied = self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        [run] = self.nft.runs
        self.assertEqual(run.arguments, ("-f", "-"))
        self.assertEqual(run.stdin, Ruleset("wan0").create())
        self.nft.succeed()
        self.successResultOf(started)
        self.assertIs(self.backend.state, BackendState.RUNNING)
        self.assertIn(
            "tcp . 2222 timeout 60s : 10.77.0.2 . 22", self.nft.succeed().stdin
        )
        self.successResultOf(applied)
        self.assertEqual(self.conntrack.runs, [])

    def test_startFails(self) -> None:
        """
        A table that cannot be made fails the start.
        """
        started = self.backend.start()
        self.nft.fail("Error: Could not process rule: Operation not permitted")
        self.failureResultOf(started, ProcessFailed)
        self.assertIs(self.backend.state, BackendState.FAILED)

    def test_restart(self) -> None:
        """
        Each start makes the table afresh, with nothing of the run before.
        """
        self.backend.start()
        self.nft.succeed()
        self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        self.nft.succeed()
        self.backend.stop([MAPPING])
        self.nft.succeed()
        self.backend.start()
        self.assertEqual(self.nft.succeed().stdin, Ruleset("wan0").create())

    def test_removeEndsFlows(self) -> None:
        """
        Once a batch that removes mappings commits, it is done (its requests
        answered); then the flows a DNAT made are listed once, and those
        through the mappings, and only those, are deleted by their exact
        tuple (RFC 6886 s3.4: connections through a mapping that has gone
        SHOULD end).
        """
        self.running()
        applied = self.backend.apply([ForwardChange(ChangeKind.REMOVE, MAPPING)])
        self.assertEqual(self.conntrack.runs, [])
        self.nft.succeed()
        self.successResultOf(applied)
        listed = self.conntrack.succeed(LISTING)
        self.assertEqual(listed.arguments, ("-L", "-f", "ipv4", "--dst-nat"))
        deleted = self.conntrack.succeed()
        self.assertEqual(deleted.arguments, ("-R", "/dev/stdin"))
        self.assertEqual(
            deleted.stdin,
            "-D -p tcp -s 198.51.100.9 -d 192.0.2.1 --sport 40000 --dport 2222\n",
        )
        self.assertIsNone(self.conntrack.inFlight)

    def test_batchesNotHeldBehindFlows(self) -> None:
        """
        While the flows of a removal are being listed, the next batch is
        sent and done.
        """
        self.running()
        self.backend.apply([ForwardChange(ChangeKind.REMOVE, MAPPING)])
        self.nft.succeed()
        other = GatewayMapping(IPv4Address("10.77.0.3"), Transport.UDP, 53, 5353, 60, 0)
        applied = self.backend.apply([ForwardChange(ChangeKind.ADD, other)])
        self.assertIn("udp . 5353", self.nft.succeed().stdin)
        self.successResultOf(applied)
        self.assertIsNotNone(self.conntrack.inFlight)

    def test_forwardedAgainNotCut(self) -> None:
        """
        A forward removed and made again before its flows were listed keeps
        them: they go through the new mapping.
        """
        self.running()
        other = GatewayMapping(IPv4Address("10.77.0.3"), Transport.UDP, 53, 5353, 60, 0)
        self.backend.apply([ForwardChange(ChangeKind.REMOVE, other)])
        self.nft.succeed()
        for mapping in (MAPPING, other):
            self.backend.apply([ForwardChange(ChangeKind.REMOVE, mapping)])
            self.nft.succeed()
        self.backend.apply([ForwardChange(ChangeKind.ADD, other)])
        self.nft.succeed()
        self.conntrack.succeed(b"")
        self.conntrack.succeed(LISTING)
        deleted = self.conntrack.succeed()
        self.assertNotIn("--dport 5353", deleted.stdin)
        self.assertIn("--dport 2222", deleted.stdin)

    def test_noFlowsNoDeletion(self) -> None:
        """
        When no flow goes through the removed mappings, nothing is deleted:
        one listing is all it costs.
        """
        self.running()
        self.backend.apply([ForwardChange(ChangeKind.REMOVE, MAPPING)])
        self.nft.succeed()
        self.conntrack.succeed(b"")
        self.assertEqual(len(self.conntrack.runs), 1)
        self.assertIsNone(self.conntrack.inFlight)

    def test_flowsCoalesced(self) -> None:
        """
        Removals committed while conntrack runs share the next listing.
        """
        self.running()
        other = GatewayMapping(IPv4Address("10.77.0.3"), Transport.UDP, 53, 5353, 60, 0)
        for mapping in (MAPPING, other, other):
            self.backend.apply([ForwardChange(ChangeKind.REMOVE, mapping)])
            self.nft.succeed()
        self.assertEqual(len(self.conntrack.runs), 1)
        self.conntrack.succeed(b"")
        self.conntrack.succeed(LISTING)
        [_, _, deleted] = self.conntrack.runs
        self.assertIn("--sport 5000 --dport 5353", deleted.stdin)
        self.conntrack.succeed()
        self.assertIsNone(self.conntrack.inFlight)

    def test_conntrackFailureLogged(self) -> None:
        """
        Flows that cannot be ended do not fail the batch (it has committed):
        the failure is logged as a warning, with how many mappings it was
        for and conntrack's error.
        """
        logged: list[dict[str, Any]] = []
        logger = Logger(observer=logged.append)  # type: ignore[arg-type]
        self.patch(backendModule, "log", logger)
        self.patch(flowcutModule, "log", logger)
        self.running()
        applied = self.backend.apply([ForwardChange(ChangeKind.REMOVE, MAPPING)])
        self.nft.succeed()
        self.conntrack.fail("conntrack: Operation not permitted")
        self.successResultOf(applied)
        [warning] = [e for e in logged if e["log_level"] is LogLevel.warn]
        self.assertEqual(warning["count"], 1)
        self.assertIn("Operation not permitted", warning["error"])

    def test_failureMeaning(self) -> None:
        """
        A failed batch fails with L{CommitFailed}: out of resources when the
        kernel had no room, a network failure otherwise.
        """
        self.running()
        applied = self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        self.nft.fail("Error: Could not process rule: File exists")
        failed = self.failureResultOf(applied, CommitFailed).value
        self.assertIsInstance(failed.error, NetworkFailureError)
        self.assertIn("File exists", failed.detail)
        full = errorFor(ProcessFailed("nft", 1, "Error: No space left on device"))
        self.assertIsInstance(full.error, OutOfResourcesError)
        self.assertIsInstance(errorFor(RuntimeError("x")).error, NetworkFailureError)

    def test_stop(self) -> None:
        """
        Stopping deletes the table and ends the flows of what was held.
        """
        stopped = self.backend.stop([MAPPING])
        self.assertEqual(
            self.nft.succeed().stdin,
            "add table inet twisted_natpmp\ndelete table inet twisted_natpmp\n",
        )
        self.assertNoResult(stopped)
        self.conntrack.succeed(LISTING)
        self.assertNoResult(stopped)
        self.conntrack.succeed()
        self.successResultOf(stopped)

    def test_stopFailsQuietly(self) -> None:
        """
        A table that cannot be deleted is logged; stopping goes on.
        """
        stopped = self.backend.stop([])
        self.nft.fail()
        self.successResultOf(stopped)


EXTERNAL = IPv4Address("192.0.2.1")
# conntrack -L at start: a DNATed flow to the external address in the
# range (cut), one to a port below the range, one to another local
# address, and one not DNATed (its replies come from where it went).
STALE = (
    b"tcp      6 431999 ESTABLISHED src=198.51.100.9 dst=192.0.2.1 sport=40000"
    b" dport=18980 src=10.77.0.2 dst=198.51.100.9 sport=8080 dport=40000"
    b" [ASSURED] mark=0 use=1\n"
    b"udp      17 170 src=198.51.100.9 dst=192.0.2.1 sport=5000 dport=18980"
    b" src=10.77.0.2 dst=198.51.100.9 sport=8080 dport=5000 [ASSURED]"
    b" mark=0 use=1\n"
    b"tcp      6 431999 ESTABLISHED src=198.51.100.9 dst=192.0.2.1 sport=40001"
    b" dport=80 src=10.77.0.5 dst=198.51.100.9 sport=80 dport=40001"
    b" [ASSURED] mark=0 use=1\n"
    b"tcp      6 431999 ESTABLISHED src=198.51.100.9 dst=192.0.2.7 sport=40002"
    b" dport=18980 src=10.77.0.2 dst=198.51.100.9 sport=8080 dport=40002"
    b" [ASSURED] mark=0 use=1\n"
    b"udp      17 170 src=198.51.100.9 dst=192.0.2.1 sport=5001 dport=18981"
    b" src=192.0.2.1 dst=198.51.100.9 sport=18981 dport=5001 mark=0 use=1\n"
)


class StartCutTests(SynchronousTestCase):
    """
    At start, once the table is made afresh, the flows a DNAT made to the
    external address on the gateway's ports (an earlier run's, killed)
    are cut.
    """

    def setUp(self) -> None:
        self.nft = RecordingRunner("nft")
        self.conntrack = RecordingRunner("conntrack")
        self.addresses: frozenset[IPv4Address] = frozenset([EXTERNAL])
        self.backend = self.withRange(1024, 65535)
        self.logged: list[dict[str, Any]] = []
        logger = Logger(observer=self.logged.append)  # type: ignore[arg-type]
        self.patch(backendModule, "log", logger)
        self.patch(staleModule, "log", logger)

    def withRange(self, low: int, high: int) -> NftablesBackend:
        """
        A backend whose gateway grants ports C{low} to C{high}, on
        L{addresses}.
        """
        return NftablesBackend(
            Ruleset("wan0"),
            self.nft,
            self.conntrack,
            portRange=(low, high),
            externalAddresses=lambda: self.addresses,
        )

    def messages(self, level: LogLevel) -> list[dict[str, Any]]:
        return [e for e in self.logged if e["log_level"] is level]

    def test_cutsStaleFlows(self) -> None:
        """
        Once the table is made, the flows a DNAT made are listed; the start
        fires and batches go on once the listing is in; those to the
        external address on a port of the range, TCP and UDP, are deleted
        by their exact tuple, and nothing else; one log line gives the
        count.
        """
        started = self.backend.start()
        self.nft.succeed()
        self.assertNoResult(started)
        self.assertIs(self.backend.state, BackendState.STARTING)
        listed = self.conntrack.succeed(STALE)
        self.assertEqual(listed.arguments, ("-L", "-f", "ipv4", "--dst-nat"))
        self.successResultOf(started)
        self.assertIs(self.backend.state, BackendState.RUNNING)
        deleting = self.conntrack.inFlight
        assert deleting is not None
        self.assertEqual(deleting.arguments, ("-R", "/dev/stdin"))
        self.assertEqual(
            deleting.stdin,
            "-D -p tcp -s 198.51.100.9 -d 192.0.2.1 --sport 40000 --dport 18980\n"
            "-D -p udp -s 198.51.100.9 -d 192.0.2.1 --sport 5000 --dport 18980\n",
        )
        self.assertEqual(
            [e["count"] for e in self.logged if "count" in e], [], "before the cut"
        )
        self.conntrack.succeed()
        [cut] = [e for e in self.logged if "count" in e]
        self.assertEqual((cut["count"], cut["log_level"]), (2, LogLevel.info))
        self.assertIsNone(self.conntrack.inFlight)

    def test_onlyTheRange(self) -> None:
        """
        Flows to ports outside the gateway's range are not cut.
        """
        self.backend = self.withRange(18981, 20000)
        self.backend.start()
        self.nft.succeed()
        self.conntrack.succeed(STALE)
        self.assertEqual(len(self.conntrack.runs), 1)
        [cut] = [e for e in self.logged if "count" in e]
        self.assertEqual(cut["count"], 0)

    def test_otherAddress(self) -> None:
        """
        The addresses are asked for at each start: flows to one that is
        not the external address are not cut.
        """
        self.addresses = frozenset([IPv4Address("192.0.2.7")])
        self.backend.start()
        self.nft.succeed()
        self.conntrack.succeed(STALE)
        self.assertEqual(
            self.conntrack.succeed().stdin,
            "-D -p tcp -s 198.51.100.9 -d 192.0.2.7 --sport 40002 --dport 18980\n",
        )

    def test_batchesNotHeldBehindDeletion(self) -> None:
        """
        A batch applied while starting is sent once the listing is in,
        while the deletions still run, and is done then: its new flows
        were not in the listing.
        """
        self.backend.start()
        applied = self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        self.nft.succeed()
        self.assertIsNone(self.nft.inFlight)
        self.conntrack.succeed(STALE)
        self.assertIn("tcp . 2222", self.nft.succeed().stdin)
        self.successResultOf(applied)
        self.assertEqual(self.conntrack.inFlight, self.conntrack.runs[-1])

    def test_listingFails(self) -> None:
        """
        A listing that fails is logged as a warning; the start still
        succeeds and nothing is deleted.
        """
        started = self.backend.start()
        self.nft.succeed()
        self.conntrack.fail("conntrack v1.4.7: Operation not permitted")
        self.successResultOf(started)
        self.assertIs(self.backend.state, BackendState.RUNNING)
        [warning] = self.messages(LogLevel.warn)
        self.assertIn("Operation not permitted", warning["error"])
        self.assertEqual(len(self.conntrack.runs), 1)

    def test_deletionFails(self) -> None:
        """
        Deletions that fail are logged as a warning with their count.
        """
        started = self.backend.start()
        self.nft.succeed()
        self.conntrack.succeed(STALE)
        self.conntrack.timeOut()
        self.successResultOf(started)
        [warning] = self.messages(LogLevel.warn)
        self.assertEqual(warning["count"], 2)
        self.assertIn("no answer", warning["error"])

    def test_noExternalAddress(self) -> None:
        """
        With no external address nothing is listed or cut, and a log line
        says so.
        """
        self.addresses = frozenset()
        started = self.backend.start()
        self.nft.succeed()
        self.successResultOf(started)
        self.assertEqual(self.conntrack.runs, [])
        [info] = [e for e in self.messages(LogLevel.info) if "low" in e]
        self.assertIn("no external address", info["log_format"])

    def test_noRangeNoCut(self) -> None:
        """
        Without a port range (the default), the start lists no flows.
        """
        self.backend = NftablesBackend(Ruleset("wan0"), self.nft, self.conntrack)
        started = self.backend.start()
        self.nft.succeed()
        self.successResultOf(started)
        self.assertEqual(self.conntrack.runs, [])

    def test_stoppedWhileListing(self) -> None:
        """
        A backend stopped while the listing runs stays stopped: the batches
        that waited fail.
        """
        self.backend.start()
        applied = self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        self.nft.succeed()
        self.backend.stop([])
        self.conntrack.succeed(b"")
        self.assertIs(self.backend.state, BackendState.STOPPED)
        self.failureResultOf(applied, CommitFailed)


class ForwardChainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.nft = RecordingRunner("nft")
        self.backend = NftablesBackend(
            Ruleset("wan0", forwardChain=CHAIN), self.nft, None
        )

    def test_startRemovesStaleRules(self) -> None:
        """
        Starting lists the host's chain first, and deletes the rules an
        earlier run (killed, say) left there before adding ours.
        """
        started = self.backend.start()
        listed = self.nft.succeed(listing(4, 6))
        self.assertEqual(listed.arguments[:4], ("-j", "-a", "list", "chain"))
        batch = self.nft.succeed().stdin
        self.assertIn("delete rule inet filter forward handle 4\n", batch)
        self.assertIn("delete rule inet filter forward handle 6\n", batch)
        self.assertIn("add rule inet filter forward", batch)
        self.successResultOf(started)

    def test_batchWaitsForTable(self) -> None:
        """
        A batch applied while the host's chain is being listed waits for
        the table to be made: it is not sent between the two runs.
        """
        started = self.backend.start()
        applied = self.backend.apply([ForwardChange(ChangeKind.SET, MAPPING)])
        self.nft.succeed(listing())
        self.assertIn("add table inet twisted_natpmp", self.nft.succeed().stdin)
        self.successResultOf(started)
        self.assertNoResult(applied)
        batch = self.nft.succeed().stdin
        self.assertIn("add element inet twisted_natpmp forwards", batch)
        self.successResultOf(applied)

    def test_failedOrStoppedFailsBatches(self) -> None:
        """
        Before a start, after a failed one and after a stop, every batch
        fails at once, with nothing sent.
        """
        change = [ForwardChange(ChangeKind.SET, MAPPING)]
        self.failureResultOf(self.backend.apply(change), CommitFailed)
        started = self.backend.start()
        waiting = self.backend.apply(change)
        self.nft.fail("Error: No such file or directory")
        self.failureResultOf(started, ProcessFailed)
        failed = self.failureResultOf(waiting, CommitFailed).value
        self.assertIsInstance(failed.error, NetworkFailureError)
        self.failureResultOf(self.backend.apply(change), CommitFailed)
        self.assertEqual(len(self.nft.runs), 1)

    def test_startWithoutHostChain(self) -> None:
        """
        A host chain that does not exist fails the start.
        """
        started = self.backend.start()
        self.nft.fail("Error: No such file or directory")
        self.failureResultOf(started, ProcessFailed)

    def test_stopRemovesOurRule(self) -> None:
        """
        Stopping removes our rule and set from the host's table, and our
        table; without conntrack, flows are left alone.
        """
        stopped = self.backend.stop([MAPPING])
        self.nft.succeed(listing(12))
        batch = self.nft.succeed().stdin
        self.assertTrue(batch.startswith("delete rule inet filter forward handle 12\n"))
        self.assertIn("delete set inet filter twisted_natpmp_forwards\n", batch)
        self.successResultOf(stopped)

    def test_stopWithoutHostChain(self) -> None:
        """
        When the host's chain cannot be listed any more, our table is still
        deleted.
        """
        stopped = self.backend.stop([])
        self.nft.fail("Error: No such file or directory")
        self.assertEqual(
            self.nft.succeed().stdin,
            "add table inet twisted_natpmp\ndelete table inet twisted_natpmp\n",
        )
        self.successResultOf(stopped)
