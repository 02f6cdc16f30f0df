"""
Tests for the C{natpmp} command's choice of protocol (L{twisted_natpmp._cli}
with C{--protocol}, C{--exact}, C{--nonce-file}): PCP against a scripted
PCP server, the fallback to NAT-PMP against a scripted NAT-PMP gateway, each
run of the command its own mapper, as separate processes are; on the
in-memory network.
"""

from __future__ import annotations

import json
from io import StringIO
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import negotiate
from twisted_natpmp._cli import parseArguments, run
from twisted_natpmp._cli._protocols import listen, pcpSchedule
from twisted_natpmp._types import Transport
from twisted_natpmp.natpmp._wire import ExternalAddressRequest, MapRequest, MapResponse
from twisted_natpmp.negotiate import ProtocolMemory
from twisted_natpmp.pcp._nonces import NonceKey, NonceStore
from twisted_natpmp.pcp.client import PCPClient
from twisted_natpmp.server import NATPMPGateway, NATPMPServerProtocol
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway
from twisted_natpmp.testing._gateway import GATEWAY, HOST

from ..pcp._gateway import EXTERNAL, ScriptedPCPServer


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        By default the command negotiates (auto), insists on nothing and
        keeps its nonces in the per-user file.
        """
        options = parseArguments(["map", "tcp", "8080"])
        self.assertEqual(
            (options.mappingProtocol, options.exact, options.nonceFile),
            ("auto", False, None),
        )

    def test_given(self) -> None:
        """
        C{--protocol}, C{--exact} and C{--nonce-file}, before or after the
        command's name.
        """
        options = parseArguments(
            ["--protocol", "PCP", "map", "tcp", "8080", "--exact", "--nonce-file", "n"]
        )
        self.assertEqual(
            (options.mappingProtocol, options.exact, options.nonceFile),
            ("pcp", True, Path("n")),
        )
        options = parseArguments(["unmap", "tcp", "8080", "--protocol", "natpmp"])
        self.assertEqual(options.mappingProtocol, "natpmp")

    def test_badProtocol(self) -> None:
        """
        An unknown protocol is refused in one line naming it.
        """
        e = self.assertRaises(
            UsageError, parseArguments, ["--protocol", "upnp", "external"]
        )
        self.assertEqual(
            str(e),
            "natpmp: error: argument --protocol: protocol 'upnp' is not auto,"
            " pcp or natpmp",
        )

    def test_ipv6Gateway(self) -> None:
        """
        An IPv6 gateway is taken (for PCP), a link-local one with its scope;
        a multicast one is refused in one line.
        """
        options = parseArguments(["--gateway", "fe80::1%eth0", "external"])
        self.assertEqual(options.gateway, IPv6Address("fe80::1%eth0"))
        e = self.assertRaises(
            UsageError, parseArguments, ["--gateway", "ff02::1", "external"]
        )
        self.assertIn("'ff02::1'", str(e))
        self.assertEqual(len(str(e).splitlines()), 1)


class CommandCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.nonceFile = Path(self.mktemp())
        # What other tests' mappers learnt of GATEWAY is not this one's.
        self.patch(negotiate, "processMemory", ProtocolMemory())

    def command(self, *argv: str) -> tuple[int, str, str]:
        """
        Run one C{natpmp} command, as a process of its own would: its own
        mapper, sharing only the nonce file.
        """
        stdout, stderr = StringIO(), StringIO()
        d = run(
            self.network.host(HOST),
            parseArguments(
                ["--gateway", GATEWAY, "--nonce-file", str(self.nonceFile), *argv]
            ),
            findLocalAddress=lambda gateway: IPv4Address(HOST),
            stdout=stdout,
            stderr=stderr,
        )
        self.network.flush()
        return self.successResultOf(d), stdout.getvalue(), stderr.getvalue()

    def jsonCommand(self, *argv: str) -> dict[str, Any]:
        code, out, err = self.command("--json", *argv)
        record: dict[str, Any] = json.loads(out)
        return record


class PCPCommandTests(CommandCase):
    def setUp(self) -> None:
        super().setUp()
        self.server = ScriptedPCPServer()
        self.network.host(GATEWAY).listenUDP(5351, self.server)

    def held(self) -> dict[int, int]:
        return {key[2]: held.externalPort for key, held in self.server.held.items()}

    def test_mapThenUnmap(self) -> None:
        """
        C{natpmp map} over PCP maps and says so (the line names PCP, the
        JSON object's C{mappingProtocol} says C{pcp}); the nonce is kept in
        the nonce file, and a later C{natpmp unmap} (another mapper) deletes
        the mapping with it (RFC 6887 s11.1).
        """
        # RFC 6887 s11.1
        code, out, err = self.command("map", "tcp", "8080")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out,
            f"mapped tcp {EXTERNAL}:8080 -> local port 8080 for 7200 s"
            f" (gateway {GATEWAY}, PCP)\n",
        )
        self.assertEqual(self.held(), {8080: 8080})
        nonce = NonceStore(self.nonceFile).get(
            NonceKey(IPv4Address(GATEWAY), Transport.TCP, 8080)
        )
        self.assertIsNotNone(nonce)
        record = self.jsonCommand("unmap", "tcp", "8080")
        self.assertEqual(record["mappingProtocol"], "pcp")
        self.assertEqual(self.held(), {})

    def test_internalAddress(self) -> None:
        """
        C{--internal-address} is the client address PCP sends (RFC 6887
        s8.2) and binds to; a bad one is refused in one line naming it.
        """
        # RFC 6887 s8.2
        options = parseArguments(["--internal-address", HOST, "external"])
        self.assertEqual(options.internalAddress, IPv4Address(HOST))
        mapper = listen(
            self.network.host(HOST),
            IPv4Address(GATEWAY),
            5351,
            "pcp",
            self.nonceFile,
            options.internalAddress,
        )
        self.addCleanup(mapper.stop)
        assert isinstance(mapper, PCPClient)
        self.assertEqual(mapper.internalAddress, IPv4Address(HOST))
        record = self.jsonCommand(
            "--protocol", "pcp", "--internal-address", HOST, "map", "udp", "5001"
        )
        self.assertEqual(record["externalPort"], 5001)
        [(request, _)] = self.server.requests
        self.assertEqual(request.clientAddress, IPv4Address(HOST))
        e = self.assertRaises(
            UsageError, parseArguments, ["--internal-address", "x", "external"]
        )
        self.assertIn("internal address 'x' is not an IPv4 or IPv6 address", str(e))

    def test_auto(self) -> None:
        """
        By default (auto) a PCP gateway is asked in PCP (RFC 6887 s9).
        """
        # RFC 6887 s9
        record = self.jsonCommand("map", "udp", "5000")
        self.assertEqual(
            (record["mappingProtocol"], record["externalPort"]), ("pcp", 5000)
        )

    def test_takenPortMoves(self) -> None:
        """
        A port held by another host yields another port.
        """
        self.server.taken.add(9100)
        record = self.jsonCommand("--protocol", "pcp", "map", "udp", "9100")
        self.assertEqual(record["externalPort"], 9101)

    def test_exactRefused(self) -> None:
        """
        With C{--exact} the request carries PREFER_FAILURE: a taken port
        yields CANNOT_PROVIDE_EXTERNAL, one line, exit 1 (RFC 6887 s13.2).
        """
        # RFC 6887 s13.2
        self.server.taken.add(9100)
        code, out, err = self.command(
            "--protocol", "pcp", "map", "udp", "9100", "--exact"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            f"natpmp: gateway {GATEWAY} refused: PCP result code 11 (cannot"
            " provide external address or port)\n",
        )
        self.assertEqual(self.held(), {})

    def test_external(self) -> None:
        """
        C{natpmp external} over PCP, which has no request for it, learns the
        address from a short MAP it deletes again, and says so.
        """
        code, out, err = self.command("--protocol", "pcp", "external")
        self.assertEqual(code, 0, err)
        self.assertIn(f"external address {EXTERNAL} (a 120 s PCP mapping", out)
        self.assertEqual(self.held(), {})
        record = self.jsonCommand("--protocol", "pcp", "external")
        self.assertEqual(record["externalAddress"], str(EXTERNAL))
        self.assertIn("deleted again", record["how"])

    def test_unmapAll(self) -> None:
        """
        PCP has no deletion of every mapping: C{natpmp unmap-all} deletes
        each one whose nonce the nonce file keeps, of that transport only.
        """
        for port in ("7000", "7001"):
            self.command("--protocol", "pcp", "map", "udp", port)
        self.command("--protocol", "pcp", "map", "tcp", "7002")
        code, out, err = self.command("--protocol", "pcp", "unmap-all", "udp")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.held(), {7002: 7002})


class AutoFallbackTests(CommandCase):
    def test_autoFallsBack(self) -> None:
        """
        Against a NAT-PMP-only gateway (which answers PCP with NAT-PMP's
        8-byte "unsupported version"), auto maps in NAT-PMP at once (RFC
        6887 s9), and says so.
        """
        # RFC 6887 s9
        gateway = NATPMPGateway(self.clock, IPv4Address("192.0.3.1"), ["10.0.0.0/24"])
        self.network.host(GATEWAY).listenUDP(5351, NATPMPServerProtocol(gateway))
        record = self.jsonCommand("map", "tcp", "8080")
        self.assertEqual(record["mappingProtocol"], "natpmp")
        self.assertEqual(record["externalPort"], 8080)
        self.assertIsNotNone(gateway.table.get(IPv4Address(HOST), Transport.TCP, 8080))

    def test_autoFallbackInternalAddress(self) -> None:
        """
        Falling back to NAT-PMP, C{--internal-address} is still the address
        sent from, so the mapping is for it (RFC 6886 s3.3).
        """
        # RFC 6886 s3.3
        gateway = NATPMPGateway(self.clock, IPv4Address("192.0.3.1"), ["10.0.0.0/24"])
        self.network.host(GATEWAY).listenUDP(5351, NATPMPServerProtocol(gateway))
        record = self.jsonCommand(
            "--internal-address", "10.0.0.5", "map", "tcp", "8080"
        )
        self.assertEqual(record["mappingProtocol"], "natpmp")
        self.assertIsNotNone(
            gateway.table.get(IPv4Address("10.0.0.5"), Transport.TCP, 8080)
        )
        self.assertIsNone(gateway.table.get(IPv4Address(HOST), Transport.TCP, 8080))


class NATPMPCommandTests(CommandCase):
    def setUp(self) -> None:
        super().setUp()
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)

    def test_natpmpExact(self) -> None:
        """
        NAT-PMP has no PREFER_FAILURE: with C{--exact}, another port granted
        is deleted again and the command fails in one line.
        """
        answer = self.gateway.answer
        self.gateway.reply = lambda request: (
            answer(request)
            if isinstance(request, ExternalAddressRequest) or request.lifetime == 0
            else [MapResponse(Transport.TCP, 0, 100, 8080, 40000, 7200).encode()]
        )
        code, out, err = self.command(
            "--protocol", "natpmp", "map", "tcp", "8080", "--exact"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            f"natpmp: gateway {GATEWAY} refused: the gateway granted port 40000,"
            " not 8080\n",
        )
        [mapping, deletion] = [request for request, _ in self.gateway.requests]
        assert isinstance(deletion, MapRequest)
        self.assertEqual((deletion.internalPort, deletion.lifetime), (8080, 0))

    def test_natpmpInternalAddress(self) -> None:
        """
        With NAT-PMP, C{--internal-address} is the address the requests are
        sent from, since the gateway maps for the request's source (RFC 6886
        s3.3).
        """
        # RFC 6886 s3.3
        code, out, err = self.command(
            "--protocol",
            "natpmp",
            "--internal-address",
            "10.0.0.5",
            "map",
            "udp",
            "5001",
        )
        self.assertEqual((code, err), (0, ""))
        sources = {address[0] for _, address in self.gateway.requests}
        self.assertEqual(sources, {"10.0.0.5"})

    def test_natpmpInternalAddressPublic(self) -> None:
        """
        The RFC 6886 s3 private-address check judges the address given, not
        the one the kernel would pick.
        """
        # RFC 6886 s3
        code, out, err = self.command(
            "--protocol", "natpmp", "--internal-address", "192.0.2.9", "external"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertIn("192.0.2.9, is public", err)
        self.assertIn("--allow-public", err)
        self.assertEqual(self.gateway.requests, [])

    def test_natpmpIPv6Refused(self) -> None:
        """
        NAT-PMP to an IPv6 gateway is refused in one line naming it.
        """
        stdout, stderr = StringIO(), StringIO()
        d = run(
            self.network.host(HOST),
            parseArguments(
                ["--protocol", "natpmp", "--gateway", "2001:db8::1", "external"]
            ),
            stdout=stdout,
            stderr=stderr,
        )
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(
            stderr.getvalue(),
            "natpmp: NAT-PMP speaks only IPv4, not to 2001:db8::1\n",
        )


class ScheduleTests(SynchronousTestCase):
    def test_pcpSchedule(self) -> None:
        """
        Over PCP the command waits on the RFC 6887 s8.1.1 schedule (3 s,
        doubling, +-10 %), cut at C{--timeout}, and at most the client's
        128 s.
        """
        # RFC 6887 s8.1.1
        whole = pcpSchedule(None)
        self.assertAlmostEqual(sum(whole), 128.0)
        self.assertTrue(2.7 <= whole[0] <= 3.3, whole)
        cut = pcpSchedule(10.0)
        self.assertAlmostEqual(sum(cut), 10.0)
        self.assertAlmostEqual(sum(pcpSchedule(1000.0)), 128.0)
