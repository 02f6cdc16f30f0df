"""
Tests for L{twisted_natpmp.service.forwarded} and its keeper: a VPN
gateway's forwarded port kept alive on a L{Clock}, over the real NAT-PMP
client and the in-memory UDP network, against a scripted gateway that
answers as ProtonVPN's does (PROTOCOL.md Part E1).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    MapRequest,
    Protocol,
)
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.service._forwardedkeeper import (
    MIN_ROUND_INTERVAL,
    NOT_AUTHORIZED_WAIT,
    ForwardedPortKeeper,
    KeeperState,
)
from twisted_natpmp.service.forwarded import ForwardedPortService
from twisted_natpmp.testing import ScriptedVPNGateway
from twisted_natpmp.testing._gateway import EXTERNAL, GATEWAY, HOST
from twisted_natpmp.testing._udp import HostReactor, MemoryUDPNetwork

from ._processes import ProcessRecorder
from .test_service import RecordingObserver


class ProcessHost(HostReactor):
    """
    A host of the in-memory network that also records spawned processes.
    """

    def __init__(self, network: MemoryUDPNetwork, address: str) -> None:
        super().__init__(network, address)
        self.processes = ProcessRecorder()

    def spawnProcess(self, *args: Any, **kwargs: Any) -> Any:
        return self.processes.spawnProcess(*args, **kwargs)


class ForwardedServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = ScriptedVPNGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.host = ProcessHost(self.network, HOST)
        self.portFile = Path(self.mktemp())
        self.portFile.parent.mkdir(parents=True, exist_ok=True)
        self.events = self.enterContext(capturedLogs())  # type: ignore[attr-defined]
        self.observer = RecordingObserver()

    def start(self, **kwargs: Any) -> ForwardedPortService:
        service = ForwardedPortService(
            self.host,
            GATEWAY,
            portFile=self.portFile,
            onChange="echo $NATPMP_PUBLIC_PORT",
            onChangeTimeout=10,
            **{"findLocalAddress": lambda gateway: IPv4Address(HOST), **kwargs},
        )
        service.addObserver(self.observer)
        service.startService()
        self.addCleanup(service.stopService)
        self.advance(0)
        return service

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """
        Let C{seconds} pass, delivering datagrams on the way.
        """
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(min(step, end - self.clock.seconds()))
        self.network.flush()

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.warn]

    def test_firstGrant(self) -> None:
        # UDP first, internal port 0 with the lifetime and any port; TCP
        # then suggests the port UDP got.
        service = self.start()
        assert service.current is not None
        self.assertEqual(
            (service.current.udpPort, service.current.tcpPort), (38534, 38534)
        )
        self.assertEqual(service.current.externalAddress, EXTERNAL)
        self.assertEqual(
            self.gateway.mapRequests(),
            [
                MapRequest(Protocol.UDP, 0, 0, 60),
                MapRequest(Protocol.TCP, 0, 38534, 60),
            ],
        )
        self.assertEqual(self.portFile.read_text(), "38534\n")
        [run] = self.host.processes.runs
        self.assertEqual(run.args[-3:], ["/bin/sh", "-c", "echo $NATPMP_PUBLIC_PORT"])
        self.assertEqual(run.env["NATPMP_PUBLIC_PORT"], "38534")
        self.assertEqual(run.env["NATPMP_PREVIOUS_PORT"], "")
        self.assertEqual(run.env["NATPMP_PUBLIC_ADDRESS"], str(EXTERNAL))
        self.assertEqual(run.env["NATPMP_GATEWAY"], GATEWAY)
        self.assertEqual(
            [(s.declaration.transport, s.externalPort) for s in self.observer.states],
            [(Protocol.UDP, 38534), (Protocol.TCP, 38534)],
        )
        self.assertEqual(self.observer.states[0].declaration.internalPort, 38534)

    def test_renewedWithinLease(self) -> None:
        # RFC 6886 s3.3: renewed at half the 60 s lease, suggesting the
        # port held, over five lease periods, with no change reported.
        self.start()
        for _ in range(10):
            before = len(self.gateway.mapRequests(Protocol.UDP))
            self.advance(30)
            udp = self.gateway.mapRequests(Protocol.UDP)
            self.assertEqual(len(udp), before + 1)
            self.assertEqual(udp[-1], MapRequest(Protocol.UDP, 0, 38534, 60))
        # Every UDP request was sent 30 s after the one before.
        udpSends = [d.time for d in self.network.log if d.data[:2] == b"\x00\x01"]
        gaps = {b - a for a, b in zip(udpSends, udpSends[1:], strict=False)}
        self.assertEqual(gaps, {30.0})
        self.assertEqual(len(self.observer.states), 2)
        self.assertEqual(len(self.host.processes.runs), 1)

    def roundStarts(self, opcode: bytes = b"\x00\x01") -> list[float]:
        """
        When each round's first C{opcode} request (UDP's map request by
        default) was sent: retransmissions come less than 2.5 s apart.
        """
        sends = [d.time for d in self.network.log if d.data[:2] == opcode]
        return [t for i, t in enumerate(sends) if i == 0 or t - sends[i - 1] > 2.5]

    def test_lostRenewalRetriedInsideLease(self) -> None:
        # A renewal lost at 30 s is tried again RETRY_WHILE_HELD s after
        # each failed round (3.75 s of MAP_TIMEOUTS): the rounds that fit
        # before the lease runs out at 60 s start at 38.75, 47.5 and
        # 56.25 s.  No external-address request delays them.
        service = self.start()
        self.gateway.silent = True
        self.advance(57)
        self.assertEqual(self.roundStarts(), [0.0, 30.0, 38.75, 47.5, 56.25])
        self.assertEqual([t for t in self.roundStarts(b"\x00\x00") if t >= 30], [])
        assert service.keeper is not None
        self.assertIsNotNone(service.keeper.held)
        self.assertEqual(self.observer.states[-1].externalPort, 38534)
        # The last round's retransmission at 58 s is answered: still held.
        self.gateway.silent = False
        self.advance(1)
        self.assertIsNotNone(service.current)
        self.assertIsNone(service.keeper.error)
        self.assertEqual(len(self.observer.states), 2)
        # One warning for the run of failures; the retries are info.
        self.assertEqual(
            len([w for w in self.warnings() if "renewing forwarded port" in w]), 1
        )

    def test_leaseFromFirstSend(self) -> None:
        # The lease is counted from the UDP request's first transmission,
        # not from the reply: a grant answered only at the 1.75 s
        # retransmission still expires 60 s after the request was sent.
        self.gateway.silent = True
        service = self.start()
        self.advance(1.5)
        self.gateway.silent = False
        self.advance(1)
        assert service.current is not None
        self.assertEqual(service.current.expires, 60.0)

    def test_suggestsLastPortAfterLoss(self) -> None:
        # RFC 6886 s3.7: once the port was lost, the requests still suggest
        # the port last held, so that a restarted gateway may give it back.
        # RFC 6886 s3.7
        service = self.start()
        self.gateway.silent = True
        self.advance(70)
        self.assertIsNone(service.current)
        self.gateway.requests.clear()
        self.gateway.silent = False
        self.advance(61)
        [first, *_] = self.gateway.mapRequests(Protocol.UDP)
        self.assertEqual(first, MapRequest(Protocol.UDP, 0, 38534, 60))

    def test_lastingFailureWarnsRarely(self) -> None:
        # A gateway silent for an hour: a warning for the lost renewal, one
        # for the loss, one for the failed rounds, then one reminder every
        # SILENCE_REMINDER (300) seconds; every other failure is info.
        self.start()
        self.gateway.silent = True
        self.advance(3600, step=5)
        keeper = [w for w in self.warnings() if "no forwarded port" in w]
        self.assertLessEqual(len(keeper), 3600 // 300 + 1)
        self.assertGreaterEqual(len(keeper), 3600 // (300 + 60))
        self.assertEqual(
            len([w for w in self.warnings() if "renewing forwarded port" in w]), 1
        )
        self.assertEqual(len([w for w in self.warnings() if "lost the" in w]), 1)
        infos = [
            e
            for e in self.events
            if e["log_level"] == LogLevel.info
            and "no forwarded port" in e["log_format"]
        ]
        self.assertGreater(len(infos), 30)

    def test_notAuthorizedLongLived(self) -> None:
        # Result 2 (port forwarding off): a long-lived error, told once and
        # not asked again for NOT_AUTHORIZED_WAIT seconds.
        self.gateway.refuseWith = 2
        service = self.start()
        self.assertIsNone(service.current)
        sent = len(self.gateway.requests)
        self.advance(NOT_AUTHORIZED_WAIT - 1, step=10)
        self.assertEqual(len(self.gateway.requests), sent)
        [warning] = [w for w in self.warnings() if "refuses" in w]
        self.assertIn("Not asking again for 1800 s", warning)
        self.advance(1)
        self.assertEqual(len(self.gateway.requests), sent + 1)

    def test_lostAfterLease(self) -> None:
        # Past the lease the port is reported lost, and asked for forever.
        service = self.start()
        self.gateway.silent = True
        self.advance(70)
        self.assertIsNone(service.current)
        lost = self.observer.states[-2:]
        self.assertEqual([s.externalPort for s in lost], [None, None])
        self.assertEqual([s.declaration.internalPort for s in lost], [38534, 38534])
        self.assertIsNotNone(lost[0].error)
        sent = len(self.gateway.requests)
        self.advance(600)
        self.assertGreater(len(self.gateway.requests), sent + 10)
        # Back with the same port: observers hear it, nothing is republished.
        self.gateway.silent = False
        self.advance(61)
        self.assertEqual(self.observer.states[-1].externalPort, 38534)
        self.assertEqual(len(self.host.processes.runs), 1)

    def test_portChange(self) -> None:
        # A VPN reconnect: the next renewal gets another port; the file is
        # rewritten and the command run with the previous port.
        service = self.start()
        self.host.processes.runs[0].end(0)
        self.gateway.udpPort = 40001
        self.advance(30)
        assert service.current is not None
        self.assertEqual(service.current.port, 40001)
        self.assertEqual(self.portFile.read_text(), "40001\n")
        run = self.host.processes.runs[-1]
        self.assertEqual(run.env["NATPMP_PUBLIC_PORT"], "40001")
        self.assertEqual(run.env["NATPMP_PREVIOUS_PORT"], "38534")
        self.assertEqual(
            [s.externalPort for s in self.observer.states[-2:]], [40001, 40001]
        )
        self.assertEqual(
            self.gateway.mapRequests(Protocol.TCP)[-1],
            MapRequest(Protocol.TCP, 0, 40001, 60),
        )

    def test_tcpOtherPort(self) -> None:
        # The gateway grants TCP another port: both are reported, UDP's is
        # published, and a warning names both.
        service = self.start()
        self.host.processes.runs[0].end(0)
        self.gateway.tcpPort = 41000
        self.advance(30)
        assert service.current is not None
        self.assertEqual(
            (service.current.udpPort, service.current.tcpPort), (38534, 41000)
        )
        self.assertEqual(self.portFile.read_text(), "38534\n")
        run = self.host.processes.runs[-1]
        self.assertEqual(
            (run.env["NATPMP_UDP_PORT"], run.env["NATPMP_TCP_PORT"]), ("38534", "41000")
        )
        self.assertTrue(any("TCP port 41000" in w for w in self.warnings()))

    def test_unwritablePortFile(self) -> None:
        # A port file that cannot be written is logged, never fatal.
        self.portFile = Path(self.mktemp()) / "missing" / "port"
        service = self.start()
        self.assertIsNotNone(service.current)
        self.assertTrue(any("cannot write --port-file" in w for w in self.warnings()))
        self.assertEqual(len(self.host.processes.runs), 1)

    def test_publicAddress(self) -> None:
        # RFC 6886 s3: NAT-PMP SHOULD be used only from a private address;
        # from a public one nothing is asked, and the log says why.
        service = self.start(findLocalAddress=lambda gateway: IPv4Address("192.0.2.9"))
        self.assertEqual(self.gateway.requests, [])
        self.assertIsNone(service.keeper)
        [error] = [
            formatEvent(e) for e in self.events if e["log_level"] == LogLevel.error
        ]
        self.assertIn("192.0.2.9, which is not a private address", error)
        self.assertIn("--allow-public", error)

    def test_publicAddressAllowed(self) -> None:
        service = self.start(
            findLocalAddress=lambda gateway: IPv4Address("192.0.2.9"),
            allowPublicAddress=True,
        )
        self.assertIsNotNone(service.current)

    def test_boundToTunnelAddress(self) -> None:
        # The address bound (the tunnel's) is the one judged (s3), and the
        # client's socket is bound to it.
        service = self.start(interface=HOST, findLocalAddress=None)
        self.assertIsNotNone(service.current)
        [port] = [
            p for endpoint, p in self.network.ports.items() if endpoint[0] == HOST
        ]
        self.assertEqual(port.getHost().host, HOST)

    def test_stopWhileAsking(self) -> None:
        # Stopping in the middle of a round cancels it: nothing more is
        # sent, nothing is reported, no error is left.
        self.gateway.silent = True
        service = self.start()
        assert service.keeper is not None
        self.assertIs(service.keeper.state, KeeperState.ASKING)
        self.successResultOf(service.stopService())
        self.assertIs(service.keeper.state, KeeperState.STOPPED)
        sent = len(self.network.log)
        self.advance(120)
        self.assertEqual(len(self.network.log), sent)
        self.assertEqual(self.observer.states, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stopKillsCommand(self) -> None:
        # Stop kills the --on-change run still going and waits for it.
        service = self.start()
        [run] = self.host.processes.runs
        stopped = service.stopService()
        self.assertEqual(run.signals, ["KILL"])
        self.assertTrue(run.closed)
        self.assertNoResult(stopped)
        run.end(signal=9)
        self.successResultOf(stopped)

    def test_quickChangesOneRun(self) -> None:
        # Two port changes while the command runs: one run at a time, and
        # only the latest port is run after the first ends.
        service = self.start()
        self.gateway.udpPort = 40001
        self.advance(30)
        self.gateway.udpPort = 40002
        self.advance(30)
        assert service.current is not None
        self.assertEqual(service.current.port, 40002)
        self.assertEqual(len(self.host.processes.runs), 1)
        self.host.processes.runs[0].end(0)
        self.assertEqual(
            [r.env["NATPMP_PUBLIC_PORT"] for r in self.host.processes.runs],
            ["38534", "40002"],
        )

    def test_stopSaysWhatItLeaves(self) -> None:
        # One line names the port left to expire at the gateway and why it
        # is not deleted (RFC 6886 s3.4); the port file written is removed.
        service = self.start()
        self.host.processes.runs[0].end(0)
        self.advance(10)
        self.assertTrue(self.portFile.exists())
        self.successResultOf(service.stopService())
        [line] = [
            formatEvent(e)
            for e in self.events
            if "leaving forwarded" in e["log_format"]
        ]
        self.assertEqual(
            line,
            "leaving forwarded port 38534 (udp/tcp) to expire at the gateway"
            " within 50 s; not deleted: internal port 0 with lifetime 0 would"
            " delete all (RFC 6886 s3.4)",
        )
        self.assertFalse(self.portFile.exists())
        self.assertEqual([r for r in self.gateway.mapRequests() if r.lifetime == 0], [])

    def test_stop(self) -> None:
        # Stopping cancels the timer; nothing more is sent.
        service = self.start()
        service.stopService()
        sent = len(self.network.log)
        self.advance(120)
        self.assertEqual(len(self.network.log), sent)


class KeeperTests(SynchronousTestCase):
    def keeper(
        self, lifetime: int, gateway: ScriptedVPNGateway
    ) -> tuple[ForwardedPortKeeper, MemoryUDPNetwork, list[Any]]:
        network = MemoryUDPNetwork()
        network.host(GATEWAY).listenUDP(5351, gateway)
        client = listenClient(
            network.host(HOST), GATEWAY, monotonic=network.clock.seconds
        )
        self.addCleanup(client.stop)
        reports: list[Any] = []
        keeper = ForwardedPortKeeper(
            network.clock, client, lambda *a: reports.append(a), lifetime=lifetime
        )
        self.addCleanup(keeper.stop)
        return keeper, network, reports

    def test_shortLeaseFloor(self) -> None:
        # A 1 s lease is renewed every MIN_ROUND_INTERVAL, not every 0.5 s.
        gateway = ScriptedVPNGateway()
        gateway.lease = 1
        keeper, network, _ = self.keeper(60, gateway)
        keeper.start()
        network.flush()
        [timer] = network.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), MIN_ROUND_INTERVAL)

    def test_states(self) -> None:
        keeper, network, reports = self.keeper(30, ScriptedVPNGateway())
        self.assertIs(keeper.state, KeeperState.IDLE)
        keeper.start()
        self.assertIs(keeper.state, KeeperState.ASKING)
        self.assertRaises(RuntimeError, keeper.start)
        network.flush()
        self.assertIs(keeper.state, KeeperState.WAITING)
        # The gateway granted 60 s, more than the 30 s asked: the keeper
        # trusts only the 30 s (RFC 6886 s3.3) and renews at 15 s.
        self.assertEqual(reports[0][0].lifetime, 30)
        self.assertEqual(network.clock.getDelayedCalls()[0].getTime(), 15.0)
        keeper.stop()
        self.assertIs(keeper.state, KeeperState.STOPPED)
        self.assertEqual(network.clock.getDelayedCalls(), [])
