# -*- test-case-name: tests.test_negotiate -*-
"""
What L{twisted_natpmp.negotiate} remembers of gateways: which speak only
NAT-PMP, and since when (L{ProtocolMemory}), and the one reply taken for
proof of it (L{isNATPMPOnly}, RFC 6887 s9).
"""

from __future__ import annotations

from twisted.python.failure import Failure

from ._types import IPAddress
from .errors import UnsupportedVersionError

__all__ = [
    "PROTOCOLS",
    "REPROBE_INTERVAL",
    "ProtocolMemory",
    "isNATPMPOnly",
    "processMemory",
]

#: The protocol names L{mapperFor} takes.
PROTOCOLS = ("auto", "pcp", "natpmp")
#: Seconds after which a gateway found to speak only NAT-PMP is asked in PCP
#: again (at most every half hour, as RFC 6887 s9 is read by PROTOCOL.md).
REPROBE_INTERVAL = 1800.0


def isNATPMPOnly(failure: Failure) -> bool:
    """
    Whether a PCP request failed because the gateway speaks only NAT-PMP:
    the L{UnsupportedVersionError} that L{PCPClient} raises, with
    C{protocol="natpmp"}, on the 8-byte version-0 result-1 reply.
    """
    error = failure.value
    return isinstance(error, UnsupportedVersionError) and error.protocol == "natpmp"


class ProtocolMemory:
    """
    Which gateways were found to speak only NAT-PMP, and when.
    """

    def __init__(self, reprobeAfter: float = REPROBE_INTERVAL) -> None:
        self.reprobeAfter = reprobeAfter
        self._since: dict[IPAddress, float] = {}

    def speaksOnlyNATPMP(self, gateway: IPAddress, now: float) -> bool:
        """
        Whether C{gateway} was found to speak only NAT-PMP less than
        L{reprobeAfter} seconds before C{now}.
        """
        since = self._since.get(gateway)
        if since is None:
            return False
        if now - since >= self.reprobeAfter:
            del self._since[gateway]
            return False
        return True

    def rememberNATPMP(self, gateway: IPAddress, now: float) -> None:
        """
        C{gateway} answered PCP with NAT-PMP's "unsupported version".
        """
        self._since[gateway] = now

    def forget(self, gateway: IPAddress) -> None:
        """
        Ask C{gateway} in PCP again next time (it restarted).
        """
        self._since.pop(gateway, None)


#: What this process found out about its gateways (see L{mapperFor}).
processMemory = ProtocolMemory()
