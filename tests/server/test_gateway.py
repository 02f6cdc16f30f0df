"""
Tests for L{twisted_natpmp.server.gateway}: the protocol-neutral core of our
gateway (where requests may come from, no external address, backend
failures, limits), on an in-memory UDP network and a L{Clock}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, cast

from twisted.internet import address
from twisted.internet.interfaces import IListeningPort
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.errors import OutOfResourcesError
from twisted_natpmp.natpmp._wire import (
    SERVER_PORT,
)
from twisted_natpmp.server import (
    GatewayService,
)
from twisted_natpmp.server.backends import MemoryBackend

from ._helpers import (
    CLIENT,
    EXTERNAL,
    GATEWAY,
    OTHER,
    TCP,
    UDP,
    GatewayTestsMixin,
    mapRequest,
    parseMap,
)


def hostAndPort(port: IListeningPort) -> tuple[str, int]:
    """
    Where C{port} listens.
    """
    host = cast(address.IPv4Address, port.getHost())
    return host.host, host.port


class GatewayRequestTests(GatewayTestsMixin, SynchronousTestCase):
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
            [hostAndPort(p) for p in service.ports],
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
