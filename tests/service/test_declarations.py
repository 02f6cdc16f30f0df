"""
Tests for L{twisted_natpmp.service.declarations}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.service.declarations import (
    MappingDeclaration,
    MappingState,
    behindSecondNAT,
)


class DeclarationTests(SynchronousTestCase):
    def test_transport(self) -> None:
        """
        A declaration's C{protocol} is its transport, also known as
        C{transport}; a label is accepted.
        """
        declaration = MappingDeclaration("tcp", 80)  # type: ignore[arg-type]
        self.assertIs(declaration.protocol, Transport.TCP)
        self.assertIs(declaration.transport, Transport.TCP)
        self.assertEqual(declaration.key, (Transport.TCP, 80))
        self.assertEqual(str(MappingDeclaration(Transport.UDP, 1, 0)), "udp:1:0")

    def test_bad(self) -> None:
        """
        Ports and lifetimes out of range are refused.
        """
        self.assertRaises(ValueError, MappingDeclaration, Transport.UDP, 0)
        self.assertRaises(ValueError, MappingDeclaration, Transport.UDP, 1, 65536)
        self.assertRaises(ValueError, MappingDeclaration, Transport.UDP, 1, None, 0)

    def test_describe(self) -> None:
        """
        A state says itself in one line.
        """
        declaration = MappingDeclaration(Transport.UDP, 5000)
        self.assertEqual(
            MappingState(declaration).describe(), "udp:5000 not mapped yet"
        )
        self.assertEqual(
            MappingState(declaration, removed=True).describe(), "udp:5000 removed"
        )
        self.assertEqual(
            MappingState(
                declaration, externalAddress=IPv6Address("2001:db8::1"), externalPort=7
            ).describe(),
            "udp:5000 -> 2001:db8::1:7",
        )

    def test_behindSecondNAT(self) -> None:
        """
        A private or shared IPv4 external address is a second NAT; an IPv6
        one, or none, is not.
        """
        self.assertTrue(behindSecondNAT(IPv4Address("100.64.0.1")))
        self.assertFalse(behindSecondNAT(IPv4Address("192.0.2.1")))
        self.assertFalse(behindSecondNAT(IPv6Address("2001:db8::1")))
        self.assertFalse(behindSecondNAT(None))
