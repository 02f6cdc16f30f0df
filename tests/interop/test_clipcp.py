"""
The C{natpmp} command over PCP (RFC 6887), each command a process of its
own on a LAN host, against Debian's miniupnpd: the rule that appears,
miniupnpd's lease file describing it as a C{PCP MAP} with the mapping's
nonce, the deletion by a later process with the nonce kept in the nonce
file, and C{--exact} on a port another host holds.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.trial.unittest import TestCase

from twisted_natpmp import Transport
from twisted_natpmp.pcp._nonces import NonceKey, NonceStore

from ._lab import LAN_HOSTS, ROUTER_LAN, ROUTER_WAN, Completed, buildLab, waitUntil
from .test_cli import natpmpCommand
from .test_pcp import GATEWAY, miniupnpdNonce, nonceFile

TCP, UDP = Transport.TCP, Transport.UDP


class CommandOverPCPTests(TestCase):
    """
    C{natpmp --protocol pcp --nonce-file F ...} from LAN hosts.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.lab = buildLab(self)
        self.leases = self.lab.directory / "miniupnpd.leases"
        self.lab.miniupnpdOptions.append(f"lease_file={self.leases}")
        await self.lab.startMiniupnpd()
        self.nonces = nonceFile(self).resolve()
        self.nonces.parent.mkdir(parents=True, exist_ok=True)

    async def natpmp(self, *args: str, lan: int = 0) -> Completed:
        return await self.lab.run(
            self.lab.lans[lan],
            [
                *natpmpCommand(),
                "--gateway",
                ROUTER_LAN,
                "--protocol",
                "pcp",
                "--nonce-file",
                str(self.nonces) + (f".{lan}" if lan else ""),
                *args,
            ],
        )

    async def natpmpJSON(self, *args: str, lan: int = 0) -> dict[str, Any]:
        done = await self.natpmp("--json", *args, lan=lan)
        self.assertEqual(done.code, 0, done.describe())
        record: dict[str, Any] = json.loads(done.out)
        return record

    async def test_mapThenUnmap(self) -> None:
        """
        C{natpmp map} over PCP creates the forward, and miniupnpd's lease
        file describes it as a C{PCP MAP} with the nonce kept in the nonce
        file (each 4-byte word byte-reversed, as miniupnpd prints it); a
        second process, C{natpmp unmap}, deletes it with that nonce (RFC
        6887 s11.1, s15).
        """
        # RFC 6887 s11.1
        record = await self.natpmpJSON("map", "tcp", "9300", "--lifetime", "600")
        self.assertEqual(
            (record["mappingProtocol"], record["externalPort"]), ("pcp", 9300)
        )
        self.assertEqual(record["externalAddress"], ROUTER_WAN)
        self.assertEqual(self.lab.rules(TCP), {9300: (LAN_HOSTS[0], 9300)})
        nonce = NonceStore(self.nonces).get(NonceKey(GATEWAY, TCP, 9300))
        assert nonce is not None
        await waitUntil(self.leases.exists, "the lease file", 5.0, 0.05)
        text = self.leases.read_text()
        self.assertIn(f"PCP MAP {miniupnpdNonce(nonce)}", text, text)
        self.assertTrue(re.search(r"TCP:9300:10\.77\.0\.2:9300:", text), text)

        done = await self.natpmp("unmap", "tcp", "9300")
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn("PCP", done.out)
        self.assertEqual(self.lab.rules(TCP), {})
        self.assertIsNone(NonceStore(self.nonces).get(NonceKey(GATEWAY, TCP, 9300)))

    async def test_renewKeepsNonceAndPort(self) -> None:
        """
        Mapping again from another process renews: the same nonce (the file
        keeps it) and the same port.
        """
        # RFC 6887 s11.2.1
        await self.natpmpJSON("map", "udp", "9310", "--lifetime", "600")
        key = NonceKey(GATEWAY, UDP, 9310)
        nonce = NonceStore(self.nonces).get(key)
        self.assertIsNotNone(nonce)
        record = await self.natpmpJSON("map", "udp", "9310", "--lifetime", "600")
        self.assertEqual(record["externalPort"], 9310)
        self.assertEqual(NonceStore(self.nonces).get(key), nonce)
        self.assertEqual(self.lab.rules(UDP), {9310: (LAN_HOSTS[0], 9310)})

    async def test_takenPort(self) -> None:
        """
        A port the other LAN host holds yields another port; with
        C{--exact}, CANNOT_PROVIDE_EXTERNAL, one line and exit 1 (RFC 6887
        s13.2).
        """
        # RFC 6887 s13.2
        await self.natpmpJSON("map", "tcp", "9320", "--lifetime", "600", lan=1)
        moved = await self.natpmpJSON("map", "tcp", "9320", "--lifetime", "600")
        self.assertNotEqual(moved["externalPort"], 9320)
        await self.natpmpJSON("unmap", "tcp", "9320")

        done = await self.natpmp("map", "tcp", "9320", "--exact", "--lifetime", "600")
        self.assertEqual(done.code, 1, done.describe())
        self.assertIn("PCP result code 11", done.err)
        self.assertEqual(len(done.err.strip().splitlines()), 1, done.err)
        self.assertEqual(self.lab.rules(TCP), {9320: (LAN_HOSTS[1], 9320)})

    async def test_external(self) -> None:
        """
        C{natpmp external} over PCP learns the WAN address from a short MAP
        it deletes again, and says so.
        """
        done = await self.natpmp("external")
        self.assertEqual(done.code, 0, done.describe())
        self.assertIn(ROUTER_WAN, done.out)
        self.assertIn("deleted again", done.out)
        self.assertEqual(self.lab.rules(UDP), {})
