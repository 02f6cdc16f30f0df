"""
Tests for L{twisted_natpmp.natpmp.responder}: NAT-PMP requests answered by
our gateway (RFC 6886), on an in-memory UDP network and a L{Clock}.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.errors import (
    GatewayError,
    NetworkFailureError,
    NotAuthorizedError,
    OutOfResourcesError,
    UnsupportedOpcodeError,
    UserExceededQuotaError,
)
from twisted_natpmp.natpmp._wire import (
    OPCODES,
)
from twisted_natpmp.natpmp.responder import resultFor
from twisted_natpmp.server.backends import MemoryBackend

from ..vectors import loadCases
from ._helpers import (
    CLIENT,
    OTHER,
    TCP,
    UDP,
    GatewayTestsMixin,
    epochOf,
    mapRequest,
    parseMap,
)


class GoldenVectorTests(GatewayTestsMixin, SynchronousTestCase):
    def test_miniupnpdVectors(self) -> None:
        """
        The requests captured from miniupnpd 2.3.1 get the same answers from
        our gateway (epochs aside), except where miniupnpd departs from RFC
        6886 and we follow the RFC.
        """
        self.startGateway(maxLifetime=2**32 - 1)
        epoch = "{epoch}"
        # Keyed by the start of the case's name.
        ours = {
            # RFC 6886 s3.3: suggested port 0 gets "a high-numbered port of
            # its choosing" (miniupnpd takes the internal port).
            "map udp 6001, suggested external 0": f"00810000{epoch}1771c00000001c20",
            # RFC 6886 s3.5, Errata 3618: result 1 with opcode 128.
            "version 1 request": f"00800001{epoch}",
            # RFC 6886 s3.5: the entire request is echoed.
            "unknown opcode 3, 12 bytes": f"00830005{epoch}00000001",
            # RFC 6886 s3.5: lifetime 0 when no mapping was created.
            "map with internal port 0 and lifetime 7200": (
                f"00820002{epoch}0000000000000000"
            ),
            # RFC 6886 s1.1: a NAT-PMP gateway answers PCP with result 1.
            "PCP (version 2)": f"00800001{epoch}",
        }
        cases = loadCases()
        used = set()
        for name, case in cases.items():
            reply = self.ask(case.request)
            override = [key for key in ours if name.startswith(key)]
            expected: str | None
            if override:
                expected = ours[override[0]]
                used.add(override[0])
            elif case.response is None:
                expected = None
            else:
                theirs = case.response.hex()
                expected = theirs[:8] + epoch + theirs[16:]
            if expected is None:
                self.assertIsNone(reply, name)
            else:
                assert reply is not None, name
                self.assertEqual(reply.hex(), expected.format(epoch="00000000"), name)
        self.assertEqual(used, set(ours))


class RequestTests(GatewayTestsMixin, SynchronousTestCase):
    def test_externalAddress(self) -> None:
        """
        An external address request gets the 12-byte response: opcode 128,
        result 0, the epoch and the configured address (RFC 6886 s3.2).
        """
        self.startGateway()
        self.clock.advance(7)
        self.assertEqual(
            self.ask(b"\x00\x00"),
            bytes.fromhex("00800000") + struct.pack("!I", 7) + bytes([192, 0, 3, 77]),
        )

    def test_epochSinceStart(self) -> None:
        """
        Every response carries the seconds since the gateway started; a
        restarted gateway starts again at 0 (RFC 6886 s3.6).
        """
        service = self.startGateway()
        self.clock.advance(100.5)
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 100)
        self.assertEqual(epochOf(self.ask(mapRequest(TCP, 1, 0, 60)) or b""), 100)
        self.assertEqual(epochOf(self.ask(b"\x00\x09") or b""), 100)
        self.assertEqual(epochOf(self.ask(b"\x01\x00") or b""), 100)
        service.stopService()
        service.startService()
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 0)
        self.clock.advance(3)
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 3)

    def test_map(self) -> None:
        """
        A map request gets the 16-byte response with opcode 128 plus the
        request's, the internal port, the external port granted and the
        lifetime (RFC 6886 s3.3); the mapping forwards to the request's
        source address (s3.3: a client maps ports only to itself).
        """
        self.startGateway()
        for protocol in (UDP, TCP):
            reply = self.ask(mapRequest(protocol, 6000, 7000, 3600)) or b""
            self.assertEqual(
                parseMap(reply), (128 + OPCODES[protocol], 0, 0, 6000, 7000, 3600)
            )
            self.assertEqual(
                self.backend.forwards[(protocol, 7000)], (IPv4Address(CLIENT), 6000)
            )

    def test_renewal(self) -> None:
        """
        Asking again renews and keeps the external port, whatever is
        suggested (RFC 6886 s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 6000, 7000, 3600))
        self.clock.advance(1800)
        reply = self.ask(mapRequest(TCP, 6000, 9000, 3600)) or b""
        self.assertEqual(parseMap(reply), (130, 0, 1800, 6000, 7000, 3600))

    def test_takenPort(self) -> None:
        """
        Another client suggesting a taken port gets another one (RFC 6886
        s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 6000, 7000, 3600))
        reply = parseMap(self.ask(mapRequest(TCP, 6000, 7000, 3600), OTHER) or b"")
        self.assertEqual(reply[1], 0)
        self.assertNotEqual(reply[4], 7000)

    def test_lifetimeCapped(self) -> None:
        """
        The gateway grants at most its maximum lifetime (RFC 6886 s3.3: it
        MAY reduce the lifetime).
        """
        self.startGateway(maxLifetime=600)
        reply = parseMap(self.ask(mapRequest(UDP, 6000, 0, 7200)) or b"")
        self.assertEqual(reply[5], 600)

    def test_errorReplyCarriesInternalPort(self) -> None:
        """
        An error reply still carries the requested internal port, external
        port 0 and lifetime 0 (RFC 6886 s3.5); here out of resources (4)
        beyond the per-client limit.
        """
        self.startGateway(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 6000, 0, 60))
        reply = parseMap(self.ask(mapRequest(UDP, 6001, 6001, 60)) or b"")
        self.assertEqual(reply, (129, 4, 0, 6001, 0, 0))
        self.assertEqual(
            parseMap(self.ask(mapRequest(UDP, 6001, 0, 60), OTHER) or b"")[1], 0
        )

    def test_portRangeExhausted(self) -> None:
        """
        When no external port is free the request fails with out of
        resources (RFC 6886 s3.3: "or return an error code").
        """
        self.startGateway(minPort=7000, maxPort=7000)
        self.assertEqual(parseMap(self.ask(mapRequest(UDP, 1, 0, 60)) or b"")[4], 7000)
        reply = parseMap(self.ask(mapRequest(UDP, 1, 7000, 60), OTHER) or b"")
        self.assertEqual(reply, (129, 4, 0, 1, 0, 0))

    def test_delete(self) -> None:
        """
        Deleting replies result 0, the internal port, external port 0 and
        lifetime 0; deleting again (or what never existed) gets the same
        reply (RFC 6886 s3.4).
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 6000, 7000, 3600))
        first = self.ask(mapRequest(TCP, 6000, 0, 0))
        self.assertEqual(parseMap(first or b""), (130, 0, 0, 6000, 0, 0))
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(self.ask(mapRequest(TCP, 6000, 0, 0)), first)

    def test_deleteOnlyOwn(self) -> None:
        """
        A client cannot delete another client's mapping (RFC 6886 s3.3: a
        client maps, and so unmaps, only its own ports).
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 6000, 7000, 3600))
        self.ask(mapRequest(TCP, 6000, 0, 0), OTHER)
        self.assertEqual(len(self.backend.forwards), 1)

    def test_deleteAll(self) -> None:
        """
        Internal port 0 with lifetime 0 deletes all of the client's mappings
        of the request's protocol, and only those; the reply has internal
        port 0 (RFC 6886 s3.4).
        """
        self.startGateway()
        for port in (6000, 6001):
            self.ask(mapRequest(UDP, port, 0, 3600))
        self.ask(mapRequest(TCP, 6000, 0, 3600))
        self.ask(mapRequest(UDP, 6000, 0, 3600), OTHER)
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 0)) or b"")
        self.assertEqual(reply, (129, 0, 0, 0, 0, 0))
        remaining = sorted(
            (address, protocol)
            for (protocol, _), (address, _) in self.backend.forwards.items()
        )
        self.assertEqual(
            remaining, [(IPv4Address(CLIENT), TCP), (IPv4Address(OTHER), UDP)]
        )
        # Liberal: a non-zero suggested external port does not matter.
        self.ask(mapRequest(UDP, 6000, 0, 3600))
        reply = parseMap(self.ask(mapRequest(UDP, 0, 6000, 0)) or b"")
        self.assertEqual(reply, (129, 0, 0, 0, 0, 0))
        self.assertEqual(len(self.backend.forwards), 2)

    def test_internalPortZeroWithLifetime(self) -> None:
        """
        Internal port 0 only means "all" with lifetime 0 (RFC 6886 s3.4);
        with a lifetime it is refused with result 2, and the error reply
        has external port and lifetime 0 (s3.5).
        """
        self.startGateway()
        reply = parseMap(self.ask(mapRequest(TCP, 0, 7000, 3600)) or b"")
        self.assertEqual(reply, (130, 2, 0, 0, 0, 0))
        self.assertEqual(self.backend.forwards, {})

    def test_unsupportedVersion(self) -> None:
        """
        A request of another version gets the 8-byte reply with opcode 128
        (RFC 6886 s3.5, Errata 3618) and result 1, whatever its length; a
        PCP request too, so that the client falls back (s1.1).
        """
        self.startGateway()
        self.clock.advance(2)
        expected = bytes.fromhex("00800001") + struct.pack("!I", 2)
        for packet in (b"\x01\x00", b"\x02\x01" + bytes(58), b"\xff\x02" + bytes(10)):
            self.assertEqual(self.ask(packet), expected, packet.hex())

    def test_unsupportedOpcodeShort(self) -> None:
        """
        An unknown opcode below 128 in a packet too short to hold a result
        gets the 8-byte header: opcode with the top bit set, result 5, the
        epoch (RFC 6886 s3.5; as miniupnpd does).
        """
        self.startGateway()
        self.clock.advance(4)
        for packet in (b"\x00\x03", b"\x00\x7f\x01\x02\x03\x04\x05"):
            expected = bytes([0, packet[1] | 128, 0, 5]) + struct.pack("!I", 4)
            self.assertEqual(self.ask(packet), expected, packet.hex())

    def test_unsupportedOpcodeEchoed(self) -> None:
        """
        An unknown opcode below 128 in a packet that can hold a result is
        echoed whole, with the top bit of the opcode set, result 5 and the
        epoch (RFC 6886 s3.5: "the entire request", and every response has
        the epoch).
        """
        self.startGateway()
        self.clock.advance(4)
        packet = bytes.fromhex("0042aaaabbbbbbbb") + b"payload"
        expected = bytes.fromhex("00c2000500000004") + b"payload"
        self.assertEqual(self.ask(packet), expected)

    def test_junkDropped(self) -> None:
        """
        Packets too short, responses (opcode 128 or more, of any version)
        and map requests shorter than 12 bytes are dropped, never answered,
        and counted; the gateway keeps serving (RFC 6886 s3.3: a response
        sent to the gateway MUST be ignored).
        """
        junk = [
            b"",
            b"\x00",
            b"\x00\x80",
            bytes.fromhex("008000000000000000000000"),
            bytes.fromhex("0081000000000000"),
            b"\x02\x81" + bytes(58),
            mapRequest(TCP, 1, 1, 60)[:11],
            b"\x00\x01",
        ]
        service = self.startGateway()
        for packet in junk:
            self.assertIsNone(self.ask(packet), packet.hex())
        assert service.gateway is not None
        self.assertEqual(
            dict(service.gateway.drops.reasons),
            {"malformed": 4, "a response, not a request": 4},
        )
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(len(self.ask(b"\x00\x00") or b""), 12)


class ResultForErrorTests(GatewayTestsMixin, SynchronousTestCase):
    """
    A refusal by meaning is answered with NAT-PMP's code for it (RFC 6886
    s3.5).
    """

    def test_codes(self) -> None:
        """
        Each meaning NAT-PMP has a code for gets it, a subclass its base
        class's; a meaning it lacks gets the code the error carries if that
        is not another protocol's, else 2 (Not Authorized/Refused).
        """

        class Firewalled(NetworkFailureError):
            pass

        cases: list[tuple[GatewayError, int]] = [
            (NotAuthorizedError(), 2),
            (NetworkFailureError(), 3),
            (OutOfResourcesError(), 4),
            (UnsupportedOpcodeError(), 5),
            (Firewalled(), 3),
            (UserExceededQuotaError(), 2),
            (GatewayError(4), 4),
            (GatewayError(8, protocol="pcp"), 2),
            (GatewayError(), 2),
        ]
        for error, code in cases:
            self.assertEqual(resultFor(error), code, repr(error))

    def test_backendMeaningsOnTheWire(self) -> None:
        """
        A backend that refuses by meaning alone (no code) gets NAT-PMP's
        code for it in the reply, with the internal port echoed (RFC 6886
        s3.5).
        """

        class Refusing(MemoryBackend):
            error: Exception = OutOfResourcesError()

            def addMapping(self, *args: object) -> None:
                raise self.error

        backend = Refusing()
        self.startGateway(backend=backend)
        for error, code in [
            (OutOfResourcesError(), 4),
            (NotAuthorizedError(), 2),
            (NetworkFailureError(), 3),
        ]:
            backend.error = error
            reply = parseMap(self.ask(mapRequest(TCP, 7, 7000, 60)) or b"")
            self.assertEqual((reply[1], reply[3], reply[4], reply[5]), (code, 7, 0, 0))
