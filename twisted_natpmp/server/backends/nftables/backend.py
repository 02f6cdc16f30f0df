# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
L{NftablesBackend}: the gateway's forwards as elements of one nftables map,
changed in atomic batches by C{nft -f -}, the flows through removed
mappings ended by C{conntrack}.  See the package docstring for the design.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ....errors import GatewayError, NetworkFailureError, OutOfResourcesError
from ..._entries import GatewayMapping
from .._batching import ChangeKind, CommitFailed, ForwardChange, IBatchingBackend
from ._conntrack import CONNTRACK_ARGUMENTS, flushLines
from ._process import IProcessRunner, ProcessFailed
from ._ruleset import Ruleset, ruleHandles

__all__ = ["NFT_ARGUMENTS", "BackendState", "NftablesBackend", "errorFor"]

log = Logger()

#: The C{nft} arguments that read a batch from standard input.
NFT_ARGUMENTS = ("-f", "-")

# What nft says when the kernel has no room (ENOMEM, ENOSPC, E2BIG, a
# set's "size" reached): out of resources; anything else is a network
# failure.
_NO_ROOM = (
    "Cannot allocate memory",
    "No space left on device",
    "Argument list too long",
)


class BackendState(Enum):
    """
    Where an L{NftablesBackend} is in its life.
    """

    STOPPED = "stopped"
    #: Its table is being made; batches wait behind.
    STARTING = "starting"
    RUNNING = "running"
    #: Its table could not be made: every batch fails.
    FAILED = "failed"


def errorFor(failure: BaseException) -> CommitFailed:
    """
    What a failed run means for the requests whose changes it held.
    """
    if isinstance(failure, ProcessFailed) and any(
        text in failure.stderr for text in _NO_ROOM
    ):
        error: GatewayError = OutOfResourcesError()
    else:
        error = NetworkFailureError()
    return CommitFailed(error, str(failure))


@implementer(IBatchingBackend)
class NftablesBackend:
    """
    Forwards in an nftables map of our own table.

    @ivar ruleset: the batches' builder: our table's name, the external
        interface, the host's forward chain.
    @ivar state: where it is in its life.
    """

    def __init__(
        self,
        ruleset: Ruleset,
        nft: IProcessRunner,
        conntrack: IProcessRunner | None,
    ) -> None:
        """
        @param nft: runs C{nft} in the gateway's network namespace.
        @param conntrack: runs C{conntrack} there; L{None} leaves
            established flows alone.
        """
        self.ruleset = ruleset
        self._nft = nft
        self._conntrack = conntrack
        self.state = BackendState.STOPPED

    def start(self) -> Deferred[None]:
        self.state = BackendState.STARTING
        if self.ruleset.forwardChain is None:
            started = self._run(self.ruleset.create())
        else:
            started = self._ownRules().addCallback(
                lambda handles: self._run(self.ruleset.create(handles))
            )
        return started.addCallbacks(self._started, self._startFailed)

    def _started(self, result: object) -> None:
        self.state = BackendState.RUNNING
        log.info(
            "nftables table inet {table} made afresh, forwarding from {interface}"
            "{chain}",
            table=self.ruleset.table,
            interface=self.ruleset.interface,
            chain=""
            if self.ruleset.forwardChain is None
            else f", accepted in {self.ruleset.forwardChain}",
        )

    def _startFailed(self, failure: Failure) -> Failure:
        self.state = BackendState.FAILED
        return failure

    def _ownRules(self) -> Deferred[list[int]]:
        """
        The handles of our rules in the host's forward chain.
        """
        listing = self._nft.run(self.ruleset.listForwardChain(), b"")
        return listing.addCallback(ruleHandles, self.ruleset.comment)

    def _run(self, batch: str) -> Deferred[None]:
        ran = self._nft.run(NFT_ARGUMENTS, batch.encode("ascii"))
        return ran.addCallback(lambda _: None)

    def apply(self, changes: Sequence[ForwardChange]) -> Deferred[None]:
        batch = self.ruleset.changes(changes)

        def committed(result: object) -> None:
            self._endFlows([c.mapping for c in changes if c.kind is ChangeKind.REMOVE])

        def failed(failure: Failure) -> Failure:
            return Failure(errorFor(failure.value or Exception(repr(failure))))

        return self._run(batch).addCallbacks(committed, failed)

    def _endFlows(self, mappings: Sequence[GatewayMapping]) -> Deferred[None]:
        """
        End the flows through C{mappings} (in the background of a batch:
        its requests are answered once the forwards are gone, not the
        flows).

        @return: fires when done; never fails (a failure is logged).
        """
        if not mappings or self._conntrack is None:
            return succeed(None)
        flushed = self._conntrack.run(CONNTRACK_ARGUMENTS, flushLines(mappings))
        return flushed.addCallbacks(
            lambda _: None,
            lambda f: log.warn(
                "cannot end the flows through {count} removed mapping(s): {error}",
                count=len(mappings),
                error=str(f.value),
            ),
        )

    def stop(self, held: Sequence[GatewayMapping]) -> Deferred[None]:
        self.state = BackendState.STOPPED
        if self.ruleset.forwardChain is None:
            handles: Deferred[list[int] | None] = succeed([])
        else:
            handles = self._ownRules().addErrback(self._noHostChain)
        stopped = handles.addCallback(lambda h: self._run(self.ruleset.destroy(h)))

        def removed(result: object) -> Deferred[None]:
            log.info("nftables table inet {table} removed", table=self.ruleset.table)
            return self._endFlows(held)

        def notRemoved(failure: Failure) -> None:
            log.error(
                "cannot remove nftables table inet {table}: {error}",
                table=self.ruleset.table,
                error=str(failure.value),
            )

        return stopped.addCallbacks(removed, notRemoved)

    def _noHostChain(self, failure: Failure) -> None:
        log.warn(
            "cannot list the host's forward chain {chain} (our rule there is"
            " left alone): {error}",
            chain=str(self.ruleset.forwardChain),
            error=str(failure.value),
        )
