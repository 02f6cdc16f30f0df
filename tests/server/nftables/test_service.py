"""
Tests for L{twisted_natpmp.server.backends.nftables._address} and
L{twisted_natpmp.server.backends.nftables._service}: the external
interface's address followed, and the router's own ports kept out.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.server.backends.nftables import (
    NftablesBackend,
    ProcessFailed,
    Ruleset,
    _address,
)
from twisted_natpmp.server.backends.nftables._address import (
    AddressWatcher,
    interfaceAddress,
)
from twisted_natpmp.server.backends.nftables._service import (
    CHECK_EVERY,
    ExternalInterfaceService,
)
from twisted_natpmp.server.backends.nftables.testing import RecordingRunner

from .._helpers import CLIENT, TCP, GatewayTestsMixin, epochOf, mapRequest, parseMap

FIRST = IPv4Address("192.0.2.1")
SECOND = IPv4Address("198.51.100.7")


class AddressWatcherTests(SynchronousTestCase):
    def test_changes(self) -> None:
        """
        The first reading is reported, then only changes, each poll
        interval.
        """
        clock = Clock()
        readings = [FIRST, FIRST, None, SECOND]
        seen: list[IPv4Address | None] = []
        polled: list[IPv4Address | None] = []
        watcher = AddressWatcher(
            clock,
            "wan0",
            seen.append,
            read=lambda name: readings.pop(0),
            interval=2,
            polled=polled.append,
        )
        watcher.start()
        clock.advance(2)
        self.assertEqual(seen, [FIRST])
        clock.advance(2)
        clock.advance(2)
        self.assertEqual(seen, [FIRST, None, SECOND])
        self.assertEqual(watcher.address, SECOND)
        self.assertEqual(len(polled), 4)
        watcher.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_readFailureLogged(self) -> None:
        """
        A reading that raises is skipped; the watcher goes on.
        """
        clock = Clock()
        seen: list[IPv4Address | None] = []
        logged: list[dict[str, Any]] = []
        self.patch(_address, "log", Logger(observer=logged.append))  # type: ignore[arg-type]

        def read(name: str) -> IPv4Address | None:
            raise OSError("gone")

        watcher = AddressWatcher(clock, "wan0", seen.append, read=read)
        watcher.start()
        self.assertEqual(seen, [])
        self.assertEqual(len([e for e in logged if "log_failure" in e]), 1)
        watcher.stop()

    def test_noSuchInterface(self) -> None:
        """
        An interface that does not exist has no address.
        """
        self.assertIsNone(interfaceAddress("t16-no-such-if"))


class ExternalInterfaceTests(GatewayTestsMixin, SynchronousTestCase):
    def watch(self, readings: list[IPv4Address | None], **kwargs: object) -> None:
        self.readings = readings
        self.watching = ExternalInterfaceService(
            self.clock,
            self.service,
            "wan0",
            read=lambda name: self.readings[0],
            interval=2,
            **kwargs,  # type: ignore[arg-type]
        )
        self.watching.startService()
        self.addCleanup(self.watching.stopService)

    def test_followsAddress(self) -> None:
        """
        A new address on the interface is announced (RFC 6886 s3.2.1) and,
        with PCP, restarts the epoch (RFC 6887 s8.5); while the interface
        has none, mapping requests get result 3 (RFC 6886 s3.5).
        """
        self.startGateway(externalAddress=FIRST, pcp=True)
        self.watch([FIRST], ports=lambda address: frozenset())
        self.clock.advance(100)
        before = len(self.announcements())
        self.readings[0] = None
        self.clock.advance(2)
        reply = self.ask(mapRequest(TCP, 8080, 8080, 600))
        assert reply is not None
        self.assertEqual(parseMap(reply)[1], 3)
        self.readings[0] = SECOND
        self.clock.advance(2)
        self.assertEqual(self.service.externalAddress, SECOND)
        natpmp = [a for a in self.announcements()[before:] if a[:1] == b"\x00"]
        self.assertTrue(natpmp)
        self.assertEqual(natpmp[-1][8:12], SECOND.packed)
        reply = self.ask(mapRequest(TCP, 8080, 8080, 600))
        assert reply is not None
        self.assertEqual(parseMap(reply)[1], 0)
        self.assertLess(epochOf(reply), 5)

    def test_fixedAddress(self) -> None:
        """
        With a fixed external address the interface's does not replace it,
        but the router's own ports on it are still kept out of the grants.
        """
        self.startGateway(externalAddress=FIRST)
        asked: list[IPv4Address | None] = []

        def ports(address: IPv4Address | None) -> frozenset[int]:
            asked.append(address)
            return frozenset({8080})

        self.watch([SECOND], fixed=FIRST, ports=ports)
        self.assertEqual(self.service.externalAddress, FIRST)
        self.assertEqual(asked, [FIRST])
        reply = self.ask(mapRequest(TCP, 8080, 8080, 600))
        assert reply is not None
        self.assertNotEqual(parseMap(reply)[4], 8080)


class RestartTests(GatewayTestsMixin, SynchronousTestCase):
    def test_restartAfresh(self) -> None:
        """
        Each start of the service makes the table afresh and begins a new
        epoch (RFC 6886 s3.6: a gateway that lost its state restarts the
        count, and its clients map again); stopping waits for the table
        to be deleted.
        """
        nft = RecordingRunner("nft")
        backend = NftablesBackend(Ruleset("wan0"), nft, None)
        service = self.startGateway(backend=backend)
        self.assertNoResult(service.started)
        nft.succeed()
        self.successResultOf(service.started)
        self.clock.advance(1000)
        request = mapRequest(TCP, 8080, 8080, 600)
        service.gateway.answer(request, (CLIENT, 1), lambda reply: None)  # type: ignore[union-attr]
        self.clock.advance(0)
        nft.succeed()
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertIn("delete table inet twisted_natpmp", nft.succeed().stdin)
        self.successResultOf(stopped)
        service.startService()
        self.assertEqual(nft.succeed().stdin, Ruleset("wan0").create())
        reply = self.ask(b"\x00\x00")
        assert reply is not None
        self.assertEqual(epochOf(reply), 0)
        self.assertEqual(len(self.table()), 0)

    def test_tableGoneFound(self) -> None:
        """
        Every few polls of the interface, the gateway looks for its table;
        found gone (a firewall reload), it is made afresh and the new epoch
        announced, with no request needed.
        """
        nft = RecordingRunner("nft")
        backend = NftablesBackend(Ruleset("wan0"), nft, None)
        service = self.startGateway(backend=backend, externalAddress=FIRST)
        nft.succeed()
        watching = ExternalInterfaceService(
            self.clock,
            service,
            "wan0",
            read=lambda name: FIRST,
            ports=lambda address: frozenset(),
            interval=2,
        )
        watching.startService()
        self.addCleanup(watching.stopService)
        self.clock.pump([2] * CHECK_EVERY)
        self.assertEqual(
            nft.succeed(b"table inet twisted_natpmp {}").arguments,
            ("list", "table", "inet", "twisted_natpmp"),
        )
        self.clock.pump([2] * 50)
        before = len(self.announcements())
        self.clock.pump([2] * CHECK_EVERY)
        nft.fail("Error: No such file or directory")
        self.assertEqual(nft.succeed().stdin, Ruleset("wan0").create())
        self.assertGreater(len(self.announcements()), before)
        reply = self.ask(b"\x00\x00")
        assert reply is not None
        self.assertEqual(epochOf(reply), 0)


class CannotStartTests(SynchronousTestCase):
    def test_oneLineAndStop(self) -> None:
        """
        A backend that cannot start (no nft, no root) is said in one line,
        and the command stops.
        """
        import twisted.logger
        from twisted.internet import reactor
        from twisted.python.failure import Failure

        from twisted_natpmp import _gatewaytap

        logged: list[dict[str, Any]] = []
        stops: list[bool] = []
        self.patch(reactor, "stop", lambda: stops.append(True))
        self.patch(
            twisted.logger,
            "Logger",
            lambda: Logger(observer=logged.append),  # type: ignore[arg-type]
        )
        failure = Failure(ProcessFailed("nft", 1, "Error: Operation not permitted"))
        _gatewaytap._cannotStart(failure)
        self.assertEqual(stops, [True])
        [event] = logged
        self.assertEqual(event["error"], "nft exited 1: Error: Operation not permitted")
