"""
Property tests of the PCP side of the gateway: whatever well-formed MAP
request arrives, the answer is a well-formed PCP response that names the
same mapping (RFC 6887 s8.3, s11.3).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    PreferFailureOption,
    Request,
    ResultCode,
    UnknownOption,
    decodeResponse,
)

from ._helpers import CLIENT
from ._pcp import PCPGatewayMixin

options = st.lists(
    st.one_of(
        st.just(PreferFailureOption()),
        st.builds(
            UnknownOption,
            st.integers(4, 255),
            st.binary(max_size=12),
        ),
    ),
    max_size=3,
)

requests = st.builds(
    lambda nonce, protocol, internal, external, lifetime, opts: Request(
        Opcode.MAP,
        lifetime,
        IPv4Address(CLIENT),
        MapData(nonce, protocol, internal, external, IPv4Address(0)),
        tuple(opts),
    ),
    st.binary(min_size=12, max_size=12),
    st.sampled_from([0, 6, 17, 132]),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    options,
)


class PropertyTests(PCPGatewayMixin):
    @settings(max_examples=300)
    @given(requests)
    def test_answersNameTheMapping(self, request: Request) -> None:
        """
        Every MAP gets a decodable version-2 MAP response with a known
        result, carrying the request's nonce, protocol and internal port;
        a success grants a lifetime within [120, 86400] or deletes (RFC
        6887 s8.3, s11.3, s15).
        """
        # RFC 6887 s11.3
        try:
            packet = request.encode()
        except ValueError:
            return  # longer than 1100 bytes: not a request
        reply = self.raw(packet)
        assert reply is not None
        response = decodeResponse(reply)
        self.assertIs(response.opcode, Opcode.MAP)
        self.assertIn(response.resultCode, list(ResultCode))
        data = response.data
        assert isinstance(data, MapData)
        sent = request.data
        assert isinstance(sent, MapData)
        self.assertEqual(
            (data.nonce, data.protocol, data.internalPort),
            (sent.nonce, sent.protocol, sent.internalPort),
        )
        if response.resultCode == ResultCode.SUCCESS:
            if request.lifetime == 0:
                self.assertEqual(response.lifetime, 0)
            else:
                self.assertTrue(120 <= response.lifetime <= 86400)
        else:
            self.assertIn(response.lifetime, (30, 1800))
