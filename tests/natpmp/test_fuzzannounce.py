"""
Bounded in-memory fuzzing of the announcement listener: NAT-PMP and PCP
announcements, well-formed or not, from the gateway and from another LAN
host (RFC 6886 s3.2.1; RFC 6887 s14.1).  Deterministic, on a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import MAX_LENGTH
from twisted_natpmp.announce import AnnouncementKind, AnnouncementProtocol

from .._fuzzing import FUZZ, GATEWAY, OTHER, LogWatch, corpus, everyVersionAndOpcode
from ._fuzzing import announcementOf


class AnnouncementTests(SynchronousTestCase):
    """
    The announcement listener: only the gateway's well-formed, successful
    announcements count (RFC 6886 s3.2.1; RFC 6887 s14.1 for PCP).
    """

    def setUp(self) -> None:
        self.received: list[Any] = []
        self.protocol = AnnouncementProtocol(
            GATEWAY, self.received.append, clock=Clock()
        )
        self.logs = LogWatch(self)

    def expected(self, packet: bytes, host: str) -> tuple[AnnouncementKind, int] | None:
        # RFC 6886 s3.2.1: only the gateway's announcements count.
        return announcementOf(packet) if host == GATEWAY else None

    def fuzz(self, packets: Iterable[bytes]) -> None:
        for i, packet in enumerate(packets):
            host = (GATEWAY, OTHER)[i % 2]
            before = len(self.received)
            self.protocol.datagramReceived(packet, (host, 5351))
            got = self.received[before:]
            expected = self.expected(packet, host)
            if expected is None:
                self.assertEqual(got, [], packet.hex())
            else:
                self.assertEqual(len(got), 1, packet.hex())
                self.assertEqual((got[0].kind, got[0].epoch), expected)
                if expected[0] is AnnouncementKind.NATPMP:
                    # RFC 6886 s3.2: 0.0.0.0 names no external address.
                    address = IPv4Address(packet[8:12])
                    self.assertEqual(
                        got[0].externalAddress, address if int(address) else None
                    )
        self.assertEqual(self.logs.failures, [])

    def test_corpus(self) -> None:
        """
        Valid messages, every length 0-1100 and mutations.
        """
        self.fuzz(corpus(9))

    def test_everyVersionAndOpcode(self) -> None:
        """
        Every version with every opcode.
        """
        self.fuzz(everyVersionAndOpcode(10, (24,)))

    @FUZZ
    @given(st.binary(max_size=MAX_LENGTH))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary bytes.
        """
        self.fuzz([packet, packet])
