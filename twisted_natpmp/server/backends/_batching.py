# -*- test-case-name: tests.server.test_committer -*-
"""
L{IBatchingBackend}: a backend whose changes take effect only when a batch
of them is committed, later (a firewall written by another process), in
place of L{twisted_natpmp.interfaces.IMappingBackend}'s immediate calls.

The gateway (L{twisted_natpmp.server._committer.Committer}) answers a
request only after the batch holding its changes has committed, and rolls
the table back and answers with the failure's meaning when it has not.
The memory backend stays synchronous; the gateway takes either kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from twisted.internet.defer import Deferred
from zope.interface import Interface

from ...errors import GatewayError
from .._entries import GatewayMapping
from ._filters import RemoteFilter

__all__ = [
    "ChangeKind",
    "CommitFailed",
    "ForwardChange",
    "IBatchingBackend",
    "IBatchingFilteringBackend",
    "IBatchingPinholeBackend",
]


class ChangeKind(Enum):
    """
    What a change does to one forward.
    """

    #: Forward a new mapping's external port for its lifetime (from now).
    #: Nothing forwards that port yet: the table is made afresh on start
    #: and every removal removes.
    ADD = "add"
    #: Forward it for a new lifetime from now: a renewal.
    SET = "set"
    #: Stop forwarding it, and end the flows through it: deleted by its
    #: client or expired.
    REMOVE = "remove"
    #: Let only some remote peers use it (PCP's FILTER, RFC 6887 s13.3),
    #: or all again.
    FILTER = "filter"


@dataclass(frozen=True, slots=True)
class ForwardChange:
    """
    One change to the forwards.

    @ivar kind: what it does.
    @ivar mapping: the mapping it is for (external port, internal address
        and port, and but for L{ChangeKind.REMOVE} the lifetime granted).
    @ivar filters: for L{ChangeKind.FILTER}, the remote peers allowed
        (none: all).
    """

    kind: ChangeKind
    mapping: GatewayMapping
    filters: tuple[RemoteFilter, ...] = ()


class CommitFailed(Exception):
    """
    A batch was not committed; none of its changes took effect (but see
    C{cleared}).

    @ivar error: what that means for the requests whose changes it held
        (L{twisted_natpmp.errors.NetworkFailureError},
        L{twisted_natpmp.errors.OutOfResourcesError}).
    @ivar detail: why, for the log.
    @ivar lost: whether the backend found its whole forwarding state gone
        (a firewall reload deleted its table): nothing the gateway granted
        is forwarded any more, and the gateway starts afresh.
    @ivar cleared: whether the batch may have committed after all (it
        timed out) and its forwards have been removed since: every mapping
        it changed is then gone, not as committed before.
    """

    def __init__(
        self,
        error: GatewayError,
        detail: str,
        lost: bool = False,
        cleared: bool = False,
    ) -> None:
        super().__init__(error, detail)
        self.error = error
        self.detail = detail
        self.lost = lost
        self.cleared = cleared

    def __str__(self) -> str:
        return f"{self.error.meaning}: {self.detail}"


class IBatchingBackend(Interface):
    """
    A backend that commits changes in atomic batches, asynchronously.
    """

    def start() -> Deferred[None]:
        """
        Make the forwarding state afresh and empty (a gateway that starts
        has no mappings: RFC 6886 s3.6, RFC 6887 s8.5); batches applied
        meanwhile wait for it.
        """

    def apply(changes: Sequence[ForwardChange]) -> Deferred[None]:
        """
        Commit C{changes}, in order, as one transaction: all or none.
        Removing a forward that is already gone (its own timeout ended it)
        is not an error.

        @return: fires when committed, or fails with L{CommitFailed}
            (with C{lost} set when the forwarding state was found gone:
            the gateway then calls L{start} again).
        """

    def check() -> Deferred[None]:
        """
        Look whether the forwarding state is still there (between batches:
        a firewall reload may have deleted it).

        @return: fires if it is; fails with L{CommitFailed}, C{lost} set,
            if it has gone, or with another error if it cannot be told.
        """

    def stop(held: Sequence[GatewayMapping]) -> Deferred[None]:
        """
        Remove every forward and everything else the backend added, and end
        the flows through the mappings still C{held}.
        """


class IBatchingPinholeBackend(IBatchingBackend):
    """
    A batching backend whose changes may also be for IPv6 hosts' own
    addresses and ports: pinholes (RFC 6887 s11.3, external = internal),
    as L{twisted_natpmp.server.backends._pinhole.IPinholeBackend} opens
    them at once.  Without it, a gateway over a batching backend refuses
    pinholes.
    """


class IBatchingFilteringBackend(IBatchingBackend):
    """
    A batching backend whose changes may also be L{ChangeKind.FILTER}s,
    as L{twisted_natpmp.server.backends._filters.IFilteringBackend} sets
    filters at once.  Without it, FILTER is refused.
    """
