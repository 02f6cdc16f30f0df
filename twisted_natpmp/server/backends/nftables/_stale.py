# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
The stale-flow cut at start: the flows a DNAT made to the gateway's external
addresses on a port of its range, which an earlier (killed) run may have
left, listed before the first batch and deleted by their exact tuples.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from ipaddress import IPv4Address

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._conntrack import (
    DELETE_ARGUMENTS,
    Flow,
    deletions,
    listArguments,
    parseFlows,
    staleFlows,
)
from ._process import IProcessRunner

__all__ = ["cutStale", "listStale"]

# The backend's namespace: the events are those it logged before.
log = Logger(namespace="twisted_natpmp.server.backends.nftables.backend")


def listStale(
    conntrack: IProcessRunner,
    ports: tuple[int, int],
    addresses: Collection[IPv4Address],
) -> Deferred[list[Flow] | None]:
    """
    The flows a DNAT made to C{addresses} on a port of the gateway's range.

    @param conntrack: runs C{conntrack}.
    @param ports: the gateway's range, lowest and highest.
    @param addresses: the external addresses; none: nothing is listed, and
        a log line says so.
    @return: fires with them, or L{None} if not listed; never fails (a
        failure is logged).
    """
    addresses = frozenset(addresses)
    if not addresses:
        log.info(
            "no external address: the flows an earlier run may have left"
            " on ports {low}-{high} are not cut",
            low=ports[0],
            high=ports[1],
        )
        return succeed(None)

    def listed(output: bytes) -> list[Flow]:
        flows = parseFlows(output.decode("ascii", "replace"))
        return staleFlows(flows, addresses, *ports)

    def failed(failure: Failure) -> None:
        log.warn(
            "cannot list the flows an earlier run may have left: {error}",
            error=str(failure.value),
        )
        return None

    running = conntrack.run(listArguments(False), b"")
    return running.addCallbacks(listed, failed)


def cutStale(
    conntrack: IProcessRunner, ports: tuple[int, int], flows: Sequence[Flow]
) -> Deferred[None]:
    """
    Delete C{flows} (L{listStale}'s), and say how many.

    @return: fires when done; never fails (a failure is logged).
    """
    if flows:
        cut = conntrack.run(DELETE_ARGUMENTS, deletions(flows, False))
    else:
        cut = succeed(b"")

    def done(output: bytes) -> None:
        log.info(
            "cut {count} flow(s) an earlier run may have left on ports {low}-{high}",
            count=len(flows),
            low=ports[0],
            high=ports[1],
        )

    def failed(failure: Failure) -> None:
        log.warn(
            "cannot cut {count} flow(s) an earlier run may have left: {error}",
            count=len(flows),
            error=str(failure.value),
        )

    return cut.addCallbacks(done, failed)
