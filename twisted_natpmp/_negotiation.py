# -*- test-case-name: tests.test_negotiate -*-
"""
The part of L{NegotiatingMapper <twisted_natpmp.negotiate.NegotiatingMapper>}
that speaks to both of its clients alike: cancelling, the observers, and
stopping.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, gatherResults

from .natpmp.client import NATPMPClient
from .pcp.client import PCPClient

__all__ = ["BothClientsMixin"]


class BothClientsMixin:
    """
    What is done to both clients of a negotiating mapper.

    @ivar pcp: the PCP client.
    @ivar natpmp: the NAT-PMP client, if any.
    """

    pcp: PCPClient
    natpmp: NATPMPClient | None

    def cancelPending(self) -> None:
        """
        Cancel every request of either client.
        """
        self.pcp.cancelPending()
        if self.natpmp is not None:
            self.natpmp.cancelPending()

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Hear of a loss of state seen by either client.
        """
        for client in self._clients():
            client.addStateLossObserver(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Stop calling C{observer}.
        """
        for client in self._clients():
            client.removeStateLossObserver(observer)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        """
        Hear of every retransmission of either client.
        """
        for client in self._clients():
            client.addRetryObserver(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        """
        Stop calling C{observer}.
        """
        for client in self._clients():
            client.removeRetryObserver(observer)

    def stop(self) -> Deferred[None]:
        """
        Stop both clients.
        """
        d = gatherResults([c.stop() for c in self._clients()], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def _clients(self) -> list[PCPClient | NATPMPClient]:
        return [self.pcp] if self.natpmp is None else [self.pcp, self.natpmp]
