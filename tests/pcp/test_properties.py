"""
Property tests for L{twisted_natpmp.pcp._wire}: every message survives a
round trip, and no bytes make decoding raise anything but L{MalformedPacket}.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import IPAddress
from twisted_natpmp.pcp._wire import (
    HEADER_SIZE,
    MAX_SIZE,
    FilterOption,
    MalformedPacket,
    MapData,
    Opcode,
    OpcodeData,
    Option,
    PeerData,
    PreferFailureOption,
    Request,
    Response,
    ResultCode,
    ThirdPartyOption,
    UnknownOption,
    decodeRequest,
    decodeResponse,
    errorResponse,
)

PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
nonces = st.binary(min_size=12, max_size=12)
ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
# IPv4-mapped IPv6 addresses read back as IPv4 (RFC 6887 s5): leave them out.
ipv6 = st.builds(
    IPv6Address,
    st.integers(0, 2**128 - 1).filter(lambda n: n >> 32 != 0xFFFF),
)
addresses: st.SearchStrategy[IPAddress] = st.one_of(ipv4, ipv6)
mapData = st.builds(MapData, nonces, st.integers(0, 255), ports, ports, addresses)
peerData = st.builds(
    PeerData, nonces, st.integers(0, 255), ports, ports, addresses, ports, addresses
)


@st.composite
def filters(draw: st.DrawFn) -> FilterOption:
    address = draw(addresses)
    low = 96 if isinstance(address, IPv4Address) else 1
    prefix = draw(st.one_of(st.just(0), st.integers(low, 128)))
    return FilterOption(prefix, draw(ports), address)


def unknownOptions(codes: st.SearchStrategy[int]) -> st.SearchStrategy[Option]:
    return st.builds(UnknownOption, codes, st.binary(max_size=40))


optional = st.integers(128, 255)
anyUnknown = st.integers(0, 255).filter(lambda code: code > 3)
anyOption: st.SearchStrategy[Option] = st.one_of(
    st.builds(ThirdPartyOption, addresses),
    st.just(PreferFailureOption()),
    filters(),
    unknownOptions(anyUnknown),
)


@st.composite
def requestOptions(draw: st.DrawFn, opcode: Opcode) -> tuple[Option, ...]:
    """
    Options a request with C{opcode} may carry (RFC 6887 s7.3, s13).
    """
    options: list[Option] = draw(st.lists(unknownOptions(optional), max_size=4))
    if opcode is not Opcode.ANNOUNCE and draw(st.booleans()):
        options.append(ThirdPartyOption(draw(addresses)))
    if opcode is Opcode.MAP:
        if draw(st.booleans()):
            options.append(PreferFailureOption())
        options.extend(draw(st.lists(filters(), max_size=3)))
    return tuple(draw(st.permutations(options)))


def dataFor(opcode: Opcode) -> st.SearchStrategy[OpcodeData]:
    if opcode is Opcode.MAP:
        return mapData
    if opcode is Opcode.PEER:
        return peerData
    return st.none()


@st.composite
def requests(draw: st.DrawFn) -> Request:
    opcode = draw(st.sampled_from(Opcode))
    return Request(
        opcode,
        draw(u32),
        draw(addresses),
        draw(dataFor(opcode)),
        draw(requestOptions(opcode)),
    )


@st.composite
def responses(draw: st.DrawFn) -> Response:
    opcode = draw(st.sampled_from(Opcode))
    result = draw(st.integers(0, 255))
    data = draw(dataFor(opcode))
    if result and draw(st.booleans()):
        return Response(opcode, result, draw(u32), draw(u32))
    options = tuple(draw(st.lists(anyOption, max_size=6)))
    return Response(opcode, result, draw(u32), draw(u32), data, options)


def headed(version: int, opcode: int, rest: bytes) -> bytes:
    """
    C{rest} behind a first two bytes chosen to reach past the first checks.
    """
    return bytes([version, opcode]) + rest


# Bytes that reach deep into the decoders: a version-2 header with each
# opcode, either R bit, then arbitrary data padded to a multiple of 4.
deepPackets = st.builds(
    lambda opcode, rest: headed(2, opcode, rest + bytes(-(len(rest) + 2) % 4)),
    st.sampled_from([0, 1, 2, 3, 0x80, 0x81, 0x82, 0x83]),
    st.binary(min_size=22, max_size=200),
)
anyPackets = st.one_of(st.binary(max_size=1200), deepPackets)


class RoundTripTests(SynchronousTestCase):
    @PROPERTIES
    @given(requests())
    def test_request(self, request: Request) -> None:
        # RFC 6887 s7.1, s7.3: what is encoded decodes to the same request,
        # a multiple of 4 bytes from 24 to 1100.
        packet = request.encode()
        self.assertEqual(len(packet) % 4, 0)
        self.assertTrue(HEADER_SIZE <= len(packet) <= MAX_SIZE)
        self.assertEqual(decodeRequest(packet), request)

    @PROPERTIES
    @given(responses())
    def test_response(self, response: Response) -> None:
        # RFC 6887 s7.2, s7.3.
        packet = response.encode()
        self.assertEqual(len(packet) % 4, 0)
        self.assertEqual(decodeResponse(packet), response)

    @PROPERTIES
    @given(st.sampled_from(Opcode), st.integers(0, 255), u32, u32)
    def test_otherVersion(
        self, opcode: Opcode, version: int, lifetime: int, epoch: int
    ) -> None:
        # RFC 6887 s9: UNSUPP_VERSION in any version, header only.
        response = Response(
            opcode, ResultCode.UNSUPP_VERSION, lifetime, epoch, version=version
        )
        self.assertEqual(decodeResponse(response.encode()), response)


class ArbitraryBytesTests(SynchronousTestCase):
    @PROPERTIES
    @given(anyPackets)
    def test_decodeRequest(self, packet: bytes) -> None:
        # Whatever arrives, the decoder answers a request or its own error.
        try:
            request = decodeRequest(packet)
        except MalformedPacket as error:
            self.assertEqual(error.packet, packet)
        else:
            self.assertEqual(decodeRequest(request.encode()), request)

    @PROPERTIES
    @given(anyPackets)
    def test_decodeResponse(self, packet: bytes) -> None:
        try:
            response = decodeResponse(packet)
        except MalformedPacket as error:
            self.assertIsNone(error.resultCode)
        else:
            self.assertEqual(decodeResponse(response.encode()), response)

    @PROPERTIES
    @given(anyPackets.filter(lambda p: len(p) >= 2), st.sampled_from(ResultCode))
    def test_errorResponse(self, packet: bytes, code: ResultCode) -> None:
        # RFC 6887 s8.3: an error answer to anything is 24 to 1100 bytes, a
        # multiple of 4, version 2 with the R bit and the code.
        answer = errorResponse(packet, code, 0, 1)
        self.assertEqual(len(answer) % 4, 0)
        self.assertTrue(HEADER_SIZE <= len(answer) <= MAX_SIZE)
        self.assertEqual(answer[0], 2)
        self.assertEqual(answer[1], 0x80 | packet[1])
        self.assertEqual(answer[3], code)
