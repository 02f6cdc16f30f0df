"""
Tests for L{twisted_natpmp.pcp._build}: the messages a PCP client sends and
the mapping it reads from a success.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Mapping, ProtocolName, Transport
from twisted_natpmp.pcp._build import (
    announceRequest,
    deleteRequest,
    grantedMapping,
    mapRequest,
    renewalDelay,
)
from twisted_natpmp.pcp._wire import (
    MapData,
    Opcode,
    PreferFailureOption,
    Response,
    ResultCode,
    UnknownOption,
    decodeResponse,
)

from ..vectors import loadCases

PCP_MAP = next(case for name, case in loadCases().items() if name.startswith("PCP"))
CLIENT = IPv4Address("10.77.0.2")
NONCE = bytes(range(12))


class RequestTests(SynchronousTestCase):
    def test_map(self) -> None:
        # RFC 6887 s11.1: byte for byte the request miniupnpd granted, the
        # IPv4 all-zeros address suggested for no preference.
        request = mapRequest(CLIENT, NONCE, Transport.TCP, 7000, 3600, 7000)
        self.assertEqual(request.encode(), PCP_MAP.request)

    def test_noPreferenceByFamily(self) -> None:
        # RFC 6887 s11.1: the all-zeros address of the client's family.
        client = IPv6Address("2001:db8::2")
        request = mapRequest(client, NONCE, Transport.UDP, 5000, 120)
        assert isinstance(request.data, MapData)
        self.assertEqual(request.data.externalAddress, IPv6Address(0))
        self.assertEqual(request.data.protocol, 17)

    def test_preferFailure(self) -> None:
        # RFC 6887 s13.2: PREFER_FAILURE comes first; it needs a suggestion
        # (miniupnpd and bodgit answer MALFORMED_OPTION without one).
        extra = UnknownOption(200, b"")
        request = mapRequest(
            CLIENT,
            NONCE,
            Transport.TCP,
            7000,
            3600,
            7000,
            preferFailure=True,
            options=(extra,),
        )
        self.assertEqual(request.options, (PreferFailureOption(), extra))
        self.assertRaises(
            ValueError,
            mapRequest,
            CLIENT,
            NONCE,
            Transport.TCP,
            7000,
            3600,
            preferFailure=True,
        )
        withAddress = mapRequest(
            CLIENT,
            NONCE,
            Transport.TCP,
            7000,
            3600,
            suggestedAddress=IPv4Address("192.0.3.77"),
            preferFailure=True,
        )
        self.assertEqual(withAddress.options, (PreferFailureOption(),))

    def test_mapNeedsLifetime(self) -> None:
        # RFC 6887 s15: lifetime 0 is a deletion.
        self.assertRaises(ValueError, mapRequest, CLIENT, NONCE, Transport.TCP, 1, 0)

    def test_delete(self) -> None:
        # RFC 6887 s15: lifetime 0, the mapping's nonce, no suggestion.
        request = deleteRequest(CLIENT, NONCE, Transport.TCP, 7000)
        self.assertEqual(
            request.encode(),
            PCP_MAP.request[:4]
            + bytes(4)
            + PCP_MAP.request[8:42]
            + bytes(2)
            + PCP_MAP.request[44:],
        )

    def test_announce(self) -> None:
        # RFC 6887 s14.1: the 24-byte probe, lifetime 0.
        packet = announceRequest(CLIENT).encode()
        self.assertEqual(len(packet), 24)
        self.assertEqual(packet[:8], bytes([2, Opcode.ANNOUNCE]) + bytes(6))


class GrantedMappingTests(SynchronousTestCase):
    def test_granted(self) -> None:
        # RFC 6887 s11.1: the assigned port and address, the granted lifetime.
        assert PCP_MAP.response is not None
        mapping = grantedMapping(decodeResponse(PCP_MAP.response), 1900.0)
        self.assertEqual(
            mapping,
            Mapping(
                Transport.TCP,
                7000,
                7000,
                3600,
                17,
                IPv4Address("192.0.3.77"),
                1900.0,
                ProtocolName.PCP,
            ),
        )

    def test_notGranted(self) -> None:
        data = MapData(NONCE, 6, 1, 1, CLIENT)
        for response in (
            Response(Opcode.MAP, ResultCode.NO_RESOURCES, 30, 1, data),
            Response(Opcode.MAP, 0, 30, 1, MapData(NONCE, 132, 1, 1, CLIENT)),
            Response(Opcode.ANNOUNCE, 0, 0, 1),
        ):
            self.assertRaises(ValueError, grantedMapping, response)


class RenewalTests(SynchronousTestCase):
    def test_range(self) -> None:
        # RFC 6887 s11.2.1: uniformly from 1/2 to 5/8 of the lifetime.
        self.assertEqual(renewalDelay(800, lambda: 0.0), 400)
        self.assertEqual(renewalDelay(800, lambda: 0.5), 450)
        self.assertAlmostEqual(renewalDelay(800, lambda: 0.999999), 500, places=3)
        for _ in range(100):
            self.assertTrue(400 <= renewalDelay(800) < 500)
