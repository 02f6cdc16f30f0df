"""
Tests for L{twisted_natpmp._gatewaytapnft}: the C{--backend} options of
C{twistd natpmp-gateway} and the service C{--backend nftables} builds.
"""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._gatewaytap import Options, makeService
from twisted_natpmp.server import GatewayService
from twisted_natpmp.server.backends import MemoryBackend
from twisted_natpmp.server.backends.nftables import (
    ForwardChain,
    NftablesBackend,
    ProcessRunner,
)
from twisted_natpmp.server.backends.nftables._service import ExternalInterfaceService

NFTABLES = ["--listen", "10.77.0.1/24", "--backend", "nftables"]
TRUE = shutil.which("true") or "/bin/true"
PROGRAMS = ["--nft", TRUE, "--conntrack", TRUE]


def parsed(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    return options


def built(*argv: str) -> tuple[GatewayService, object]:
    """
    The gateway and the service beside it that C{twistd natpmp-gateway
    ARGV} builds.
    """
    top = makeService(parsed(*argv))
    assert isinstance(top, MultiService)
    gateway, beside = list(top)
    assert isinstance(gateway, GatewayService)
    return gateway, beside


class BackendOptionsTests(SynchronousTestCase):
    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        """
        Parsing C{argv} fails with one line naming each fragment.
        """
        error = self.assertRaises(usage.UsageError, parsed, *argv)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_memoryByDefault(self) -> None:
        """
        The memory backend stays the default and builds the plain service.
        """
        options = parsed("--listen", "10.77.0.1/24", "--external-address", "192.0.3.1")
        self.assertEqual(options["backend"], "memory")
        service = makeService(options)
        assert isinstance(service, GatewayService)
        self.assertIsInstance(service.backend, MemoryBackend)

    def test_badValues(self) -> None:
        """
        Each bad value is refused in one line naming it.
        """
        self.assertUsageError(["--listen", "10.77.0.1/24", "--backend", "pf"], "'pf'")
        self.assertUsageError(NFTABLES, "--external-interface")
        interface = ["--external-interface", "wan0"]
        self.assertUsageError(
            [*NFTABLES, "--external-interface", "wan 0"],
            "--external-interface",
            "'wan 0'",
        )
        self.assertUsageError(
            [*NFTABLES, *interface, "--nft-table", "a;b"], "--nft-table", "'a;b'"
        )
        self.assertUsageError(
            [*NFTABLES, *interface, "--forward-chain", "filter:forward"],
            "--forward-chain",
            "'filter:forward'",
        )
        self.assertUsageError(
            [*NFTABLES, *interface, "--nft", "/nonexistent/nft"],
            "--nft",
            "'/nonexistent/nft'",
        )
        self.assertUsageError(
            [*NFTABLES, *interface, "--nft", TRUE, "--conntrack", "no-such-conntrack"],
            "--conntrack",
            "'no-such-conntrack'",
        )

    def test_nftablesOnly(self) -> None:
        """
        The nftables options are refused with the memory backend.
        """
        for option in ("--external-interface", "--forward-chain"):
            self.assertUsageError(
                ["--listen", "10.77.0.1/24", option, "inet:filter:forward"],
                option,
                "--backend nftables",
            )

    def test_nftablesService(self) -> None:
        """
        C{--backend nftables} builds the gateway over an L{NftablesBackend}
        with the table, interface, chain and programs given, and the
        external interface's watcher beside it; C{--external-address}
        overrides the interface's.
        """
        gateway, watching = built(
            *NFTABLES,
            "--external-interface",
            "wan0",
            "--external-address",
            "192.0.3.1",
            "--nft-table",
            "gw",
            "--forward-chain",
            "inet:filter:forward",
            "--max-lifetime",
            "3600",
            *PROGRAMS,
        )
        self.assertIsInstance(watching, ExternalInterfaceService)
        self.assertEqual(gateway.externalAddress, IPv4Address("192.0.3.1"))
        backend = gateway.backend
        assert isinstance(backend, NftablesBackend)
        self.assertEqual(backend.ruleset.table, "gw")
        self.assertEqual(backend.ruleset.interface, "wan0")
        self.assertEqual(
            backend.ruleset.forwardChain, ForwardChain("inet", "filter", "forward")
        )
        runner: Any = backend._nft
        assert isinstance(runner, ProcessRunner)
        self.assertEqual(runner.program, TRUE)
        self.assertEqual(gateway._limits["maxLifetime"], 3600)

    def test_startCutsInOurRange(self) -> None:
        """
        The backend cuts, at start, the DNATed flows in the gateway's port
        range (C{--min-port}, C{--max-port}) to the address announced
        (C{--external-address}) and to the external interface's own, read
        at each start.
        """
        gateway, _ = built(
            *NFTABLES,
            "--external-interface",
            "lo",
            "--external-address",
            "192.0.3.1",
            "--min-port",
            "2000",
            "--max-port",
            "3000",
            *PROGRAMS,
        )
        backend: Any = gateway.backend
        self.assertEqual(backend._portRange, (2000, 3000))
        self.assertEqual(
            backend._externalAddresses(),
            {IPv4Address("192.0.3.1"), IPv4Address("127.0.0.1")},
        )
        gateway.externalAddress = IPv4Address("192.0.3.7")
        self.assertIn(IPv4Address("192.0.3.7"), backend._externalAddresses())
