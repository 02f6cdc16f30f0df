"""
Bounded in-memory fuzzing of the NAT-PMP client: fuzzed replies, from its
gateway and from elsewhere, checked against the RFC 6886 oracle in
L{tests.natpmp._fuzzing}.  Deterministic, on a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import validResponses
from twisted_natpmp.natpmp._wire import Protocol
from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.testing import MemoryUDPNetwork

from .._fuzzing import FUZZ, GATEWAY, HOST, OTHER, LogWatch, corpus
from ._fuzzing import responseKind


class ClientTests(SynchronousTestCase):
    """
    The client under fuzzed replies: a request is answered only by a reply
    that matches it (RFC 6886 s3.2, s3.3, s3.5) from its gateway, and no
    exception escapes.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # No gateway listens: the requests go nowhere, the replies are fuzz.
        self.network = MemoryUDPNetwork(clock=self.clock, drop=lambda d: True)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )
        self.logs = LogWatch(self)

    def request(self, kind: str) -> Deferred[Any]:
        d: Deferred[Any]
        if kind == "external":
            d = self.client.externalAddress()
        elif kind == "map":
            d = self.client.addMapping(Protocol.UDP, 5000, lifetime=7200)
        else:
            d = self.client.deleteMapping(Protocol.TCP, 6000)
        return d

    def answers(self, kind: str, packet: bytes) -> bool:
        """
        May C{packet} answer a request of C{kind}: an external-address
        request, a UDP mapping of port 5000, a TCP deletion of port 6000?
        """
        got = responseKind(packet)
        opcode = {"external": 128, "map": 129, "delete": 130}[kind]
        if got == "error":
            # s3.5, Errata 3618: Unsupported Version may carry 0 or 128.
            unsupported = int.from_bytes(packet[2:4], "big") == 1
            return packet[1] == opcode or (unsupported and packet[1] in (0, 128))
        if packet[1] != opcode:
            return False
        if kind == "external":
            return got == "external"
        # s3.3: the reply echoes the internal port asked about.
        wanted = 5000 if kind == "map" else 6000
        return got == "map" and int.from_bytes(packet[8:10], "big") == wanted

    def fuzz(self, packets: Iterable[bytes], sources: list[tuple[str, int]]) -> None:
        kinds = ["external", "map", "delete"]
        for i, packet in enumerate(packets):
            kind = kinds[i % 3]
            d = self.request(kind)
            outcome: list[object] = []
            d.addBoth(outcome.append)
            source = sources[i % len(sources)]
            self.client.protocol.datagramReceived(packet, source)
            if outcome:
                self.assertEqual(source, (GATEWAY, 5351), packet.hex())
                self.assertTrue(self.answers(kind, packet), f"{kind} {packet.hex()}")
            else:
                # Not answered: only cancelling ends it.
                self.client.cancelPending()
                self.assertEqual(len(outcome), 1)
                self.assertIsInstance(outcome[0], Failure)
        self.assertEqual(self.logs.failures, [])

    def test_corpus(self) -> None:
        """
        Valid replies, every length 0-1100 and mutations, from the gateway.
        """
        self.fuzz(corpus(8), [(GATEWAY, 5351)])

    def test_otherSources(self) -> None:
        """
        Valid replies from anywhere but the gateway's port 5351 answer
        nothing (RFC 6886 s3.1).
        """
        sources = [(OTHER, 5351), (GATEWAY, 5350), (GATEWAY, 5352), ("192.0.3.1", 5351)]
        self.fuzz(validResponses() * 2, sources)

    @FUZZ
    @given(st.binary(max_size=40))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary replies.
        """
        self.fuzz([packet, packet, packet], [(GATEWAY, 5351)])
