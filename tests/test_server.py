"""
Tests for L{twisted_natpmp.server}: the gateway protocol and service on an
in-memory UDP network (L{tests._memudp}) and a L{Clock}.
"""

from __future__ import annotations

import struct
import time
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import server
from twisted_natpmp._table import MappingTable
from twisted_natpmp._wire import (
    ANNOUNCE_GROUP,
    CLIENT_PORT,
    OPCODES,
    SERVER_PORT,
    Protocol,
)
from twisted_natpmp.backends import MemoryBackend
from twisted_natpmp.errors import OutOfResourcesError
from twisted_natpmp.server import (
    ANNOUNCE_INTERVALS,
    GatewayService,
    NATPMPGateway,
    NATPMPServerProtocol,
)

from ._memudp import MemoryUDPNetwork
from .vectors import loadCases

TCP, UDP = Protocol.TCP, Protocol.UDP
GATEWAY = "10.77.0.1"
CLIENT = "10.77.0.2"
OTHER = "10.77.0.3"
EXTERNAL = "192.0.3.77"
ANNOUNCE = (ANNOUNCE_GROUP, CLIENT_PORT)


def mapRequest(
    protocol: Protocol, internal: int, external: int, lifetime: int
) -> bytes:
    return struct.pack("!BBHHHI", 0, OPCODES[protocol], 0, internal, external, lifetime)


def parseMap(reply: bytes) -> tuple[int, int, int, int, int, int]:
    """
    (opcode, result, epoch, internal port, external port, lifetime).
    """
    assert len(reply) == 16, reply.hex()
    _, opcode, result, epoch, internal, external, lifetime = struct.unpack(
        "!BBHIHHI", reply
    )
    return opcode, result, epoch, internal, external, lifetime


def epochOf(reply: bytes) -> int:
    value: int = struct.unpack_from("!I", reply, 4)[0]
    return value


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))


class GatewayTestsMixin:
    """
    A gateway at 10.77.0.1 serving 10.77.0.0/24, external address
    192.0.3.77, and clients at .2 and .3.
    """

    def setUp(self) -> None:
        self.net = MemoryUDPNetwork()
        self.clock = self.net.clock
        self.clock.advance(5000)
        self.backend = MemoryBackend()
        self.logged: list[dict[str, Any]] = []
        self.patch(server, "log", Logger(observer=self.logged.append))  # type: ignore[attr-defined]
        self.clients: dict[str, Recorder] = {}

    def startGateway(self, **kwargs: Any) -> GatewayService:
        kwargs.setdefault("backend", self.backend)
        listen = kwargs.pop("listen", [f"{GATEWAY}/24"])
        external = kwargs.pop("externalAddress", EXTERNAL)
        service = GatewayService(self.net.host(GATEWAY), listen, external, **kwargs)
        service.startService()
        self.addCleanup(service.stopService)  # type: ignore[attr-defined]
        self.service = service
        return service

    def ask(
        self, packet: bytes, source: str = CLIENT, gateway: str = GATEWAY
    ) -> bytes | None:
        """
        Send C{packet} from C{source} to the gateway and return the one
        reply, or L{None}.
        """
        recorder = self.clients.get(source)
        if recorder is None:
            recorder = self.clients[source] = Recorder()
            self.net.host(source).listenUDP(0, recorder)
        before = len(recorder.received)
        port = recorder.transport
        assert port is not None
        port.write(packet, (gateway, SERVER_PORT))
        self.net.flush()
        replies = recorder.received[before:]
        assert len(replies) <= 1, replies
        if not replies:
            return None
        data, addr = replies[0]
        assert addr == (gateway, SERVER_PORT), addr
        return data

    def table(self) -> MappingTable:
        """
        The running gateway's table (started by L{startGateway}).
        """
        return self.service.gateway.table  # type: ignore[union-attr]

    def announcements(self) -> list[bytes]:
        return [d.data for d in self.net.sentTo(ANNOUNCE)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get("event") == kind]


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

    def test_outsideInternalNetwork(self) -> None:
        """
        Requests from outside the internal networks are not served (RFC 6886
        s3.3) and create nothing.
        """
        self.startGateway()
        for source in ("10.78.0.2", EXTERNAL, "10.77.1.2"):
            self.assertIsNone(self.ask(b"\x00\x00", source))
            self.assertIsNone(self.ask(mapRequest(TCP, 1, 5000, 60), source))
        self.assertEqual(self.backend.forwards, {})

    def test_listensOnlyOnInternalAddresses(self) -> None:
        """
        The gateway binds each internal address, not the wildcard and not
        the external address, so it serves only requests addressed to an
        internal address (RFC 6886 s3.3).
        """
        service = self.startGateway(listen=[f"{GATEWAY}/24", "10.88.0.1/16"])
        self.assertEqual(
            [(p.getHost().host, p.getHost().port) for p in service.ports],
            [(GATEWAY, SERVER_PORT), ("10.88.0.1", SERVER_PORT)],
        )
        self.assertIsNone(self.ask(b"\x00\x00", CLIENT, gateway=EXTERNAL))

    def test_severalAddressesOneTable(self) -> None:
        """
        Each internal address has its own port, all served from one table:
        a port taken through one address is taken through the other.
        """
        self.startGateway(listen=[f"{GATEWAY}/24", "10.88.0.1/16"])
        self.ask(mapRequest(TCP, 6000, 7000, 60))
        reply = parseMap(
            self.ask(mapRequest(TCP, 6000, 7000, 60), "10.88.3.4", "10.88.0.1") or b""
        )
        self.assertEqual(reply[1], 0)
        self.assertNotEqual(reply[4], 7000)
        self.assertEqual(len(self.backend.forwards), 2)

    def test_noExternalAddress(self) -> None:
        """
        Without an external address every request gets result 3, Network
        Failure, and the address field is 0 (RFC 6886 s3.2, s3.5); nothing
        is announced until an address arrives.
        """
        service = self.startGateway(externalAddress=None)
        self.assertEqual(
            self.ask(b"\x00\x00"), bytes.fromhex("008000030000000000000000")
        )
        self.assertEqual(
            parseMap(self.ask(mapRequest(UDP, 5, 5000, 60)) or b""),
            (129, 3, 0, 5, 0, 0),
        )
        self.clock.advance(200)
        self.assertEqual(self.announcements(), [])
        service.setExternalAddress(EXTERNAL)
        self.net.flush()
        self.assertEqual(len(self.announcements()), 1)
        self.assertEqual(parseMap(self.ask(mapRequest(UDP, 5, 5000, 60)) or b"")[1], 0)

    def test_unspecifiedIsNoAddress(self) -> None:
        """
        0.0.0.0 is no external address: requests get result 3 with address
        0 (RFC 6886 s3.2, s3.5), nothing is granted or announced; when an
        address arrives it is announced (s3.2.1) and served.
        """
        service = self.startGateway(externalAddress="0.0.0.0")
        self.assertEqual(
            self.ask(b"\x00\x00"), bytes.fromhex("008000030000000000000000")
        )
        self.assertEqual(
            parseMap(self.ask(mapRequest(UDP, 5, 5000, 60)) or b""),
            (129, 3, 0, 5, 0, 0),
        )
        self.assertEqual(self.backend.forwards, {})
        self.clock.advance(200)
        self.assertEqual(self.announcements(), [])
        service.setExternalAddress(EXTERNAL)
        self.net.flush()
        self.assertEqual(len(self.announcements()), 1)
        self.assertEqual(
            parseMap(self.ask(mapRequest(UDP, 5, 5000, 3600)) or b"")[1], 0
        )
        self.clock.advance(200)
        service.setExternalAddress("0.0.0.0")
        self.clock.advance(200)
        self.assertEqual(len(self.announcements()), 10)
        self.assertEqual(parseMap(self.ask(mapRequest(UDP, 6, 6000, 60)) or b"")[1], 3)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])

    def test_deleteWithoutAddress(self) -> None:
        """
        Deleting one mapping or all of a protocol's works while the gateway
        has no external address (RFC 6886 s3.4): result 0, mapping gone.
        """
        service = self.startGateway()
        for port in (5, 6):
            self.ask(mapRequest(UDP, port, 5000 + port, 60))
        service.setExternalAddress(None)
        reply = parseMap(self.ask(mapRequest(UDP, 5, 0, 0)) or b"")
        self.assertEqual(reply, (129, 0, 0, 5, 0, 0))
        self.assertEqual(list(self.backend.forwards), [(UDP, 5006)])
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 0)) or b"")
        self.assertEqual(reply, (129, 0, 0, 0, 0, 0))
        self.assertEqual(self.backend.forwards, {})

    def test_backendFailure(self) -> None:
        """
        A backend failure becomes its result code (or 3, Network Failure,
        for an unexpected exception), is logged, and the gateway keeps
        serving.
        """

        class Broken(MemoryBackend):
            error: Exception = OSError("no firewall")

            def addMapping(self, *args: Any) -> None:
                raise self.error

        backend = Broken()
        self.startGateway(backend=backend)
        self.assertEqual(parseMap(self.ask(mapRequest(UDP, 5, 5000, 60)) or b"")[1], 3)
        backend.error = OutOfResourcesError(4)
        self.assertEqual(parseMap(self.ask(mapRequest(UDP, 5, 5000, 60)) or b"")[1], 4)
        [first] = [
            e
            for e in self.logged
            if e.get("verb") == "refused" and e["log_level"] == LogLevel.warn
        ]
        self.assertEqual(
            first["reason"],
            "the backend failed to add the mapping, answered result 3",
        )
        [detail] = [e for e in self.logged if "no firewall" in e.get("detail", "")]
        self.assertEqual(detail["detail"], "OSError('no firewall')")
        self.assertEqual(len(self.ask(b"\x00\x00") or b""), 12)

    def test_deleteFailure(self) -> None:
        """
        A deletion the backend cannot carry out gets a non-zero result code
        (RFC 6886 s3.4), here 3 for an unexpected exception, with the
        internal port echoed and external port and lifetime 0 (s3.5); the
        failure is logged and the mapping kept.
        """

        class Stuck(MemoryBackend):
            def removeMapping(self, *args: Any) -> None:
                raise OSError("rule is stuck")

        backend = Stuck()
        self.startGateway(backend=backend)
        self.ask(mapRequest(UDP, 5, 5000, 60))
        reply = parseMap(self.ask(mapRequest(UDP, 5, 0, 0)) or b"")
        self.assertEqual(reply, (129, 3, 0, 5, 0, 0))
        reply = parseMap(self.ask(mapRequest(UDP, 0, 0, 0)) or b"")
        self.assertEqual(reply, (129, 3, 0, 0, 0, 0))
        self.assertEqual(len(backend.forwards), 1)
        failed = [e for e in self.logged if "failed to remove" in e["log_format"]]
        self.assertEqual(len(failed), 2)
        self.assertEqual(self.events("deleted"), [])

    def test_rateLimit(self) -> None:
        """
        Each source may send a burst of mapping requests, then requests at
        its rate; beyond that they are dropped, unanswered, and counted;
        other sources are served meanwhile, and external address requests
        are not limited.
        """
        service = self.startGateway(requestRate=5, requestBurst=10)
        renew = mapRequest(UDP, 5, 5000, 3600)
        answered = sum(self.ask(renew) is not None for _ in range(30))
        self.assertEqual(answered, 10)
        self.assertIsNotNone(self.ask(renew, OTHER))
        self.assertIsNotNone(self.ask(b"\x00\x00"))
        self.clock.advance(1)
        answered = sum(self.ask(renew) is not None for _ in range(30))
        self.assertEqual(answered, 5)
        assert service.gateway is not None
        self.assertEqual(
            dict(service.gateway.drops.reasons), {"over the rate limit": 45}
        )

    def test_gatewayLimit(self) -> None:
        """
        Beyond the gateway-wide mapping limit a new mapping gets result 4,
        Out of Resources (RFC 6886 s3.5), whoever asks.
        """
        self.startGateway(maxMappings=2)
        self.ask(mapRequest(UDP, 1, 0, 60))
        self.ask(mapRequest(UDP, 1, 0, 60), OTHER)
        reply = parseMap(self.ask(mapRequest(UDP, 1, 0, 60), "10.77.0.4") or b"")
        self.assertEqual(reply, (129, 4, 0, 1, 0, 0))

    def test_floodFromForgedSources(self) -> None:
        """
        A flood of map requests from 200 (forged) internal source
        addresses in turn, each well below the per-client limit and 4 times
        the port range in all, does not take the last ports from a host
        that holds none: each source ends with about its share, and the host
        is still granted a mapping.
        """
        self.startGateway(listen=[f"{GATEWAY}/16"], minPort=20000, maxPort=20999)
        sources = [f"10.77.{1 + i // 250}.{1 + i % 250}" for i in range(200)]
        for port in range(1, 21):
            for source in sources:
                self.ask(mapRequest(UDP, port, 0, 3600), source)
        held = [len(self.table().mappingsOf(IPv4Address(s))) for s in sources]
        self.assertLessEqual(max(held), 6)
        self.assertLess(len(self.backend.forwards), 1000)
        reply = parseMap(self.ask(mapRequest(TCP, 22, 2222, 3600)) or b"")
        self.assertEqual(reply[:2], (130, 0))

    def test_noListenAddress(self) -> None:
        """
        A gateway needs at least one internal address.
        """
        self.assertRaises(
            ValueError, GatewayService, self.net.host(GATEWAY), [], EXTERNAL
        )


class ExpiryAndLoggingTests(GatewayTestsMixin, SynchronousTestCase):
    def test_expiresOnItsOwn(self) -> None:
        """
        A mapping not renewed is removed at the end of its lifetime, with no
        request needed to notice (RFC 6886 s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 100))
        self.ask(mapRequest(UDP, 6, 6000, 10))
        self.clock.advance(9.9)
        self.assertEqual(len(self.backend.forwards), 2)
        self.clock.advance(0.1)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        self.clock.advance(90)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(
            [e["externalPort"] for e in self.events("expired")], [6000, 5000]
        )

    def test_renewedNotExpired(self) -> None:
        """
        A renewed mapping outlives its first deadline (RFC 6886 s3.3).
        """
        self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 10))
        self.clock.advance(5)
        self.ask(mapRequest(UDP, 5, 5000, 10))
        self.clock.advance(5)
        self.assertEqual(len(self.backend.forwards), 1)
        self.clock.advance(5)
        self.assertEqual(self.backend.forwards, {})

    def test_wallClockSteps(self) -> None:
        """
        The epoch and expiry follow the monotonic clock, not the reactor's
        (wall-clock) time: setting the wall clock back neither lowers the
        epoch (RFC 6886 s3.6: clients would think the gateway lost its
        state) nor delays expiry, and setting it forward, even by more than
        every lifetime, expires nothing early (s3.3).
        """
        monotonic = Clock()
        monotonic.advance(500)
        self.startGateway(monotonic=monotonic)
        wall = self.clock
        monotonic.advance(100)
        wall.advance(100)
        self.ask(mapRequest(UDP, 5, 5000, 60))
        wall.rightNow -= 3600
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 100)
        wall.advance(10**6)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 100)
        monotonic.advance(59)
        wall.advance(59)
        self.assertEqual(epochOf(self.ask(b"\x00\x00") or b""), 159)
        self.assertEqual(list(self.backend.forwards), [(UDP, 5000)])
        monotonic.advance(1)
        wall.advance(1)
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(len(self.events("expired")), 1)

    def test_monotonicBesideRealReactor(self) -> None:
        """
        Beside a real reactor, whose C{seconds()} is the wall clock, time is
        judged by the system's monotonic clock; a fake clock is its own.
        """
        from twisted.internet import reactor

        chosen = server.monotonicFor(reactor)  # type: ignore[arg-type]
        before = time.monotonic()
        self.assertTrue(before <= chosen.seconds() <= time.monotonic())
        self.assertIs(server.monotonicFor(self.clock), self.clock)

    def test_logsEveryChange(self) -> None:
        """
        Every mapping created, renewed, deleted and expired is logged, with
        its client, ports and lifetime.
        """
        self.startGateway()
        self.ask(mapRequest(TCP, 5, 5000, 10))
        self.ask(mapRequest(TCP, 5, 5000, 10))
        self.ask(mapRequest(TCP, 5, 0, 0))
        self.ask(mapRequest(TCP, 6, 6000, 10))
        self.clock.advance(10)
        changes = [
            (e["event"], e["protocol"], e["internalPort"], e["externalPort"])
            for e in self.logged
            if "event" in e
        ]
        self.assertEqual(
            changes,
            [
                ("created", "tcp", 5, 5000),
                ("renewed", "tcp", 5, 5000),
                ("deleted", "tcp", 5, 5000),
                ("created", "tcp", 6, 6000),
                ("expired", "tcp", 6, 6000),
            ],
        )
        self.assertEqual(self.events("created")[0]["client"], CLIENT)

    def test_dropsAndRefusalsAggregated(self) -> None:
        """
        A flood of junk and of refused requests from one host gives one
        warning at once for each, then one summary per interval, not a line
        per packet; mapping events are still logged one by one.
        """
        service = self.startGateway(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 1, 5001, 3600))
        for port in range(2, 502):
            self.ask(b"\x00\x81" + bytes(10))
            self.ask(mapRequest(UDP, port, 5000 + port, 3600))
        warnings = [e for e in self.logged if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            [(e["verb"], e["source"], e["reason"]) for e in warnings],
            [
                ("dropped", CLIENT, "a response, not a request"),
                (
                    "refused",
                    CLIENT,
                    "client at its limit of 1 mappings, answered result 4",
                ),
            ],
        )
        self.clock.advance(60)
        summaries = [e for e in self.logged if e["log_level"] == LogLevel.warn][2:]
        # Each summary counts the whole interval, the drop said at once too.
        self.assertEqual(sorted(e["count"] for e in summaries), [500, 500])
        self.assertEqual(len(self.events("created")), 1)
        self.clock.advance(60)
        service.stopService()
        for event in self.logged:
            self.assertNotIn("gateway answered", formatEvent(event))

    def test_jsonSafeFields(self) -> None:
        """
        Every field the gateway logs is a string or a number, so that a
        JSON log observer can write it.
        """
        service = self.startGateway(maxMappingsPerClient=1)
        self.ask(mapRequest(UDP, 1, 5001, 10))
        self.ask(mapRequest(UDP, 1, 5001, 10))
        self.ask(mapRequest(UDP, 2, 5002, 10))
        self.ask(b"\x00\x81")
        self.ask(b"\x00\x00", "10.99.0.1")
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(20)
        service.stopService()
        self.assertGreater(len(self.logged), 5)
        for event in self.logged:
            for key, value in event.items():
                if not key.startswith("log_"):
                    self.assertIsInstance(value, (str, int, float), f"{key}={value!r}")

    def test_stopRemovesMappings(self) -> None:
        """
        Stopping the gateway removes its mappings from the backend (its
        state is lost, RFC 6886 s3.6), stops its timers and closes its
        ports.
        """
        service = self.startGateway()
        self.ask(mapRequest(UDP, 5, 5000, 100))
        service.stopService()
        self.assertEqual(self.backend.forwards, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual([p for p in self.net.ports if p[0] == GATEWAY], [])
        self.assertEqual(self.net.multicastPorts, [])

    def test_bindFailureReleasesPorts(self) -> None:
        """
        When one internal address cannot be bound, starting fails with that
        error and leaves nothing bound or scheduled.
        """
        host = self.net.host(GATEWAY)
        bind = host.listenMulticast

        def listenMulticast(port: int, protocol: Any, interface: str = "") -> Any:
            if interface == "10.88.0.1":
                raise CannotListenError(interface, port, OSError("in use"))
            return bind(port, protocol, interface)

        host.listenMulticast = listenMulticast  # type: ignore[method-assign]
        service = GatewayService(host, [f"{GATEWAY}/24", "10.88.0.1/16"], EXTERNAL)
        self.assertRaises(CannotListenError, service.startService)
        self.assertFalse(service.running)
        self.assertEqual(self.net.multicastPorts, [])
        self.assertEqual(service.ports, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AnnouncementTests(GatewayTestsMixin, SynchronousTestCase):
    #: When the 10 copies go out, relative to the start.
    times = [sum(ANNOUNCE_INTERVALS[:i]) for i in range(10)]

    def test_schedule(self) -> None:
        """
        On start the gateway multicasts its external address to
        224.0.0.1:5350 10 times, the first two 250 ms apart and then
        doubling, with the epoch updated in each (RFC 6886 s3.2.1).
        """
        self.assertEqual(self.times[:4], [0, 0.25, 0.75, 1.75])
        start = self.clock.seconds()
        self.startGateway()
        self.assertEqual(len(self.announcements()), 1)
        for count, when in enumerate(self.times[1:], 1):
            self.clock.advance(start + when - 0.001 - self.clock.seconds())
            self.assertEqual(len(self.announcements()), count, when)
            self.clock.advance(0.001)
            self.assertEqual(len(self.announcements()), count + 1, when)
        self.clock.advance(10000)
        sent = self.announcements()
        self.assertEqual(len(sent), 10)
        self.assertEqual([epochOf(p) for p in sent], [int(t) for t in self.times])
        for packet in sent:
            self.assertEqual(packet[:4] + packet[8:], bytes.fromhex("00800000c000034d"))
        sources = {d.source for d in self.net.sentTo(ANNOUNCE)}
        self.assertEqual(sources, {(GATEWAY, SERVER_PORT)})

    def test_everyInternalAddress(self) -> None:
        """
        Announcements go out on every internal interface (RFC 6886
        s3.2.1).
        """
        self.startGateway(listen=[f"{GATEWAY}/24", "10.88.0.1/16"])
        self.net.flush()
        sources = [d.source for d in self.net.sentTo(ANNOUNCE)]
        self.assertEqual(sources, [(GATEWAY, SERVER_PORT), ("10.88.0.1", SERVER_PORT)])

    def test_addressChange(self) -> None:
        """
        When the external address changes the gateway announces the new one
        on a fresh schedule (RFC 6886 s3.2.1), replacing the old schedule;
        requests get the new address.
        """
        service = self.startGateway()
        self.clock.advance(1)
        self.net.flush()
        self.assertEqual(len(self.announcements()), 3)
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(1000)
        sent = self.announcements()
        self.assertEqual(len(sent), 3 + 10)
        self.assertEqual({p[8:] for p in sent[3:]}, {bytes([192, 0, 3, 99])})
        self.assertEqual((self.ask(b"\x00\x00") or b"")[8:], bytes([192, 0, 3, 99]))

    def test_addressBeforeStart(self) -> None:
        """
        An address set before starting is the one served and announced.
        """
        service = GatewayService(self.net.host(GATEWAY), [f"{GATEWAY}/24"], None)
        service.setExternalAddress("192.0.3.99")
        self.assertEqual(self.net.log, [])
        service.startService()
        self.addCleanup(service.stopService)
        self.net.flush()
        self.assertEqual(
            [p[8:] for p in self.announcements()], [bytes([192, 0, 3, 99])]
        )

    def test_announcementsOff(self) -> None:
        """
        With C{announceTo=None} nothing is multicast (for tests that must
        keep their traffic on loopback).
        """
        service = self.startGateway(announceTo=None)
        service.setExternalAddress("192.0.3.99")
        self.clock.advance(1000)
        self.assertEqual(self.announcements(), [])
        self.assertEqual(self.net.log, [])

    def test_sendFailureLogged(self) -> None:
        """
        An announcement that cannot be sent (no multicast route) is logged,
        and the schedule goes on.
        """

        class Unroutable:
            def write(self, packet: bytes, addr: Any) -> None:
                raise OSError(101, "Network is unreachable")

        gateway = NATPMPGateway(self.clock, EXTERNAL, ["10.77.0.0/24"])
        announcer = server.Announcer(self.clock, gateway, [Unroutable()])  # type: ignore[list-item]
        announcer.start()
        self.clock.advance(1000)
        failures = [e for e in self.logged if "could not announce" in e["log_format"]]
        self.assertEqual(len(failures), 10)


class RobustnessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.gateway = NATPMPGateway(self.clock, EXTERNAL, ["10.77.0.0/24"])
        self.patch(server, "log", Logger(observer=lambda event: None))

    @settings(max_examples=500)
    @given(st.binary(max_size=40))
    def test_anyBytes(self, packet: bytes) -> None:
        """
        Whatever arrives, the gateway answers with a well-formed response
        (version 0, a response opcode, a result code) or drops it; it never
        raises.
        """
        reply = self.gateway.respond(packet, (CLIENT, 5350))
        if reply is not None:
            self.assertGreaterEqual(len(reply), 8)
            self.assertEqual(reply[0], 0)
            self.assertTrue(reply[1] & 128)
        self.assertEqual(len(self.gateway.respond(b"\x00\x00", (CLIENT, 1)) or b""), 12)

    def test_protocolSurvivesErrors(self) -> None:
        """
        If answering raises, the protocol logs it and goes on serving.
        """
        logged: list[dict[str, Any]] = []
        self.patch(server, "log", Logger(observer=logged.append))
        net = MemoryUDPNetwork(clock=self.clock)
        protocol = NATPMPServerProtocol(self.gateway)
        net.host(GATEWAY).listenUDP(SERVER_PORT, protocol)
        calls = []

        def broken(packet: bytes, source: Any) -> bytes | None:
            calls.append(packet)
            if len(calls) == 1:
                raise RuntimeError("bug")
            return b"reply"

        self.patch(self.gateway, "respond", broken)
        protocol.datagramReceived(b"\x00\x00", (CLIENT, 1))
        protocol.datagramReceived(b"\x00\x00", (CLIENT, 1))
        failures = [e["log_failure"] for e in logged if "log_failure" in e]
        self.assertEqual([f.type for f in failures], [RuntimeError])
        self.assertEqual([d.data for d in net.log], [b"reply"])

    def test_otherInterfaceDropped(self) -> None:
        """
        A request its port reports as arrived on another interface than the
        internal one is dropped unanswered and counted, even from an
        internal source address (RFC 6886 s3.3: the gateway MUST NOT accept
        mapping requests received on its external interface).
        """
        net = MemoryUDPNetwork(clock=self.clock)
        protocol = NATPMPServerProtocol(self.gateway)
        net.host(GATEWAY).listenUDP(SERVER_PORT, protocol)
        protocol.otherInterface(mapRequest(TCP, 22, 2222, 3600), (CLIENT, 1), 3)
        self.assertEqual(len(self.gateway.table), 0)
        self.assertEqual(net.log, [])
        self.assertEqual(
            dict(self.gateway.drops.reasons),
            {"not received on an internal interface": 1},
        )

    def test_nonIPv4Source(self) -> None:
        """
        A source that is not an IPv4 address is dropped.
        """
        self.assertIsNone(self.gateway.respond(b"\x00\x00", ("::1", 1)))
