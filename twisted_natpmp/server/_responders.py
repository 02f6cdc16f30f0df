# -*- test-case-name: tests.server.test_responder -*-
"""
The dispatch glue of a gateway: its NAT-PMP responder
(L{twisted_natpmp.natpmp.responder.NATPMPResponder}), its PCP one
(L{twisted_natpmp.pcp.responder.PCPResponder}) when PCP is on, and the
L{VersionDispatcher} that picks between them by version byte: NAT-PMP's
for 0 and 1 (1 is never used, RFC 6886 s1.1, and gets NAT-PMP's
Unsupported Version), PCP's for 2 and for every other version
(UNSUPP_VERSION naming 2, RFC 6887 s9); without PCP, NAT-PMP's for all.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._droplog import DropLog
from ..natpmp.responder import NATPMPResponder
from ..pcp._serverchecks import Network
from ..pcp.responder import PCPResponder
from .dispatch import GatewayCore, VersionDispatcher

__all__ = ["respondersFor"]


def respondersFor(
    gateway: GatewayCore,
    drops: DropLog,
    *,
    pcp: bool,
    minLifetime: int,
    maxLifetime: int,
    allowThirdParty: Iterable[Network | str],
) -> tuple[NATPMPResponder, PCPResponder | None, VersionDispatcher]:
    """
    The responders of C{gateway}, and their dispatcher.

    @param drops: counts the packets of no version answered.
    @param pcp: whether to answer PCP beside NAT-PMP.
    @param minLifetime: the shortest PCP lifetime granted (at most
        C{maxLifetime}).
    @param maxLifetime: the longest PCP lifetime granted.
    @param allowThirdParty: the networks whose hosts may use PCP's
        THIRD_PARTY option.
    @return: the NAT-PMP responder, the PCP one (L{None} when PCP is off)
        and the dispatcher.
    """
    natpmp = NATPMPResponder(gateway)
    if not pcp:
        return natpmp, None, VersionDispatcher(natpmp, drops)
    pcpResponder = PCPResponder(
        gateway,
        minLifetime=min(minLifetime, maxLifetime),
        maxLifetime=maxLifetime,
        allowThirdParty=allowThirdParty,
    )
    dispatcher = VersionDispatcher(pcpResponder, drops)
    dispatcher.register(0, natpmp)
    dispatcher.register(1, natpmp)
    return natpmp, pcpResponder, dispatcher
