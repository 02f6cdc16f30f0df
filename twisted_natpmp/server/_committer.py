# -*- test-case-name: tests.server.test_committer -*-
"""
L{Committer}: how a gateway answers over a batching backend
(L{twisted_natpmp.server.backends._batching.IBatchingBackend}), whose
changes take effect only when a batch of them commits, later.

Each request is answered by the responders at once, against the table,
which changes optimistically; the changes it made (the table's events)
join the open batch, and its reply is held until that batch has committed.
Requests that change nothing (an external address request, a refusal, a
deletion of nothing) are answered at once.  One batch is in flight at a
time; the requests answered meanwhile are coalesced into the next, sent
when the one in flight ends (and a first one on the next reactor turn, so
that the datagrams of one read share it).

A retransmission of a request still waiting (the same packet from the
same client) is not run again: the one reply goes where the last copy came
from.  When a batch fails, the table and the kernel do not disagree for
long: see L{twisted_natpmp.server._commitfailure}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress, Transport
from ._commitfailure import (
    carried,
    isolate,
    logUndone,
    refusalFor,
    startAgain,
    undo,
)
from ._entries import EventKind, Key, Refused, TableEvent
from ._pending import (
    DEFAULT_MAX_QUEUED,
    RETRY_DELAY,
    Batch,
    Mode,
    Request,
    Respond,
    Send,
    State,
    changesNothing,
)
from ._shared import SharedTable
from .backends._batching import (
    ChangeKind,
    CommitFailed,
    ForwardChange,
    IBatchingBackend,
)
from .backends._filters import RemoteFilter

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "RETRY_DELAY",
    "Committer",
    "Mode",
]

log = Logger()

_REQUESTED = {EventKind.CREATED, EventKind.RENEWED, EventKind.DELETED}


class Committer:
    """
    Answers requests over a batching backend; see the module docstring.

    @ivar mode: how new requests are taken.
    @ivar batches: how many batches were sent.
    """

    def __init__(
        self,
        clock: IReactorTime,
        backend: IBatchingBackend,
        table: SharedTable,
        respond: Respond,
        restored: Callable[[], object],
        dropped: Callable[[str, str], object] = lambda host, reason: None,
        maxQueued: int = DEFAULT_MAX_QUEUED,
        lost: Callable[[str], object] = lambda why: None,
    ) -> None:
        """
        @param respond: answers one request against C{table} (the
            gateway's dispatcher).
        @param restored: called when mappings were put back into
            C{table} (the gateway sets its expiry timer again).
        @param dropped: counts a request dropped (its source, why): the
            gateway's L{DropLog <twisted_natpmp._droplog.DropLog>}.
        @param maxQueued: the most requests that wait behind a failed
            batch's.
        @param lost: called (with why) when the backend's forwarding state
            was found gone, to empty C{table} with a new epoch and announce
            it; the backend is then started again.
        """
        self._clock = clock
        self._backend = backend
        self._table = table
        self._respond = respond
        self._restored = restored
        self._dropped = dropped
        self._lost = lost
        self._maxQueued = maxQueued
        # Every request waiting for a batch or its turn, by what it is.
        self._held: dict[tuple[bytes, IPAddress], Request] = {}
        self.mode = Mode.NORMAL
        self.batches = 0
        self._open = Batch()
        self._inFlight: Batch | None = None
        self._flushCall: IDelayedCall | None = None
        self._queue: deque[Request] = deque()
        self._committed: dict[Key, State] = {}
        self._current: Request | None = None
        self._touched = False
        self._refusing: Refused | None = None

    # What the gateway calls

    def answer(self, packet: bytes, client: IPAddress, send: Send) -> None:
        """
        Answer C{packet} from C{client} with C{send(reply)}, now or when
        its changes have committed (or never, for a packet not answered).
        """
        if self.mode is Mode.STOPPED:
            return
        held = self._held.get((packet, client))
        if held is not None:
            # A retransmission: answered once, where the last copy came from.
            held.send = send
            return
        request = Request(packet, client, send)
        if self.mode is Mode.NORMAL or changesNothing(packet):
            self._process(request)
        elif len(self._queue) >= self._maxQueued:
            self._dropped(str(client), "behind a failed batch, too many waiting")
        else:
            self._queue.append(request)
            self._held[packet, client] = request

    def observe(self, event: TableEvent) -> None:
        """
        Take one change of the table into the open batch.
        """
        kind = event.kind
        mapping = event.mapping
        if kind is EventKind.CREATED:
            change = ForwardChange(ChangeKind.ADD, mapping)
        elif kind is EventKind.RENEWED:
            change = ForwardChange(ChangeKind.SET, mapping)
        elif kind in (EventKind.DELETED, EventKind.EXPIRED):
            change = ForwardChange(ChangeKind.REMOVE, mapping)
        else:
            return  # cleared on stop: the backend's stop removes everything
        self._open.changes.append(change)
        if kind is EventKind.EXPIRED:
            self._committed.pop(mapping.key, None)
        elif self._current is not None and kind in _REQUESTED:
            self._open.keys.add(mapping.key)
            self._touched = True
        self._scheduleFlush()

    def observeFilters(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        filters: tuple[RemoteFilter, ...],
    ) -> None:
        """
        Take a change of a mapping's filters (PCP's FILTER) into the open
        batch.
        """
        mapping = self._table.get(client, transport, internalPort)
        if mapping is None:
            return
        self._open.changes.append(ForwardChange(ChangeKind.FILTER, mapping, filters))
        if self._current is not None:
            self._open.keys.add(mapping.key)
            self._touched = True
        self._scheduleFlush()

    def check(self) -> None:
        """
        Have the backend look whether its forwarding state is still there,
        unless a batch is in flight (which would find out); if it has
        gone, start afresh (see the module docstring).
        """
        if self._inFlight is not None or self.mode is Mode.STOPPED:
            return
        checking = Batch()
        self._inFlight = checking

        def checked(result: object) -> None:
            self._inFlight = None
            self._next()

        def failed(failure: Failure) -> None:
            self._inFlight = None
            error = failure.value
            if self.mode is Mode.STOPPED:
                return
            if isinstance(error, CommitFailed) and error.lost:
                self._startAfresh(checking, error)
            else:
                log.warn(
                    "cannot tell whether the forwarding state is there: {error}",
                    error=str(error),
                )
                self._next()

        maybeDeferred(self._backend.check).addCallbacks(checked, failed)

    def refusal(self) -> Refused | None:
        """
        The refusal every change gets while a failed request is answered
        again, or L{None}.
        """
        return self._refusing

    def readmitting(self) -> bool:
        """
        Whether the request being answered was admitted (rate-limited)
        once already.
        """
        return self._current is not None and self._current.again

    def stop(self) -> None:
        """
        Answer nothing more; what is pending is dropped.
        """
        self.mode = Mode.STOPPED
        self._queue.clear()
        self._held.clear()
        self._open = Batch()

    # Internals

    def _process(self, request: Request) -> None:
        self._current, self._touched = request, False
        try:
            request.reply = self._respond(request.packet, request.client)
        except Exception:
            # A bug answering one request must not stop the others.
            log.failure("failed to answer {size}-byte packet", size=len(request.packet))
            request.reply = None
        finally:
            self._current = None
        if self._touched:
            self._open.requests.append(request)
            self._held[request.packet, request.client] = request
            self._scheduleFlush()
        else:
            self._send(request)

    def _send(self, request: Request) -> None:
        """
        Send C{request}'s reply, if it has one; it waits no more.
        """
        self._held.pop((request.packet, request.client), None)
        if request.reply is not None:
            request.send(request.reply)

    def _scheduleFlush(self) -> None:
        call = self._flushCall
        if (
            call is not None
            and self._open.requests
            and call.getTime() > self._clock.seconds()
        ):
            # A request does not wait for removals' retry.
            call.cancel()
            call = self._flushCall = None
        if self._inFlight is None and call is None and self._open.changes:
            self._flushCall = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        batch = self._open
        if self._inFlight is not None or not batch.changes or self.mode is Mode.STOPPED:
            return
        self._open = Batch()
        self._inFlight = batch
        for key in batch.keys:
            mapping = self._table.get(*key)
            batch.after[key] = (
                None if mapping is None else (mapping, self._table.ownerOf(mapping))
            )
        self.batches += 1
        # A backend that raises fails the batch, as one that fails it does.
        applied: Deferred[None] = maybeDeferred(self._backend.apply, batch.changes)
        applied.addCallbacks(
            lambda _: self._committedBatch(batch),
            lambda f: self._failedBatch(f, batch),
        )
        applied.addErrback(lambda f: log.failure("failed to finish a batch", f))

    def _committedBatch(self, batch: Batch) -> None:
        self._inFlight = None
        if self.mode is Mode.STOPPED:
            return
        for key, state in batch.after.items():
            if state is None:
                self._committed.pop(key, None)
            else:
                self._committed[key] = state
        for request in batch.requests:
            self._send(request)
        self._next()

    def _failedBatch(self, failure: Failure, batch: Batch) -> None:
        self._inFlight = None
        if self.mode is Mode.STOPPED:
            return
        error = failure.value
        if isinstance(error, CommitFailed) and error.lost:
            self._startAfresh(batch, error)
            return
        refusal = refusalFor(error)
        pending = self._open
        keys = batch.keys | pending.keys
        ended = undo(self._table, self._committed, keys, batch, error)
        self._restored()
        self._open = carried(batch, pending, keys, ended)
        logUndone(batch, pending, refusal)
        again = pending.requests
        if len(batch.requests) == 1:
            self._refuse(batch.requests[0], refusal)
        else:
            again = batch.requests + again
        if again:
            self.mode = Mode.ISOLATING
            isolate(self._queue, again)
        elif self._open.changes and not self._open.requests:
            # Only removals to send again: not at once, so that a backend
            # that keeps failing is not asked in a loop.
            self._flushCall = self._clock.callLater(RETRY_DELAY, self._flush)
            return
        self._next()

    def _startAfresh(self, batch: Batch, error: CommitFailed) -> None:
        """
        The backend's forwarding state has gone (a firewall reload): the
        table is emptied with a new epoch (the gateway says so, and
        announces it, as after a restart: clients map again), the backend
        started again, and the requests of the failed and the open batch
        run again on the empty table, each in a batch of its own.
        """
        again = batch.requests + self._open.requests
        self._open = Batch()
        self._committed = {}
        self._lost(error.detail)
        startAgain(self._backend)
        if again:
            self.mode = Mode.ISOLATING
            isolate(self._queue, again)
        self._next()

    def _refuse(self, request: Request, refusal: Refused) -> None:
        """
        Answer C{request} again, every change refused with C{refusal}.
        """
        self._refusing = refusal
        request.again = True
        try:
            self._process(request)
        finally:
            self._refusing = None

    def _next(self) -> None:
        """
        Send the open batch, or go on isolating.
        """
        while self.mode is Mode.ISOLATING and self._inFlight is None:
            if not self._queue:
                self.mode = Mode.NORMAL
                break
            request = self._queue.popleft()
            self._process(request)
            if self._open.requests:
                self._flush()
                return
        if self._open.changes and self._inFlight is None:
            self._flush()
