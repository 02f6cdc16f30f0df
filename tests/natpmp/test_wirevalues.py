"""
Tests for the messages of L{twisted_natpmp.natpmp._wire} as values: round
trips of every message type, the field ranges the wire can carry, equality
and immutability.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.natpmp._wire import (
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MalformedPacket,
    MapRequest,
    MapResponse,
    Message,
    Protocol,
    decodeRequest,
    decodeResponse,
    encode,
)

ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
results = st.integers(0, 0xFFFF)
protocols = st.sampled_from(list(Protocol))
addresses = st.builds(IPv4Address, u32)

requests = st.one_of(
    st.just(ExternalAddressRequest()),
    st.builds(MapRequest, protocols, ports, ports, u32),
)
responses = st.one_of(
    st.builds(ExternalAddressResponse, results, u32, addresses),
    st.builds(MapResponse, protocols, results, u32, ports, ports, u32),
    # Header-only responses always carry an error (a success needs a body).
    st.builds(
        ErrorResponse,
        st.sampled_from([128, 129, 130, 131, 200, 255]),
        st.integers(1, 0xFFFF),
        u32,
    ),
)


class RoundTripTests(SynchronousTestCase):
    """
    Property: decode(encode(m)) == m for every message, in its direction.
    """

    @given(requests)
    def test_requests(self, message: Message) -> None:
        self.assertEqual(decodeRequest(encode(message)), message)

    @given(responses)
    def test_responses(self, message: Message) -> None:
        self.assertEqual(decodeResponse(encode(message)), message)

    @given(responses, st.binary(max_size=16))
    def test_trailing(self, message: Message, junk: bytes) -> None:
        """
        Trailing bytes are ignored; but an 8-byte header followed by junk
        cannot be told from a longer response with an error, so those are
        only required to keep their header.
        """
        decoded = decodeResponse(encode(message) + junk)
        if isinstance(message, ErrorResponse):
            self.assertEqual(
                (decoded.resultCode, decoded.epoch),
                (message.resultCode, message.epoch),
            )
        else:
            self.assertEqual(decoded, message)

    @given(st.binary(max_size=40))
    def test_junk(self, packet: bytes) -> None:
        """
        Any bytes either decode or raise L{MalformedPacket}.
        """
        for decode in (decodeRequest, decodeResponse):
            try:
                decode(packet)
            except MalformedPacket:
                pass


class ValueTests(SynchronousTestCase):
    """
    Messages refuse field values the wire cannot carry.
    """

    def test_ranges(self) -> None:
        self.assertRaises(ValueError, MapRequest, Protocol.TCP, 70000, 0, 1)
        self.assertRaises(ValueError, MapRequest, Protocol.TCP, 1, -1, 1)
        self.assertRaises(ValueError, MapRequest, Protocol.TCP, 1, 1, 2**32)
        self.assertRaises(ValueError, MapRequest, 3, 1, 1, 1)
        self.assertRaises(ValueError, ErrorResponse, 256, 1, 1)

    def test_protocolLabel(self) -> None:
        self.assertEqual(Protocol.TCP.label, "tcp")
        self.assertEqual(MapRequest(1, 1, 1, 1).protocol, Protocol.UDP)  # type: ignore[arg-type]


class MessageValueTests(SynchronousTestCase):
    """
    Messages are immutable values equal only to the same type of message.
    """

    def test_typeAwareEquality(self) -> None:
        request = MapRequest(Protocol.TCP, 80, 80, 60)
        self.assertNotEqual(request, (Protocol.TCP, 80, 80, 60))
        self.assertNotEqual(ErrorResponse(128, 1, 5), (128, 1, 5))
        self.assertEqual(request, MapRequest(Protocol.TCP, 80, 80, 60))
        self.assertEqual(hash(request), hash(MapRequest(Protocol.TCP, 80, 80, 60)))
        self.assertNotEqual(hash(ExternalAddressRequest()), hash(()))

    def test_immutable(self) -> None:
        request = MapRequest(Protocol.TCP, 80, 80, 60)
        self.assertRaises(AttributeError, setattr, request, "lifetime", 0)

    def test_addressCacheBounded(self) -> None:
        """
        Decoded addresses are cached, but the cache never grows without
        bound: the bytes come from the network.
        """
        from twisted_natpmp.natpmp import _wire

        for n in range(1000):
            address = IPv4Address(0x0A000000 + n)
            packet = ExternalAddressResponse(0, 1, address).encode()
            self.assertEqual(decodeResponse(packet).externalAddress, address)  # type: ignore[union-attr]
            self.assertLessEqual(len(_wire._ADDRESSES), _wire._ADDRESS_CACHE_SIZE)
