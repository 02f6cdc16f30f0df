"""
Tests for the VPN profile options of C{twistd natpmp-gateway}
(L{twisted_natpmp._gatewaytap}): --vpn-profile and --vpn-lease.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._gatewaytap import Options, makeService
from twisted_natpmp.server import GatewayService
from twisted_natpmp.server.vpn import VPNProfile

from .test_gatewaytap import fakeNetworks, parsed


class VPNOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(Options, "lookupNetwork", staticmethod(fakeNetworks))

    def test_default(self) -> None:
        # Without the profile, nothing changes.
        options = parsed(["--listen=10.77.0.1"])
        self.assertFalse(options["vpn-profile"])
        self.assertIsNone(options["vpn-lease"])

    def test_profile(self) -> None:
        # ProtonVPN's 60 s lease by default; the service gets the profile.
        options = parsed(["--listen=10.77.0.1", "--vpn-profile"])
        self.assertEqual(options["vpn-lease"], 60)
        options = parsed(["--listen=10.77.0.1", "--vpn-profile", "--vpn-lease=8"])
        self.assertEqual(options["vpn-lease"], 8)
        service = makeService(options)
        assert isinstance(service, GatewayService)
        self.assertEqual(service._vpnLease, 8)

    def test_leaseWithoutProfile(self) -> None:
        error = self.assertRaises(
            usage.UsageError, parsed, ["--listen=10.77.0.1", "--vpn-lease=8"]
        )
        self.assertEqual(str(error), "--vpn-lease needs --vpn-profile")

    def test_memoryBackendOnly(self) -> None:
        # The profile has not been tried over the nftables backend's batches.
        error = self.assertRaises(
            usage.UsageError,
            parsed,
            [
                "--listen=10.77.0.1",
                "--vpn-profile",
                "--backend=nftables",
                "--external-address=192.0.3.1",
            ],
        )
        self.assertEqual(
            str(error), "--vpn-profile works with --backend memory only, not nftables"
        )

    def test_badLease(self) -> None:
        # One line naming the value; at most --max-lifetime.
        for value in ("0", "x", "601"):
            error = self.assertRaises(
                usage.UsageError,
                parsed,
                [
                    "--listen=10.77.0.1",
                    "--max-lifetime=600",
                    "--vpn-profile",
                    f"--vpn-lease={value}",
                ],
            )
            message = str(error)
            self.assertTrue(message.startswith(f"--vpn-lease: {value!r}"), message)
            self.assertNotIn("\n", message)

    def test_profileObject(self) -> None:
        # Started, the gateway's NAT-PMP responder has the profile.
        from twisted.internet.task import Clock

        from twisted_natpmp.testing import MemoryUDPNetwork

        network = MemoryUDPNetwork()
        service = GatewayService(
            network.host("10.77.0.1"),
            ["10.77.0.1/24"],
            "192.0.3.1",
            vpnLease=9,
            clock=Clock(),
        )
        service.startService()
        self.addCleanup(service.stopService)
        assert service.gateway is not None
        profile = service.gateway.natpmp.forwarder
        assert isinstance(profile, VPNProfile)
        self.assertEqual(profile.lease, 9)
