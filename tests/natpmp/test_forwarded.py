"""
Tests for L{twisted_natpmp.natpmp._forwarded}: the VPN gateway's forwarded
port (internal port 0 with a lifetime), its lenient reply matching, and
that every other request keeps the strict RFC 6886 s3.3 match and internal
port 0 keeps meaning delete-all.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.natpmp._forwarded import ForwardedPortRequest
from twisted_natpmp.natpmp._matching import describeRequest, matches
from twisted_natpmp.natpmp._wire import (
    MapRequest,
    MapResponse,
    Protocol,
    Request,
    decodeRequest,
)
from twisted_natpmp.testing._gateway import EXTERNAL

from ._client import ClientTestMixin


def grant(request: Request, internalPort: int, externalPort: int) -> bytes:
    """
    A VPN gateway's success reply to C{request}: 60 s whatever was asked.
    """
    assert isinstance(request, MapRequest)
    return MapResponse(
        request.transport, 0, 500, internalPort, externalPort, 60
    ).encode()


class RequestTests(SynchronousTestCase):
    def test_wire(self) -> None:
        # ProtonVPN's recipe: opcode 1 (UDP), internal port 0, a lifetime.
        request = ForwardedPortRequest(Protocol.UDP, 0, 60)
        self.assertEqual(
            request.encode(), b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x3c"
        )
        self.assertEqual(request.internalPort, 0)

    def test_lifetimeZeroRefused(self) -> None:
        # RFC 6886 s3.4: internal port 0 with lifetime 0 deletes all; a
        # forwarded-port request never says that.
        self.assertRaises(ValueError, ForwardedPortRequest, Protocol.UDP, 0, 0)

    def test_notEqualToMapRequest(self) -> None:
        self.assertNotEqual(
            ForwardedPortRequest(Protocol.TCP, 5, 60),
            MapRequest(Protocol.TCP, 0, 5, 60),
        )

    def test_describe(self) -> None:
        self.assertEqual(
            describeRequest(ForwardedPortRequest(Protocol.TCP)),
            "the TCP forwarded-port request",
        )


class MatchingTests(SynchronousTestCase):
    """
    RFC 6886 s3.3, s3.5: a mapping reply is matched by opcode, transport and
    internal port; the forwarded-port mode alone also accepts the granted
    port echoed as the internal port.
    """

    def reply(
        self, transport: Protocol, internalPort: int, lifetime: int = 60
    ) -> MapResponse:
        return MapResponse(transport, 0, 1, internalPort, 38534, lifetime)

    def test_forwardedInternalPortZeroOrGranted(self) -> None:
        # The two VPN gateway behaviours seen: internal port 0 echoed, or
        # the granted port.
        request = ForwardedPortRequest(Protocol.UDP)
        for internalPort in (0, 38534):
            self.assertTrue(
                matches(request, self.reply(Protocol.UDP, internalPort), False)
            )

    def test_forwardedOtherMappingNotMatched(self) -> None:
        # RFC 6886 s3.3: a reply for another mapping of the transport
        # (internal 5000, external 51234), a late one or a deletion's, is
        # not the grant.
        request = ForwardedPortRequest(Protocol.UDP)
        other = MapResponse(Protocol.UDP, 0, 1, 5000, 51234, 60)
        self.assertFalse(matches(request, other, False))
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 1), False))
        deletion = MapResponse(Protocol.UDP, 0, 1, 5000, 0, 0)
        self.assertFalse(matches(request, deletion, False))

    def test_forwardedTransportStillMatters(self) -> None:
        # RFC 6886 s3.3: the opcode is the request's plus 128.
        request = ForwardedPortRequest(Protocol.UDP)
        self.assertFalse(matches(request, self.reply(Protocol.TCP, 0), False))

    def test_normalModeStrict(self) -> None:
        # RFC 6886 s3.3: outside the forwarded-port mode a reply echoing
        # another internal port does not answer the request.
        request = MapRequest(Protocol.UDP, 5000, 5000, 60)
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 0), False))
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 38534), False))
        self.assertTrue(matches(request, self.reply(Protocol.UDP, 5000), False))

    def test_deleteAllStrict(self) -> None:
        # RFC 6886 s3.4: internal port 0 with lifetime 0 is delete-all, whose
        # reply carries internal port 0; a grant of a port is no answer.
        request = MapRequest(Protocol.UDP, 0, 0, 0)
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 0), False))
        self.assertTrue(matches(request, self.reply(Protocol.UDP, 0, 0), False))
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 38534, 0), False))

    def test_lateDeleteAllReply(self) -> None:
        # RFC 6886 s3.4: a late duplicate reply to a delete-all (lifetime 0)
        # does not answer a forwarded-port request sent after it.
        request = ForwardedPortRequest(Protocol.UDP)
        self.assertFalse(matches(request, self.reply(Protocol.UDP, 0, 0), True))


class ClientTests(ClientTestMixin, SynchronousTestCase):
    def test_interface(self) -> None:
        from zope.interface.verify import verifyObject

        from twisted_natpmp.interfaces import IForwardedPortMapper

        self.assertTrue(verifyObject(IForwardedPortMapper, self.client))

    def test_forwardedPort(self) -> None:
        # ProtonVPN: "Mapped public port 38534 protocol UDP to local port 0
        # lifetime 60" (PROTOCOL.md E1).
        self.gateway.reply = lambda r: (
            self.gateway.answer(r) if r.opcode == 0 else [grant(r, 0, 38534)]
        )
        self.client.externalAddress()
        d = self.client.forwardedPort(Protocol.UDP, lifetime=3600)
        self.network.flush()
        mapping = self.successResultOf(d)
        self.assertEqual(
            (mapping.internalPort, mapping.externalPort, mapping.lifetime),
            (38534, 38534, 60),
        )
        self.assertEqual(mapping.renewAfter, 30.0)
        request, _ = self.gateway.requests[-1]
        self.assertEqual(request, MapRequest(Protocol.UDP, 0, 0, 3600))

    def test_replyEchoesGrantedPort(self) -> None:
        # The 2023 capture: "public port 37713 ... to local port 37713".
        self.gateway.reply = lambda r: [grant(r, 37713, 37713)]
        d = self.client.forwardedPort(Protocol.TCP, externalPort=37713)
        self.network.flush()
        self.assertEqual(self.successResultOf(d).externalPort, 37713)
        packet = self.network.log[0].data
        self.assertEqual(decodeRequest(packet), MapRequest(Protocol.TCP, 0, 37713, 60))

    def test_externalAddressAtReply(self) -> None:
        # The address known when the reply comes is the one reported.
        self.gateway.reply = lambda r: (
            self.gateway.answer(r) if r.opcode == 0 else [grant(r, 0, 4000)]
        )
        d = self.client.forwardedPort(Protocol.UDP)
        self.client.externalAddress()
        self.network.flush()
        self.assertIsNone(self.successResultOf(d).externalAddress)
        d = self.client.forwardedPort(Protocol.UDP)
        self.network.flush()
        self.assertEqual(self.successResultOf(d).externalAddress, EXTERNAL)

    def test_refused(self) -> None:
        # miniupnpd refuses internal port 0 with a lifetime: result 2.
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.UDP, 2, 5, 0, 0, 0).encode()
        ]
        d = self.client.forwardedPort(Protocol.UDP)
        self.network.flush()
        self.failureResultOf(d, errors.NotAuthorizedError)

    def test_noPortGranted(self) -> None:
        # RFC 6886 s3.3: a success without a port is no usable answer.
        self.gateway.reply = lambda r: [grant(r, 0, 0)]
        d = self.client.forwardedPort(Protocol.UDP)
        self.network.flush()
        self.failureResultOf(d, errors.InvalidResponseError)

    def test_addMappingPortZeroRefused(self) -> None:
        # RFC 6886 s3.4: without the explicit mode internal port 0 is never
        # mapped, and deleting it deletes all.
        self.failureResultOf(self.client.addMapping(Protocol.UDP, 0), ValueError)
        d = self.client.deleteAllMappings(Protocol.UDP)
        self.network.flush()
        self.successResultOf(d)
        request, _ = self.gateway.requests[-1]
        self.assertEqual(request, MapRequest(Protocol.UDP, 0, 0, 0))

    def test_normalModeIgnoresOtherPort(self) -> None:
        # RFC 6886 s3.3: a normal request's reply must echo its internal
        # port; one echoing 0 is dropped and the request retransmitted.
        self.gateway.reply = lambda r: [grant(r, 0, 5000)]
        d = self.client.addMapping(Protocol.UDP, 5000, timeouts=(0.25, 0.5))
        self.network.flush()
        self.assertNoResult(d)
        for _ in range(4):
            self.clock.advance(0.25)
            self.network.flush()
        self.failureResultOf(d, errors.NoResponseError)
        self.assertEqual(len(self.gateway.requests), 2)
