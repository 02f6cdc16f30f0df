# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
L{FlowCutter}: ending the established flows through removed mappings with
C{conntrack}, the removals that come while a run is in flight sharing the
next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ...._types import Transport
from ..._entries import GatewayMapping
from ._conntrack import (
    DELETE_ARGUMENTS,
    deletions,
    flowsThrough,
    listArguments,
    parseFlows,
)
from ._process import IProcessRunner

__all__ = ["Forward", "FlowCutter", "forwardOf"]

# The backend's namespace: the events are those it logged before.
log = Logger(namespace="twisted_natpmp.server.backends.nftables.backend")

#: What forwards a mapping: its transport, external port, internal address
#: and internal port.
Forward = tuple[Transport, int, object, int]


def forwardOf(m: GatewayMapping) -> Forward:
    """
    What forwards C{m}: its external port to its internal address and port.
    """
    return (m.transport, m.externalPort, m.client, m.internalPort)


class FlowCutter:
    """
    Ends the flows through removed mappings, one C{conntrack} run (per
    address family) at a time.
    """

    def __init__(
        self,
        conntrack: IProcessRunner | None,
        internalNetworks: Iterable[IPv4Network | IPv6Network],
        forwarded: Callable[[], set[Forward]],
    ) -> None:
        """
        @param conntrack: runs C{conntrack}; L{None} leaves established flows
            alone.
        @param internalNetworks: the gateway's internal networks, whose
            hosts' own flows to a pinhole's host are not cut with it.
        @param forwarded: gives the forwards committed now: the flows
            through a mapping forwarded again since its removal are left.
        """
        self._conntrack = conntrack
        self._internal = tuple(internalNetworks)
        self._isForwarded = forwarded
        # Removed mappings whose flows wait for the next conntrack run.
        self._flows: list[tuple[Sequence[GatewayMapping], Deferred[None]]] = []
        self._flowsInFlight: Deferred[None] | None = None

    def end(self, mappings: Sequence[GatewayMapping]) -> Deferred[None]:
        """
        End the flows through C{mappings}.  Removals that come while a
        C{conntrack} run is in flight share the next run, so that its queue
        never grows with the request rate.

        @return: fires when done; never fails (a failure is logged).
        """
        if not mappings or self._conntrack is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._flows.append((mappings, done))
        if self._flowsInFlight is None:
            self._nextFlows(None)
        return done

    def _nextFlows(self, result: object) -> None:
        waiting, self._flows = self._flows, []
        if not waiting:
            self._flowsInFlight = None
            return
        # Not those forwarded again since (re-mapped): the flows through
        # them are the new mapping's too.
        forwarded = self._isForwarded()
        mappings = [
            m for group, _ in waiting for m in group if forwardOf(m) not in forwarded
        ]
        families = [
            [m for m in mappings if isinstance(m.client, IPv6Address) is ipv6]
            for ipv6 in (False, True)
        ]

        def failed(failure: Failure) -> None:
            log.warn(
                "cannot end the flows through {count} removed mapping(s): {error}",
                count=len(mappings),
                error=str(failure.value),
            )

        def ended(result: object) -> None:
            for _, done in waiting:
                done.callback(None)

        running = self._cutFlows(families[0], False).addErrback(failed)
        running.addCallback(lambda _: self._cutFlows(families[1], True))
        running.addErrback(failed)
        self._flowsInFlight = running
        running.addCallback(ended).addCallback(self._nextFlows)

    def _cutFlows(
        self, mappings: Sequence[GatewayMapping], ipv6: bool
    ) -> Deferred[None]:
        """
        List the flows of one address family, and delete those through
        C{mappings}.
        """
        conntrack = self._conntrack
        if not mappings or conntrack is None:
            return succeed(None)

        def listed(output: bytes) -> Deferred[bytes] | None:
            flows = flowsThrough(
                parseFlows(output.decode("ascii", "replace")), mappings, self._internal
            )
            if not flows:
                return None
            return conntrack.run(DELETE_ARGUMENTS, deletions(flows, ipv6))

        cut = conntrack.run(listArguments(ipv6), b"").addCallback(listed)
        return cut.addCallback(lambda _: None)
