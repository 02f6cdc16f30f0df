"""
Tests for L{MappedServerEndpoint}: C{listen()} fires once the wrapped port
listens, never waiting for the gateway unless told to, and for no longer
than told; the port bound is the port mapped; the protocol is the one
chosen.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import reactor as _globalReactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_natpmp._types import Transport
from twisted_natpmp.endpoint import MappedListeningPort, MappedServerEndpoint
from twisted_natpmp.natpmp._wire import MapRequest
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.testing import MemoryUDPNetwork, ScriptedGateway
from twisted_natpmp.testing._gateway import EXTERNAL as SCRIPTED_EXTERNAL
from twisted_natpmp.testing._gateway import GATEWAY as SCRIPTED_GATEWAY
from twisted_natpmp.testing._gateway import HOST as SCRIPTED_HOST

from ._helpers import EXTERNAL, FACTORY, EndpointMixin, memoryReactor, tcpEndpoint


class ListenTests(EndpointMixin, SynchronousTestCase):
    def test_interfaces(self) -> None:
        endpoint = self.endpoint()
        self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))
        self.assertTrue(verifyObject(IListeningPort, self.listening()))

    def test_firesBeforeAnyGrant(self) -> None:
        """
        C{listen()} fires as soon as the wrapped port listens: the mapping
        is asked for, not waited for.  C{getHost()} is the local address.
        """
        port = self.listening()
        self.assertEqual(port.getHost(), IPv4Address("TCP", "0.0.0.0", 8080))
        self.assertIsNone(port.mappedAddress)
        [request] = self.mapper.pending("addMapping")
        self.assertEqual(
            (
                request.arguments["transport"],
                request.arguments["internalPort"],
                request.arguments["externalPort"],
                request.arguments["lifetime"],
            ),
            (Transport.TCP, 8080, None, 7200),
        )

    def test_options(self) -> None:
        """
        The lifetime and external port asked for are the endpoint's.
        """
        self.listening(lifetime=600, externalPort=80)
        [request] = self.mapper.pending("addMapping")
        self.assertEqual(
            (request.arguments["externalPort"], request.arguments["lifetime"]),
            (80, 600),
        )

    def test_wrappedFails(self) -> None:
        """
        If the wrapped endpoint cannot listen, C{listen()} fails the same
        way, and nothing is mapped.
        """
        from twisted.internet.testing import RaisingMemoryReactor

        failing = RaisingMemoryReactor(
            listenException=CannotListenError(  # type: ignore[no-untyped-call]
                "", 8080, OSError("in use")
            )
        )
        d = self.endpoint(tcpEndpoint(failing, 8080)).listen(FACTORY)
        self.failureResultOf(d, CannotListenError)
        self.assertEqual(self.mappers, [])

    def test_notTCP(self) -> None:
        """
        A wrapped endpoint that listens on no TCP port (a UNIX socket,
        given as an object) fails C{listen()} with a L{ValueError} naming
        the address; nothing is mapped.
        """
        wrapped = UNIXServerEndpoint(  # type: ignore[no-untyped-call]
            self.reactor, "/tmp/nothing-here"
        )
        d = self.endpoint(wrapped).listen(FACTORY)
        failure = self.failureResultOf(d, ValueError)
        self.assertIn("/tmp/nothing-here", failure.getErrorMessage())
        self.assertIn("not on a TCP port", failure.getErrorMessage())
        self.assertEqual(self.mappers, [])

    def test_badValues(self) -> None:
        """
        A value that cannot be used is refused at once, named.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"protocol": "upnp"}, "'upnp'"),
            ({"waitForMapping": 601.0}, "601"),
            ({"waitForMapping": float("inf")}, "inf"),
            ({"lifetime": 0}, "lifetime 0"),
            ({"externalPort": 70000}, "70000"),
            # The checks of the description's gateway=, and the message:
            ({"gateway": "2001:db8::1", "protocol": "natpmp"}, "'2001:db8::1' is IPv6"),
            ({"gateway": "0.0.0.0"}, "gateway '0.0.0.0' cannot be a gateway's"),
            ({"gateway": "224.0.0.1"}, "'224.0.0.1' cannot be a gateway's"),
            (
                {"gateway": ipaddress.IPv4Address("255.255.255.255")},
                "'255.255.255.255'",
            ),
            ({"gateway": "ff02::1"}, "'ff02::1' cannot be a gateway's"),
            ({"gateway": "bogus"}, "'bogus' is not an IPv4 or IPv6 address"),
        ]
        for options, word in cases:
            with self.subTest(options=options):
                error = self.assertRaises(ValueError, self.endpoint, **options)
                self.assertIn(word, str(error))

    def test_gateways(self) -> None:
        """
        A gateway is an address, given as one or as text; IPv6 for PCP.
        """
        for given, protocol in [
            ("10.0.0.1", "natpmp"),
            (ipaddress.IPv4Address("10.0.0.1"), "auto"),
            ("2001:db8::1", "pcp"),
            (ipaddress.IPv6Address("fe80::1%eth0"), "auto"),
        ]:
            with self.subTest(given=given):
                endpoint = self.endpoint(gateway=given, protocol=protocol)
                self.assertEqual(endpoint.gateway, ipaddress.ip_address(str(given)))

    def test_logsPublicAddress(self) -> None:
        """
        The public address is logged once granted, with the gateway and
        the protocol, in JSON-safe fields.
        """
        self.listening()
        with capturedLogs() as events:
            self.grant(18080)
        [line] = [
            e for e in events if "reachable from outside" in e.get("log_format", "")
        ]
        self.assertEqual(
            (line["address"], line["port"], line["gateway"], line["local"]),
            (EXTERNAL, 18080, "10.0.0.1", "tcp port 8080"),
        )


class WaitForMappingTests(EndpointMixin, SynchronousTestCase):
    def test_waitsForTheGrant(self) -> None:
        d = self.endpoint(waitForMapping=10).listen(FACTORY)
        self.assertNoResult(d)
        self.grant()
        self.assertNoResult(d)
        self.reactor.advance(0)
        port = self.successResultOf(d)
        self.assertEqual(port.mappedAddress, IPv4Address("TCP", EXTERNAL, 8080))

    def test_waitsNoLonger(self) -> None:
        """
        With no grant by then, C{listen()} fires after C{waitForMapping}
        seconds, with the port listening and still being mapped.
        """
        d = self.endpoint(waitForMapping=10).listen(FACTORY)
        self.reactor.advance(9.9)
        self.assertNoResult(d)
        with capturedLogs() as events:
            self.reactor.advance(0.1)
        port = self.successResultOf(d)
        self.assertIsNone(port.mappedAddress)
        self.assertIn(
            "tcp port 8080 was not mapped within 10 s",
            [e.get("error") for e in events],
        )
        self.grant()
        self.assertEqual(port.mappedAddress, IPv4Address("TCP", EXTERNAL, 8080))

    def test_cancelled(self) -> None:
        """
        Cancelling C{listen()} while it waits stops the port and deletes
        what may have been granted.
        """
        d = self.endpoint(waitForMapping=10).listen(FACTORY)
        d.cancel()
        [deletion] = self.mapper.pending("deleteMappings")
        self.assertEqual(deletion.arguments["keys"], [(Transport.TCP, 8080)])
        self.assertNoResult(d)
        deletion.succeed({(Transport.TCP, 8080): None})
        self.failureResultOf(d, CancelledError)


class BoundPortTests(EndpointMixin, TestCase):
    """
    The port mapped is the one the wrapped endpoint bound.
    """

    def test_portZero(self) -> None:
        """
        A wrapped C{tcp:0} (a real one, on loopback) maps the port the
        kernel chose.
        """
        wrapped = tcpEndpoint(_globalReactor, 0, "127.0.0.1")
        self.autoAnswer = True
        d = self.endpoint(wrapped).listen(FACTORY)
        port = self.successResultOf(d)
        self.addCleanup(port.stopListening)
        bound = port.getHost().port
        self.assertNotEqual(bound, 0)
        [request] = self.mapper.calls("addMapping")
        self.assertEqual(request.arguments["internalPort"], bound)

    def test_stopsTheRealPort(self) -> Deferred[object]:
        """
        C{stopListening()} stops the wrapped port: the port can be bound
        again once it fires.
        """
        wrapped = tcpEndpoint(_globalReactor, 0, "127.0.0.1")
        port = self.successResultOf(self.endpoint(wrapped).listen(FACTORY))
        bound = port.getHost().port
        stopping = port.stopListening()
        self.mapper.pending("deleteMappings")[0].succeed({})

        def again(_: object) -> object:
            other = tcpEndpoint(_globalReactor, bound, "127.0.0.1").listen(FACTORY)
            return other.addCallback(lambda listening: listening.stopListening())

        return stopping.addCallback(again)


#: Where the scripted gateway maps TCP 8080.
PUBLIC = IPv4Address("TCP", str(SCRIPTED_EXTERNAL), 8080)


class ProtocolTests(SynchronousTestCase):
    """
    The mapper speaks the protocol chosen (through the default
    C{clientFactory}, L{mapperFor <twisted_natpmp.negotiate.mapperFor>}),
    to a scripted NAT-PMP-only gateway on the in-memory network.
    """

    def setUp(self) -> None:
        # What other tests' mappers found of the same addresses is not this
        # gateway's.
        from twisted_natpmp import negotiate
        from twisted_natpmp.negotiate import ProtocolMemory

        self.patch(negotiate, "processMemory", ProtocolMemory())

    def listen(self, protocol: str) -> tuple[MappedListeningPort, ScriptedGateway]:
        network = MemoryUDPNetwork()
        gateway = ScriptedGateway()
        network.host(SCRIPTED_GATEWAY).listenUDP(5351, gateway)
        endpoint = MappedServerEndpoint(
            network.host(SCRIPTED_HOST),
            tcpEndpoint(memoryReactor(), 8080),
            gateway=SCRIPTED_GATEWAY,
            protocol=protocol,
            nonces=MemoryNonceStore(),
            announcements=lambda protocol: None,
        )
        port = self.successResultOf(endpoint.listen(FACTORY))
        network.flush()
        network.clock.advance(0)
        network.flush()
        return port, gateway

    def test_natpmp(self) -> None:
        port, gateway = self.listen("natpmp")
        self.assertEqual(gateway.unsupported, [])
        self.assertIn(
            8080,
            [r.internalPort for r, _ in gateway.requests if isinstance(r, MapRequest)],
        )
        self.assertEqual(port.mappedAddress, PUBLIC)

    def test_autoFallsBack(self) -> None:
        """
        C{auto} asks in PCP first (the gateway answers "unsupported
        version"), then in NAT-PMP.
        """
        port, gateway = self.listen("auto")
        self.assertNotEqual(gateway.unsupported, [])
        self.assertEqual({d[0] for d, _ in gateway.unsupported}, {2})
        self.assertIn(
            8080,
            [r.internalPort for r, _ in gateway.requests if isinstance(r, MapRequest)],
        )
        self.assertEqual(port.mappedAddress, PUBLIC)

    def test_pcpOnly(self) -> None:
        """
        C{pcp} never falls back: the NAT-PMP-only gateway hears PCP only,
        and nothing is mapped.
        """
        port, gateway = self.listen("pcp")
        self.assertNotEqual(gateway.unsupported, [])
        self.assertEqual({d[0] for d, _ in gateway.unsupported}, {2})
        self.assertEqual(gateway.requests, [])
        self.assertIsNone(port.mappedAddress)
