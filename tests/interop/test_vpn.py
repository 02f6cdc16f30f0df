"""
The VPN forwarded-port mode against our gateway in its VPN profile
(C{twistd natpmp-gateway --vpn-profile}), in the lab's namespaces: libnatpmp's
C{natpmpc} following ProtonVPN's recipe, C{natpmp forwarded-port}, and
C{twistd natpmp --forwarded-port --port-file F --on-change CMD} keeping the
port over several leases and following a gateway restart that hands out a
new port.

The leases are short (4 s, C{--vpn-lease}) so that several pass in a few
seconds; the restarted gateway draws from another port range, so that its
port is a new one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.trial.unittest import TestCase

from ._lab import ROUTER_LAN, ROUTER_WAN, Daemon, Lab, buildLab, sleep, waitUntil
from .test_cli import natpmpCommand

#: The lease our gateway grants in these tests.
LEASE = 4
#: The port ranges of the first gateway and of the restarted one.
FIRST_RANGE = (20000, 29999)
SECOND_RANGE = (30000, 39999)


async def startVPNGateway(lab: Lab, ports: tuple[int, int]) -> Daemon:
    """
    Our gateway in the router namespace, in its VPN profile with the short
    lease, granting ports from C{ports}.
    """
    daemon = lab.spawn(
        lab.router,
        lab.twistd(
            "natpmp-gateway",
            f"--listen={ROUTER_LAN}/24",
            f"--external-address={ROUTER_WAN}",
            "--vpn-profile",
            f"--vpn-lease={LEASE}",
            f"--min-port={ports[0]}",
            f"--max-port={ports[1]}",
        ),
        "natpmp-gateway-vpn",
    )
    await lab.waitListening(daemon, 5351)
    return daemon


def portIn(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return int(text) if re.fullmatch(r"\d+\n", text) else None


class VPNProfileTests(TestCase):
    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        self.gateway = await startVPNGateway(self.lab, FIRST_RANGE)

    async def test_natpmpcRecipe(self) -> None:
        """
        ProtonVPN's recipe, C{natpmpc -a 1 0 udp 60 -g GATEWAY}, gets a
        public port of the gateway's choosing for the fixed lease, the reply
        echoing local port 0 as ProtonVPN's does.
        """
        done = await self.lab.run(
            self.lab.lans[0], ["natpmpc", "-g", ROUTER_LAN, "-a", "1", "0", "udp", "60"]
        )
        self.assertEqual(done.code, 0, done.describe())
        match = re.search(
            r"Mapped public port (\d+) protocol UDP to local port 0 liftime (\d+)",
            done.out,
        )
        self.assertIsNotNone(match, done.out)
        assert match is not None
        self.assertTrue(FIRST_RANGE[0] <= int(match.group(1)) <= FIRST_RANGE[1])
        self.assertEqual(int(match.group(2)), LEASE)

    async def test_command(self) -> None:
        """
        C{natpmp forwarded-port} prints one JSON object: the same public
        port for UDP and TCP, for the gateway's lease.
        """
        done = await self.lab.run(
            self.lab.lans[0],
            [*natpmpCommand(), "--gateway", ROUTER_LAN, "--json", "forwarded-port"],
        )
        self.assertEqual(done.code, 0, done.describe())
        record = json.loads(done.out)
        self.assertEqual(record["udpPort"], record["tcpPort"])
        self.assertTrue(FIRST_RANGE[0] <= record["externalPort"] <= FIRST_RANGE[1])
        self.assertEqual(record["lifetime"], LEASE)
        self.assertEqual(record["externalAddress"], ROUTER_WAN)

    async def test_serviceKeepsAndFollows(self) -> None:
        """
        C{twistd natpmp --forwarded-port} keeps the port for several leases
        (the file holds it, the command ran once), and when the gateway
        restarts and hands out a new port, the file and the command follow.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        portFile = directory / "forwarded_port"
        changes = directory / "changes"
        service = self.lab.spawn(
            self.lab.lans[0],
            self.lab.twistd(
                "natpmp",
                "--gateway",
                ROUTER_LAN,
                "--forwarded-port",
                f"--lifetime={LEASE}",
                f"--port-file={portFile}",
                "--on-change",
                f'echo "$NATPMP_PUBLIC_PORT $NATPMP_PREVIOUS_PORT" >> {changes}',
            ),
            "twistd-natpmp-forwarded",
        )
        await waitUntil(lambda: portIn(portFile) is not None, "the port file", 10.0)
        first = portIn(portFile)
        assert first is not None
        self.assertTrue(FIRST_RANGE[0] <= first <= FIRST_RANGE[1])
        # Three leases pass; the port is renewed, never lost.
        await sleep(3 * LEASE)
        self.assertEqual(portIn(portFile), first, service.output())
        self.assertEqual(changes.read_text(), f"{first} \n")
        log = self.gateway.output()
        self.assertNotIn("expired", log)
        self.assertGreaterEqual(
            log.count(f"mapping renewed: udp external port {first}"), 4, log
        )
        self.assertIn(f"mapping created: tcp external port {first}", log)
        # A restart that hands out a new port.
        await self.gateway.stop()
        self.gateway = await startVPNGateway(self.lab, SECOND_RANGE)
        await waitUntil(
            lambda: portIn(portFile) != first, "the new port in the file", 15.0
        )
        second = portIn(portFile)
        assert second is not None
        self.assertTrue(SECOND_RANGE[0] <= second <= SECOND_RANGE[1])
        await waitUntil(
            lambda: f"{second} {first}\n" in changes.read_text(),
            "the command run with the new and the previous port",
            5.0,
        )
        self.assertFalse(service.ended, service.output())
        self.assertIn(f"forwards public port {second}", service.output())
