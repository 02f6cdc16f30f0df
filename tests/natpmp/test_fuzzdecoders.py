"""
Bounded in-memory fuzzing of NAT-PMP's packet readers on the client side,
here the codec's decoders (the client, the announcement listener and their
bounds in C{tests.natpmp.test_fuzzclient}, C{test_fuzzannounce} and
C{test_fuzzbounded}; the gateway's in C{tests.server.test_fuzz}, the
service's in C{tests.service.natpmp.test_fuzz}).

Arbitrary bytes of every length 0-1100, every version and opcode byte,
seeded mutations of valid messages and their edge values (ports 0 and
65535, lifetimes 0, 1 and 2**32-1), checked against oracles written from
RFC 6886 (in L{tests._fuzzing} and L{tests.natpmp._fuzzing}), not from the
code under test.  Everything is deterministic (seeded generators;
Hypothesis derandomized, no example database) and runs on a L{Clock}, in a
few seconds.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tools.impair.mutations import EDGE_LIFETIMES, EDGE_PORTS, MAX_LENGTH
from twisted_natpmp.natpmp._wire import (
    OPCODES,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    UnsupportedOpcode,
    UnsupportedVersion,
    decodeRequest,
    decodeResponse,
    encode,
)

from .._fuzzing import (
    FUZZ,
    MAP_REQUEST,
    MAP_RESPONSE,
    corpus,
    everyVersionAndOpcode,
    requestKind,
)
from ._fuzzing import responseKind


class DecoderTests(SynchronousTestCase):
    """
    L{decodeRequest} and L{decodeResponse}: every packet is decoded as the
    RFC says, or refused with L{MalformedPacket}, never anything else.
    """

    def checkRequest(self, packet: bytes) -> None:
        kind = requestKind(packet)
        try:
            request = decodeRequest(packet)
        except UnsupportedVersion:
            # RFC 6886 s3.5: a version other than 0 (the gateway drops
            # responses before it looks at the version).
            self.assertTrue(len(packet) >= 2 and packet[0] != 0, packet.hex())
            return
        except UnsupportedOpcode:
            self.assertEqual(kind, "opcode", packet.hex())
            return
        except MalformedPacket:
            self.assertIn(kind, ("drop", "version"), packet.hex())
            return
        if isinstance(request, ExternalAddressRequest):
            self.assertEqual(kind, "external", packet.hex())
        else:
            self.assertIsInstance(request, MapRequest)
            self.assertEqual(kind, "map", packet.hex())
            _, opcode, _, internal, external, lifetime = MAP_REQUEST.unpack_from(packet)
            self.assertEqual(
                (OPCODES[request.protocol], request.internalPort), (opcode, internal)
            )
            self.assertEqual(
                (request.suggestedExternalPort, request.lifetime), (external, lifetime)
            )
        # Trailing bytes are ignored; what was decoded is what was sent,
        # but for the reserved field, ignored on reception (RFC 6886 s3.3).
        wire = encode(request)
        sent = packet[: len(wire)]
        self.assertEqual(sent[:2] + sent[4:], wire[:2] + wire[4:])

    def checkResponse(self, packet: bytes) -> None:
        kind = responseKind(packet)
        try:
            response = decodeResponse(packet)
        except MalformedPacket:
            self.assertEqual(kind, "drop", packet.hex())
            return
        kinds: dict[type, str] = {
            ExternalAddressResponse: "external",
            MapResponse: "map",
            ErrorResponse: "error",
        }
        self.assertEqual(kind, kinds[type(response)], packet.hex())
        wire = encode(response)
        self.assertEqual(packet[: len(wire)], wire)

    def test_corpus(self) -> None:
        """
        Valid messages, every length 0-1100 and mutations of valid messages.
        """
        for packet in corpus(1):
            self.checkRequest(packet)
            self.checkResponse(packet)

    def test_everyVersionAndOpcode(self) -> None:
        """
        Every version byte with every opcode byte.
        """
        for packet in everyVersionAndOpcode(2, (12, 16)):
            self.checkRequest(packet)
            self.checkResponse(packet)

    @FUZZ
    @given(st.binary(max_size=MAX_LENGTH))
    def test_arbitrary(self, packet: bytes) -> None:
        """
        Arbitrary bytes.
        """
        self.checkRequest(packet)
        self.checkResponse(packet)

    @FUZZ
    @given(
        st.sampled_from([0, 1, 2]),
        st.sampled_from(EDGE_PORTS) | st.integers(0, 65535),
        st.sampled_from(EDGE_PORTS) | st.integers(0, 65535),
        st.sampled_from(EDGE_LIFETIMES) | st.integers(0, 2**32 - 1),
        st.binary(max_size=8),
    )
    def test_edgeValues(
        self, opcode: int, internal: int, external: int, lifetime: int, tail: bytes
    ) -> None:
        """
        Requests and responses with edge values round-trip.
        """
        packet = MAP_REQUEST.pack(0, opcode, 0, internal, external, lifetime)
        self.checkRequest(packet + tail)
        self.checkResponse(
            MAP_RESPONSE.pack(
                0, opcode | 128, 0, lifetime, internal, external, lifetime
            )
            + tail
        )
