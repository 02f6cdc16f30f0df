"""
The twistd plugins are found by Twisted's plugin system and import cheaply.
"""

from __future__ import annotations

from typing import cast

from twisted.application.service import IServiceMaker, ServiceMaker
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from ._imports import modulesLoadedBy


class PluginTests(SynchronousTestCase):
    def test_found(self) -> None:
        makers = {
            maker.tapname: cast(ServiceMaker, maker)
            for maker in getPlugins(IServiceMaker)
        }
        self.assertEqual(makers["natpmp"].module, "twisted_natpmp._tap")
        self.assertEqual(makers["natpmp-gateway"].module, "twisted_natpmp._gatewaytap")
        for name in ("natpmp", "natpmp-gateway"):
            self.assertTrue(hasattr(makers[name].options(), "parseOptions"))

    def test_endpointParserFound(self) -> None:
        """
        The C{natpmp:} endpoint string parser is found by its prefix, in the
        same module as the twistd plugins.
        """
        [parser] = [
            p
            for p in getPlugins(IStreamServerEndpointStringParser)
            if p.prefix == "natpmp"
        ]
        self.assertEqual(
            type(parser).__module__, "twisted.plugins.twisted_natpmp_plugins"
        )

    def test_cheapImport(self) -> None:
        """
        Listing plugins imports the plugin module; it must not import the
        library or install a reactor.
        """
        loaded = modulesLoadedBy("twisted.plugins.twisted_natpmp_plugins")
        self.assertEqual(
            sorted(
                m
                for m in loaded
                if m.startswith("twisted_natpmp") or m == "twisted.internet.reactor"
            ),
            [],
        )


class PublicNamesTests(SynchronousTestCase):
    def test_allResolve(self) -> None:
        """
        Every name in C{twisted_natpmp.__all__} resolves, lazily.
        """
        import twisted_natpmp

        for name in twisted_natpmp.__all__:
            self.assertIsNotNone(getattr(twisted_natpmp, name), name)
        self.assertRaises(AttributeError, getattr, twisted_natpmp, "nothing")
