"""
The C{natpmp} command, run as a user runs it, on a LAN host against
Debian's miniupnpd: what it prints, its exit code, and the rule that
appears and vanishes in the router's firewall.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport

from ._lab import (
    LAN_HOSTS,
    NOBODY,
    ROUTER_LAN,
    ROUTER_WAN,
    WAN_HOST,
    Completed,
    buildLab,
)

TCP, UDP = Transport.TCP, Transport.UDP


def natpmpCommand() -> list[str]:
    """
    The installed C{natpmp} script beside this interpreter, as a user runs
    it; C{python -m twisted_natpmp} where no script is installed.
    """
    script = Path(sys.executable).parent / "natpmp"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "twisted_natpmp"]


class CommandAgainstMiniupnpdTests(TestCase):
    """
    C{natpmp --gateway ROUTER ...} from a LAN host.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        await self.lab.startMiniupnpd()

    async def natpmp(self, *args: str, gateway: str = ROUTER_LAN) -> Completed:
        return await self.lab.run(
            self.lab.lans[0], [*natpmpCommand(), "--gateway", gateway, *args]
        )

    async def natpmpJSON(self, *args: str) -> dict[str, Any]:
        done = await self.natpmp("--json", *args)
        self.assertEqual(done.code, 0, done.describe())
        record: dict[str, Any] = json.loads(done.out)
        return record

    async def test_external(self) -> None:
        """
        C{natpmp external} prints the router's WAN address and exits 0.
        """
        done = await self.natpmp("external")
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(ROUTER_WAN, done.out)
        record = await self.natpmpJSON("external")
        self.assertEqual(record["externalAddress"], ROUTER_WAN)

    async def test_moduleRunsToo(self) -> None:
        """
        C{python -m twisted_natpmp} is the same command.
        """
        done = await self.lab.run(
            self.lab.lans[0],
            [
                sys.executable,
                "-m",
                "twisted_natpmp",
                "--gateway",
                ROUTER_LAN,
                "external",
            ],
        )
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(ROUTER_WAN, done.out)

    async def test_mapThenUnmap(self) -> None:
        """
        C{natpmp map tcp 9000 --external 19000} creates the forward from
        19000 to this host's port 9000 and says so; C{natpmp unmap tcp 9000}
        removes it.
        """
        done = await self.natpmp("map", "tcp", "9000", "--external", "19000")
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(f"{ROUTER_WAN}:19000", done.out)
        self.assertIn("9000", done.out)
        self.assertEqual(self.lab.rules(TCP), {19000: (LAN_HOSTS[0], 9000)})

        done = await self.natpmp("unmap", "tcp", "9000")
        self.assertEqual(done.code, 0, done.describe())
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_mapJSONAndUnmapAll(self) -> None:
        """
        C{natpmp --json map udp ...} reports the granted port and lifetime
        that the router's firewall confirms; C{natpmp unmap-all udp} removes
        every UDP forward of the host.
        """
        first = await self.natpmpJSON("map", "udp", "9100", "--lifetime", "600")
        second = await self.natpmpJSON(
            "map", "udp", "9101", "--external", "19101", "--lifetime", "600"
        )
        self.assertEqual(
            (first["externalPort"], first["lifetime"], second["externalPort"]),
            (9100, 600, 19101),
        )
        self.assertEqual(first["externalAddress"], ROUTER_WAN)
        self.assertEqual(
            self.lab.rules(UDP),
            {9100: (LAN_HOSTS[0], 9100), 19101: (LAN_HOSTS[0], 9101)},
        )
        await self.natpmpJSON("unmap-all", "udp")
        self.assertEqual(self.lab.rules(UDP), {})

    async def test_refusedIsOneLine(self) -> None:
        """
        A mapping miniupnpd's permission rules refuse (internal port 80 is
        outside its C{allow 1024-65535}) exits 1 with one line naming the
        result code, and no rule appears.
        """
        done = await self.natpmp("map", "tcp", "80")
        self.assertEqual(done.code, 1, done.describe())
        lines = done.err.strip().splitlines()
        self.assertEqual(len(lines), 1, done.describe())
        self.assertIn("result code 2", lines[0])
        self.assertEqual(self.lab.rules(TCP), {})

    async def test_silentGatewayTimesOut(self) -> None:
        """
        With C{--timeout 1} and a gateway address where nothing answers, the
        command gives up after about a second, exits 1 and says in one line
        that there was no response.
        """
        done = await self.natpmp("--timeout", "1", "external", gateway=NOBODY)
        self.assertEqual(done.code, 1, done.describe())
        lines = done.err.strip().splitlines()
        self.assertEqual(len(lines), 1, done.describe())
        self.assertIn("no response", lines[0])

    async def test_unmapAllDeletesBothProtocols(self) -> None:
        """
        miniupnpd departs from RFC 6886 s3.4: a delete-all of UDP removes
        the host's TCP mappings too (PROTOCOL.md Part B).  The command says
        so rather than claim only UDP went.  (NAT-PMP's delete-all: PCP has
        none.)
        """
        nat = ("--protocol", "natpmp")
        await self.natpmpJSON(*nat, "map", "udp", "9200", "--lifetime", "600")
        await self.natpmpJSON(*nat, "map", "tcp", "9201", "--lifetime", "600")
        self.assertEqual(set(self.lab.rules(TCP)), {9201})
        done = await self.natpmp(*nat, "unmap-all", "udp")
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn("tcp mappings too", done.out)
        self.assertEqual((self.lab.rules(UDP), self.lab.rules(TCP)), ({}, {}))

    async def test_jsonOnFailure(self) -> None:
        """
        With C{--json}, standard output is one JSON object also when the
        router refuses (with its result code) or nothing answers, and for
        bad arguments.
        """
        refused = await self.natpmp("--json", "map", "tcp", "80")
        self.assertEqual(refused.code, 1, refused.describe())
        record = json.loads(refused.out)
        self.assertEqual(
            (record["command"], record["gateway"], record["resultCode"]),
            ("map", ROUTER_LAN, 2),
        )
        silent = await self.natpmp(
            "--json", "--timeout", "1", "external", gateway=NOBODY
        )
        self.assertEqual(silent.code, 1, silent.describe())
        self.assertIn("no response", json.loads(silent.out)["error"])
        bad = await self.natpmp("--json", "map", "tcp", "70000")
        self.assertEqual(bad.code, 2, bad.describe())
        self.assertIn("70000", json.loads(bad.out)["error"])

    async def test_jsonExternalEpoch(self) -> None:
        """
        C{--json external} carries the router's epoch (RFC 6886 s3.2), and
        C{--json map} what was asked beside what was granted.
        """
        record = await self.natpmpJSON("external")
        self.assertIsInstance(record["epoch"], int)
        mapped = await self.natpmpJSON(
            "map", "tcp", "9300", "--external", "19300", "--lifetime", "600"
        )
        self.assertEqual(
            (mapped["requestedExternalPort"], mapped["requestedLifetime"]),
            (19300, 600),
        )

    async def test_publicAddressRefused(self) -> None:
        """
        RFC 6886 s3: NAT-PMP is for hosts behind a NAT.  From the WAN host,
        whose address towards the router (as the kernel picks it) is
        public, the command refuses without sending, naming the address;
        C{--allow-public} sends anyway (miniupnpd listens on its LAN side
        only, so its WAN address answers ICMP port unreachable).
        """
        argv = [*natpmpCommand(), "--gateway", ROUTER_WAN, "--timeout", "1"]
        refused = await self.lab.run(self.lab.wan, [*argv, "external"])
        self.assertEqual(refused.code, 1, refused.describe())
        self.assertIn(f"{WAN_HOST}, is public", refused.err)
        self.assertIn("--allow-public", refused.err)
        allowed = await self.lab.run(
            self.lab.wan, [*argv, "--allow-public", "external"]
        )
        self.assertEqual(allowed.code, 1, allowed.describe())
        self.assertIn("warning", allowed.err)
        # (auto: neither protocol is spoken where 5351 is unreachable.)
        self.assertIn("does not speak PCP or NAT-PMP", allowed.err)
