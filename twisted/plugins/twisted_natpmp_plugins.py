# -*- test-case-name: tests.test_plugins,tests.test_packaging -*-
"""
twistd plugins of twisted-natpmp: C{twistd natpmp} keeps ports mapped (by
PCP or NAT-PMP), C{twistd natpmp-gateway} serves NAT-PMP as a gateway.

twistd imports this module to list its plugins, so it imports nothing of
the library: each plugin's options and service come from the module it
names, and the version in its description is looked up when read.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker


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
