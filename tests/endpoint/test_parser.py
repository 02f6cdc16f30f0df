"""
Tests for the C{natpmp:} description (L{twisted_natpmp.endpoint._parser}),
through Twisted's own tokeniser (C{serverFromString}, which finds the plugin)
and directly: whose options are whose, escaping, and the errors.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.endpoint import MappedServerEndpoint, _endpoint
from twisted_natpmp.endpoint._parser import (
    EndpointOptions,
    quoteArgument,
    splitDescription,
)
from twisted_natpmp.pcp._nonces import NonceStore

from ._helpers import memoryReactor


def parse(description: str) -> tuple[MappedServerEndpoint, MemoryReactorClock]:
    """
    The endpoint Twisted makes of C{description}, on a memory reactor.
    """
    reactor = memoryReactor()
    endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
    assert isinstance(endpoint, MappedServerEndpoint), endpoint
    return endpoint, reactor


def wrappedListen(description: str) -> tuple[Any, ...]:
    """
    What the wrapped endpoint of C{description} asks of the reactor when it
    listens: C{(port, backlog, interface)}.
    """
    endpoint, reactor = parse(description)
    endpoint.wrapped.listen(Factory.forProtocol(Protocol))
    [(port, _, backlog, interface)] = reactor.tcpServers
    return port, backlog, interface


def settings(endpoint: MappedServerEndpoint) -> tuple[object, ...]:
    """
    The endpoint's own options: gateway, protocol, lifetime, external port,
    wait for mapping, nonce store.
    """
    return (
        endpoint.gateway,
        endpoint.protocol,
        endpoint.lifetime,
        endpoint.externalPort,
        endpoint.waitForMapping,
        endpoint.nonces,
    )


class DescriptionTests(SynchronousTestCase):
    """
    Descriptions as a user writes them, parsed by C{serverFromString}.
    """

    def test_bare(self) -> None:
        """
        C{natpmp:tcp:8080}: the defaults, and C{tcp:8080} wrapped.
        """
        endpoint, _ = parse("natpmp:tcp:8080")
        self.assertEqual(settings(endpoint), (None, "auto", 7200, None, 0.0, None))
        self.assertEqual(wrappedListen("natpmp:tcp:8080"), (8080, 50, ""))

    def test_issueExample(self) -> None:
        """
        The options before the wrapped endpoint are natpmp's; the wrapped
        endpoint keeps its own (C{interface}).
        """
        description = (
            "natpmp:gateway=192.168.1.1:lifetime=3600:externalPort=80"
            ":tcp:8080:interface=0.0.0.0"
        )
        endpoint, _ = parse(description)
        self.assertEqual(
            (endpoint.gateway, endpoint.lifetime, endpoint.externalPort),
            (IPv4Address("192.168.1.1"), 3600, 80),
        )
        self.assertEqual(wrappedListen(description), (8080, 50, "0.0.0.0"))

    def test_placeDoesNotMatter(self) -> None:
        """
        Twisted's tokeniser does not say where a keyword stood: natpmp's
        options after the wrapped endpoint's arguments are natpmp's too, and
        the wrapped endpoint's keywords may stand anywhere.
        """
        before = "natpmp:protocol=pcp:backlog=7:tcp:8080"
        after = "natpmp:tcp:8080:backlog=7:protocol=pcp"
        for description in (before, after):
            endpoint, _ = parse(description)
            self.assertEqual(endpoint.protocol, "pcp")
            self.assertEqual(wrappedListen(description), (8080, 7, ""))

    def test_longNames(self) -> None:
        """
        Each option may carry the C{natpmp} prefix, in any mix.
        """
        endpoint, _ = parse(
            "natpmp:natpmpGateway=10.77.0.1:natpmpProtocol=natpmp"
            ":natpmpLifetime=600:natpmpExternalPort=0:natpmpWaitForMapping=2.5"
            ":tcp:0"
        )
        self.assertEqual(
            settings(endpoint),
            (IPv4Address("10.77.0.1"), "natpmp", 600, 0, 2.5, None),
        )

    def test_longNameLeavesShortOne(self) -> None:
        """
        An option given with the prefix leaves its short name to the wrapped
        endpoint, in any order; given without the prefix alone, it is
        natpmp's.
        """
        made: list[str] = []

        def wrappedFromString(reactor: object, description: str) -> object:
            made.append(description)
            return object()

        self.patch(_endpoint, "serverFromString", wrappedFromString)
        for description in [
            "natpmp:natpmpLifetime=600:myendpoint:8080:lifetime=5",
            "natpmp:lifetime=5:myendpoint:8080:natpmpLifetime=600",
        ]:
            with self.subTest(description=description):
                endpoint, _ = parse(description)
                self.assertEqual(endpoint.lifetime, 600)
                self.assertEqual(made[-1], "myendpoint:8080:lifetime=5")
        endpoint, _ = parse("natpmp:myendpoint:8080:lifetime=5")
        self.assertEqual((endpoint.lifetime, made[-1]), (5, "myendpoint:8080"))

    def test_lastKeyWins(self) -> None:
        """
        A key written twice counts once, as Twisted's tokeniser keeps only
        the last (the README says so).
        """
        endpoint, _ = parse("natpmp:lifetime=600:tcp:8080:lifetime=5")
        self.assertEqual(endpoint.lifetime, 5)

    def test_prefixCaseInsensitive(self) -> None:
        """
        Twisted matches the prefix in any case; the protocol's name too.
        """
        endpoint, _ = parse("NATPMP:protocol=PCP:tcp:8080")
        self.assertEqual(endpoint.protocol, "pcp")

    def test_ipv6Gateway(self) -> None:
        """
        An IPv6 gateway's colons are escaped; so are those of the wrapped
        C{tcp6} endpoint's interface.
        """
        description = r"natpmp:gateway=fe80\:\:1%eth0:tcp6:8080:interface=\:\:1"
        endpoint, _ = parse(description)
        self.assertEqual(endpoint.gateway, IPv6Address("fe80::1%eth0"))
        self.assertEqual(wrappedListen(description), (8080, 50, "::1"))

    def test_nonceFile(self) -> None:
        """
        C{nonceFile} names the PCP nonce file; a colon in it is escaped.
        """
        endpoint, _ = parse(r"natpmp:nonceFile=/tmp/a\:b/nonces.json:tcp:8080")
        assert isinstance(endpoint.nonces, NonceStore)
        self.assertEqual(str(endpoint.nonces.path), "/tmp/a:b/nonces.json")

    def test_quotedWrapped(self) -> None:
        """
        The wrapped description given whole, as one argument with its C{:}
        and C{=} escaped, is passed on as it is, so that it may carry an
        option named like one of natpmp's; every keyword outside it is
        natpmp's.
        """
        description = r"natpmp:lifetime=600:tcp\:8080\:interface\=127.0.0.1"
        endpoint, _ = parse(description)
        self.assertEqual(endpoint.lifetime, 600)
        self.assertEqual(wrappedListen(description), (8080, 50, "127.0.0.1"))

    def test_quotedWithEscapes(self) -> None:
        """
        An escape inside a quoted wrapped description is escaped itself:
        C{\\:} there becomes C{\\\\\\:}.
        """
        description = r"natpmp:protocol=pcp:tcp6\:8080\:interface\=\\\:\\\:1"
        endpoint, _ = parse(description)
        self.assertEqual(endpoint.protocol, "pcp")
        self.assertEqual(wrappedListen(description), (8080, 50, "::1"))

    def test_wrapsAPlugin(self) -> None:
        """
        A wrapped endpoint may be another plugin's: Twisted's C{haproxy:},
        itself wrapping C{tcp:}.
        """
        self.assertEqual(
            wrappedListen("natpmp:haproxy:tcp:8080:interface=127.0.0.1"),
            (8080, 50, "127.0.0.1"),
        )


class SplitTests(SynchronousTestCase):
    """
    L{splitDescription}, given what the tokeniser gives the plugin.
    """

    def test_rejoined(self) -> None:
        """
        The wrapped endpoint's arguments are re-joined in order, positional
        ones first, each escaped again.
        """
        options, inner = splitDescription(
            ("ssl", "8443"),
            {
                "privateKey": "C:/keys/server.pem",
                "lifetime": "60",
                "certKey": "a=b.pem",
            },
        )
        self.assertEqual(options, EndpointOptions(lifetime=60))
        self.assertEqual(
            inner, r"ssl:8443:privateKey=C\:/keys/server.pem:certKey=a\=b.pem"
        )

    def test_positionalWithEquals(self) -> None:
        """
        A positional argument holding C{=} (escaped in the description) is
        escaped again, so that it does not come back as a keyword (Twisted's
        C{quoteStringArgument} leaves C{=} alone).
        """
        _, inner = splitDescription(("tcp", "a=b", "c\\d"), {})
        self.assertEqual(inner, r"tcp:a\=b:c\\d")

    def test_quote(self) -> None:
        self.assertEqual(quoteArgument(r"a:b=c\d"), r"a\:b\=c\\d")


class ErrorTests(SynchronousTestCase):
    """
    A value that cannot be used is refused with a L{ValueError} naming the
    option and the value.
    """

    def assertRefused(self, description: str, *words: str) -> None:
        error = self.assertRaises(ValueError, parse, description)
        for word in words:
            self.assertIn(word, str(error))

    def test_badValues(self) -> None:
        for description, words in [
            ("natpmp:lifetime=abc:tcp:8080", ("lifetime", "'abc'")),
            ("natpmp:lifetime=0:tcp:8080", ("lifetime", "'0'")),
            ("natpmp:externalPort=70000:tcp:8080", ("externalPort", "'70000'")),
            ("natpmp:natpmpGateway=nonsense:tcp:8080", ("natpmpGateway", "nonsense")),
            ("natpmp:gateway=224.0.0.1:tcp:8080", ("gateway", "224.0.0.1")),
            ("natpmp:protocol=upnp:tcp:8080", ("protocol", "'upnp'")),
            ("natpmp:waitForMapping=601:tcp:8080", ("waitForMapping", "'601'")),
            ("natpmp:waitForMapping=-1:tcp:8080", ("waitForMapping", "'-1'")),
            ("natpmp:waitForMapping=nan:tcp:8080", ("waitForMapping", "'nan'")),
            ("natpmp:nonceFile=:tcp:8080", ("nonceFile", "''")),
        ]:
            with self.subTest(description=description):
                self.assertRefused(description, *words)

    def test_shortNameHint(self) -> None:
        """
        A short name's bad value may be the wrapped endpoint's own option:
        the message says how to give it; a long name's does not.
        """
        self.assertRefused(
            "natpmp:protocol=http:myendpoint:8080",
            "protocol 'http'",
            "if protocol= is the wrapped endpoint's, give natpmp's as"
            " natpmpProtocol= or quote the wrapped endpoint",
        )
        error = self.assertRaises(
            ValueError, parse, "natpmp:natpmpProtocol=http:tcp:8080"
        )
        self.assertNotIn("quote", str(error))

    def test_unknownPrefixedOption(self) -> None:
        self.assertRefused("natpmp:natpmpLifeTime=5:tcp:8080", "natpmpLifeTime")

    def test_notAnAddress(self) -> None:
        """
        A gateway that is no address is said not to be IPv4 or IPv6 (both
        are taken), in either spelling.
        """
        for key in ("gateway", "natpmpGateway"):
            with self.subTest(key=key):
                self.assertRefused(
                    f"natpmp:{key}=bogus:tcp:8080",
                    f"natpmp: option {key} 'bogus' is not an IPv4 or IPv6 address",
                )

    def test_wrappedParserFails(self) -> None:
        """
        Whatever the wrapped endpoint's parser raises is a L{ValueError}
        naming the wrapped description, the error chained.
        """
        failure = OSError("no such key file")

        def wrappedFromString(reactor: object, description: str) -> object:
            raise failure

        self.patch(_endpoint, "serverFromString", wrappedFromString)
        error = self.assertRaises(ValueError, parse, "natpmp:myendpoint:8080")
        self.assertEqual(
            str(error),
            "natpmp: the wrapped endpoint 'myendpoint:8080' cannot be made:"
            " no such key file",
        )
        self.assertIs(error.__cause__, failure)

    def test_nothingWrapped(self) -> None:
        self.assertRefused("natpmp:gateway=10.0.0.1", "no endpoint to wrap")

    def test_unixHasNoPort(self) -> None:
        self.assertRefused("natpmp:unix:/tmp/socket", "'unix:/tmp/socket'", "port")

    def test_natpmpTwice(self) -> None:
        self.assertRefused("natpmp:natpmp:tcp:8080", "'natpmp:tcp:8080'")

    def test_strayOptionWhenQuoted(self) -> None:
        self.assertRefused(r"natpmp:backlog=5:tcp\:8080", "backlog", "'5'")

    def test_wrappedRefuses(self) -> None:
        """
        An option the wrapped endpoint does not take (C{tcp:} raises
        L{TypeError}) is a L{ValueError} naming the wrapped description.
        """
        self.assertRefused("natpmp:tcp:8080:colour=red", "'tcp:8080:colour=red'")
        self.assertRefused("natpmp:nosuchendpoint:1", "nosuchendpoint")

    def test_natpmpSpeaksNoIPv6(self) -> None:
        self.assertRefused(
            r"natpmp:protocol=natpmp:gateway=2001\:db8\:\:1:tcp:8080",
            "gateway",
            "2001:db8::1",
        )
