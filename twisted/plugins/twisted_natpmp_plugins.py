# -*- test-case-name: tests.test_plugins,tests.test_packaging -*-
"""
Plugins of twisted-natpmp: C{twistd natpmp} keeps ports mapped (by PCP or
NAT-PMP), C{twistd natpmp-gateway} serves NAT-PMP as a gateway, and the
C{natpmp:} server endpoint string (C{twistd web --listen natpmp:tcp:8080})
listens and keeps its port mapped.

twistd and C{serverFromString} import this module to list its plugins, so it
imports nothing of the library: each plugin's options and service come from
the module it names, the version in its description is looked up when read,
and the endpoint parser imports the endpoint when it parses.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker
from twisted.internet.interfaces import (
    IReactorCore,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


class _VersionedServiceMaker(ServiceMaker):
    """
    A L{ServiceMaker} whose description ends with the version of
    twisted-natpmp, e.g. C{"Serve NAT-PMP (RFC 6886) as a gateway
    (twisted-natpmp 0.1.0)."}.
    """

    def __init__(self, name: str, module: str, summary: str, tapname: str) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            name, module, summary, tapname
        )

    @property
    def description(self) -> str:
        """
        The summary given to the constructor, with the version.
        """
        from twisted_natpmp._version import __version__

        return f"{self._summary.rstrip('.')} (twisted-natpmp {__version__})."

    @description.setter
    def description(self, summary: str) -> None:
        self._summary = summary


natpmp = _VersionedServiceMaker(
    "NAT-PMP port mapper",
    "twisted_natpmp._tap",
    "Keep ports mapped on the PCP (RFC 6887) or NAT-PMP (RFC 6886) gateway.",
    "natpmp",
)
natpmpGateway = _VersionedServiceMaker(
    "NAT-PMP gateway",
    "twisted_natpmp._gatewaytap",
    "Serve NAT-PMP (RFC 6886) as a gateway.",
    "natpmp-gateway",
)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _MappedServerParser:
    """
    The C{natpmp:} server endpoint string: C{natpmp:[OPTIONS:]WRAPPED}, e.g.
    C{natpmp:gateway=192.168.1.1:tcp:8080}; the rules are in
    L{twisted_natpmp.endpoint._parser}.
    """

    prefix = "natpmp"

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        from twisted_natpmp.endpoint import parseMappedServer

        # (Twisted's tokeniser gives only strings.)
        return parseMappedServer(
            reactor, *map(str, args), **{k: str(v) for k, v in kwargs.items()}
        )


natpmpEndpoint = _MappedServerParser()
