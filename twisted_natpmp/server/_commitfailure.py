# -*- test-case-name: tests.server.test_committer -*-
"""
What a L{Committer <twisted_natpmp.server._committer.Committer>} does when
a batch fails: the refusal its requests get, the mappings put back as last
committed (those of a batch cleared after a timeout forgotten), the changes
carried into the next batch (the expiries, never undone), and the requests
queued to run again one at a time (isolating).

The table and the kernel never disagree for long:

  - the state of every mapping as last committed is kept; when a batch
    fails, every mapping its requests (and those of the open batch)
    touched is put back as committed, in the table, without a backend
    call;
  - a failed batch of one request is answered by running the request
    again with the gateway refusing every change with the failure's
    meaning (L{twisted_natpmp.errors.NetworkFailureError} or
    L{twisted_natpmp.errors.OutOfResourcesError}), so each protocol
    answers with its own code for it (NAT-PMP's 3 or 4, PCP's
    NETWORK_FAILURE or NO_RESOURCES);
  - a failed batch of several requests is not answered yet: its requests,
    then the open batch's, are run again one at a time, each in a batch
    of its own (isolating), so that one bad request does not fail the
    others; new requests queue behind them meanwhile (at most
    L{DEFAULT_MAX_QUEUED <twisted_natpmp.server._pending.DEFAULT_MAX_QUEUED>}:
    the rest are dropped and counted), but for
    those that change nothing by their kind (NAT-PMP's external address
    request, PCP's ANNOUNCE), answered at once in every mode;
  - an expiry's removal is never undone: the table has forgotten the
    mapping, and the kernel's own timeout, the lifetime granted, ends it
    anyway;
  - a batch that failed because the backend's whole forwarding state has
    gone (a firewall reload deleted it) empties the table with a new
    epoch, as a restart would, starts the backend afresh and runs its
    requests again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from ..errors import NetworkFailureError
from ._entries import GatewayMapping, Key, Refused
from ._pending import Batch, Request, State
from ._shared import SharedTable
from .backends._batching import (
    ChangeKind,
    CommitFailed,
    ForwardChange,
    IBatchingBackend,
)

__all__ = ["carried", "isolate", "logUndone", "refusalFor", "startAgain", "undo"]

# The committer's namespace: the events are those it logged before.
log = Logger(namespace="twisted_natpmp.server._committer")


def refusalFor(error: BaseException | None) -> Refused:
    """
    The refusal every change of a failed batch's requests gets: the
    backend's meaning (L{CommitFailed}), or a network failure.
    """
    if isinstance(error, CommitFailed):
        return Refused(error.error, "the backend failed to commit", error.detail)
    return Refused(NetworkFailureError(), "the backend failed to commit", repr(error))


def undo(
    table: SharedTable,
    committed: dict[Key, State],
    keys: Iterable[Key],
    batch: Batch,
    error: BaseException | None,
) -> list[GatewayMapping]:
    """
    Put every mapping of C{keys} back in C{table} as last C{committed}
    (forgetting those of C{batch} when its forwards were cleared).

    @return: the mappings that ended meanwhile (no longer committed).
    """
    if isinstance(error, CommitFailed) and error.cleared:
        # Its forwards have gone, whatever was committed before.
        for key in batch.keys:
            committed.pop(key, None)
    ended = table.restore({key: committed.get(key) for key in keys})
    for mapping in ended:
        committed.pop(mapping.key, None)
    return ended


def carried(
    batch: Batch, pending: Batch, keys: set[Key], ended: Sequence[GatewayMapping]
) -> Batch:
    """
    What is left of a failed C{batch} and the open C{pending} one, once
    C{keys} are undone: the expiries, never undone (those of the failed
    one are sent again), and the removal of what was put back as committed
    but has expired meanwhile (C{ended}).
    """
    return Batch(
        changes=[
            c
            for c in batch.changes
            if c.kind is ChangeKind.REMOVE and c.mapping.key not in keys
        ]
        + [c for c in pending.changes if c.mapping.key not in keys]
        + [ForwardChange(ChangeKind.REMOVE, m) for m in ended]
    )


def isolate(queue: deque[Request], again: Sequence[Request]) -> None:
    """
    Queue C{again} first, in order, to run again one at a time, each
    admitted once already.
    """
    for request in again:
        request.again = True
    queue.extendleft(reversed(again))


def logUndone(batch: Batch, pending: Batch, refusal: Refused) -> None:
    """
    Say that C{batch} failed, and how many requests (its and the open
    C{pending} batch's) were undone.
    """
    log.warn(
        "batch of {changes} change(s) failed, {requests} request(s) undone: {error}",
        changes=len(batch.changes),
        requests=len(batch.requests) + len(pending.requests),
        error=str(refusal),
    )


def startAgain(backend: IBatchingBackend) -> None:
    """
    Start C{backend} afresh, its forwarding state found gone; a failure is
    logged.
    """
    started = maybeDeferred(backend.start)
    started.addErrback(
        lambda f: log.error(
            "cannot make the forwarding state afresh: {error}",
            error=str(f.value),
        )
    )
