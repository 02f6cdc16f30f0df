# -*- test-case-name: tests.server.test_committer -*-
"""
L{Batched}: what a L{Gateway <twisted_natpmp.server.gateway.Gateway>} does
differently over a batching backend
(L{twisted_natpmp.server.backends._batching.IBatchingBackend}): its table
calls a L{TableBackend <twisted_natpmp.server._tablebackend.TableBackend>}
and sends its events to a L{Committer}, which answers each request once its
changes have committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .._types import IPAddress
from ..interfaces import IMappingBackend
from ._committer import Committer
from ._entries import GatewayMapping, TableEvent
from ._eventlog import logEvent
from ._pending import Respond, Send
from ._shared import SharedTable
from ._tablebackend import tableBackendFor
from .backends._batching import IBatchingBackend

__all__ = ["Batched"]

log = Logger()


class Batched:
    """
    A gateway's part over a batching backend: made before its table (which
    takes L{tableBackend} and L{observe}), then L{start}ed with it.

    @ivar committer: the L{Committer}, once started.
    """

    def __init__(self, backend: IBatchingBackend) -> None:
        self._backend = backend
        self.committer: Committer | None = None
        self.tableBackend: IMappingBackend = tableBackendFor(
            backend, lambda: self.committer
        )

    def start(
        self,
        clock: IReactorTime,
        table: SharedTable,
        respond: Respond,
        restored: Callable[[], object],
        dropped: Callable[[str, str], object],
        lost: Callable[[], object],
    ) -> None:
        """
        Make the L{Committer} (see its parameters).

        @param lost: called once the table was emptied with a new epoch
            because the backend lost its state (the service announces it).
        """
        self._table = table
        self._restored = restored
        self._lost = lost
        self.committer = Committer(
            clock, self._backend, table, respond, restored, dropped, lost=self._reset
        )

    def observe(self, event: TableEvent) -> None:
        """
        Log one change of the table and take it into the open batch.
        """
        logEvent(event)
        assert self.committer is not None
        self.committer.observe(event)

    def answer(self, packet: bytes, client: IPAddress, send: Send) -> None:
        """
        See L{Committer.answer}.
        """
        assert self.committer is not None
        self.committer.answer(packet, client, send)

    def checkRefusing(self) -> None:
        """
        Refuse every change while a request whose batch failed is answered
        again.

        @raise twisted_natpmp.server._entries.Refused: it is.
        """
        if self.committer is not None:
            refusal = self.committer.refusal()
            if refusal is not None:
                raise refusal

    def readmitting(self) -> bool:
        """
        Whether the request being answered was admitted once already (its
        rate limit charged).
        """
        return self.committer is not None and self.committer.readmitting()

    def check(self) -> None:
        """
        See L{Committer.check}.
        """
        if self.committer is not None:
            self.committer.check()

    def stop(self, removed: Sequence[GatewayMapping]) -> Deferred[None]:
        """
        Answer nothing more, and have the backend remove everything.
        """
        if self.committer is not None:
            self.committer.stop()
        return self._backend.stop(removed)

    def _reset(self, why: str) -> None:
        """
        The backend's forwarding state was found gone: forget every mapping
        with a new epoch, and have it announced.
        """
        removed = self._table.reset()
        self._restored()
        log.warn(
            "the backend lost every forward ({why}): made afresh, {count}"
            " mapping(s) forgotten, a new epoch announced",
            why=why,
            count=len(removed),
        )
        self._lost()
