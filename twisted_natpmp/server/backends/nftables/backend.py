# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
L{NftablesBackend}: the gateway's forwards as elements of one nftables map,
changed in atomic batches by C{nft -f -}, the flows through removed
mappings ended by C{conntrack}.  See the package docstring for the design.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from ....errors import GatewayError, NetworkFailureError, OutOfResourcesError
from ..._entries import GatewayMapping
from .._batching import (
    ChangeKind,
    CommitFailed,
    ForwardChange,
    IBatchingFilteringBackend,
    IBatchingPinholeBackend,
)
from .._filters import RemoteFilter
from ._conntrack import Flow
from ._flowcut import FlowCutter, Forward, forwardOf
from ._process import IProcessRunner, ProcessFailed
from ._ruleset import Port, Ruleset, ruleHandles
from ._stale import cutStale, listStale

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

    #: Not started, or stopped: every batch fails.
    STOPPED = "stopped"
    #: Its table is being made; batches wait behind.
    STARTING = "starting"
    RUNNING = "running"
    #: Its table could not be made: every batch fails.
    FAILED = "failed"


# What nft says when a table, set or chain a batch names does not exist.
_GONE = "No such file or directory"


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


@implementer(IBatchingFilteringBackend)
class NftablesBackend:
    """
    Forwards in an nftables map of our own table, limited to some remote
    peers when PCP's FILTER asks (L{IBatchingFilteringBackend}); with a
    host forward chain of an C{inet} table, IPv6 pinholes too
    (L{IBatchingPinholeBackend}), in our set there.

    @ivar ruleset: the batches' builder: our table's name, the external
        interface, the host's forward chain.
    @ivar state: where it is in its life.
    """

    def __init__(
        self,
        ruleset: Ruleset,
        nft: IProcessRunner,
        conntrack: IProcessRunner | None,
        *,
        internalNetworks: Iterable[IPv4Network | IPv6Network] = (),
        portRange: tuple[int, int] | None = None,
        externalAddresses: Callable[[], Collection[IPv4Address]] = frozenset,
    ) -> None:
        """
        @param nft: runs C{nft} in the gateway's network namespace.
        @param conntrack: runs C{conntrack} there; L{None} leaves
            established flows alone.
        @param internalNetworks: the gateway's internal networks, whose
            hosts' own flows to a pinhole's host are not cut with it.
        @param portRange: the external ports the gateway grants, lowest and
            highest: at each start, once the table is made afresh, the
            flows a DNAT made to C{externalAddresses} on these ports (those
            an earlier run of the gateway, killed, may have left) are cut.
            L{None}: none are.
        @param externalAddresses: gives, at each start, the addresses whose
            DNATed flows in C{portRange} are cut; none: nothing is cut, and
            a log line says so.
        """
        self.ruleset = ruleset
        if ruleset.pinholes:
            alsoProvides(self, IBatchingPinholeBackend)
        # The filters of each forward, as committed.
        self._filtered: dict[Port, tuple[RemoteFilter, ...]] = {}
        self._nft = nft
        self._conntrack = conntrack
        self.state = BackendState.STOPPED
        self._flowCutter = FlowCutter(
            conntrack, internalNetworks, lambda: self._forwarded
        )
        self._portRange = portRange
        self._externalAddresses = externalAddresses
        # The forwards and pinholes, as committed.
        self._forwarded: set[Forward] = set()
        # The batches applied while starting, waiting for the table.
        self._waiting: list[Deferred[None]] = []

    def start(self) -> Deferred[None]:
        self.state = BackendState.STARTING
        self._filtered = {}
        self._forwarded = set()
        if self.ruleset.forwardChain is None:
            started = self._run(self.ruleset.create())
        else:
            started = self._ownRules().addCallback(
                lambda handles: self._run(self.ruleset.create(handles))
            )
        return started.addCallbacks(self._made, self._startFailed)

    def _made(self, result: object) -> Deferred[None]:
        """
        The table is made afresh: list the flows an earlier run may have
        left, then let the batches go on, and cut those flows.

        The listing is taken before any batch is sent, so it holds no flow
        through a mapping of this run (and the table made afresh forwards
        nothing: no flow can start through an old mapping after it).  Each
        flow listed is deleted by its exact tuple while the batches go on:
        as long as it exists, no other flow has that tuple, so no flow of
        this run is cut (but one that the same remote address and port
        opened again through a new mapping in the few milliseconds after the
        old one ended by itself).
        """
        conntrack, ports = self._conntrack, self._portRange
        if conntrack is None or ports is None:
            listed: Deferred[list[Flow] | None] = succeed(None)
        else:
            listed = listStale(conntrack, ports, self._externalAddresses())

        def release(flows: list[Flow] | None) -> None:
            self._started()
            if flows is not None:
                assert conntrack is not None and ports is not None
                cutStale(conntrack, ports, flows)

        return listed.addCallback(release)

    def _started(self) -> None:
        if self.state is BackendState.STARTING:
            # Not if stopped meanwhile.
            self.state = BackendState.RUNNING
        self._release()
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
        self._release()
        return failure

    def _release(self) -> None:
        """
        Let the batches that waited for the start go on (or fail).
        """
        waiting, self._waiting = self._waiting, []
        for ready in waiting:
            ready.callback(None)

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
        if self.state is BackendState.STARTING:
            # Behind the table's making (with a host forward chain, two nft
            # runs: a batch must not slip in between).
            ready: Deferred[None] = Deferred()
            self._waiting.append(ready)
            return ready.addCallback(lambda _: self._apply(changes))
        return self._apply(changes)

    def _apply(self, changes: Sequence[ForwardChange]) -> Deferred[None]:
        if self.state is not BackendState.RUNNING:
            return fail(
                CommitFailed(
                    NetworkFailureError(),
                    f"nftables table inet {self.ruleset.table} is {self.state.value}",
                )
            )
        # One batch is in flight at a time (the Committer sees to it), so
        # the filters committed are those this batch starts from.
        batch, filtered = self.ruleset.batch(changes, self._filtered)

        def committed(result: object) -> None:
            self._filtered = filtered
            for change in changes:
                m = change.mapping
                if change.kind is ChangeKind.REMOVE:
                    self._forwarded.discard(forwardOf(m))
                elif change.kind is not ChangeKind.FILTER:
                    self._forwarded.add(forwardOf(m))
            # Answered now: the flows are cut after (a conntrack run of
            # their own, which no batch waits for).
            self._flowCutter.end(
                [c.mapping for c in changes if c.kind is ChangeKind.REMOVE]
            )

        def failed(failure: Failure) -> Failure | Deferred[None]:
            error = failure.value or Exception(repr(failure))
            if isinstance(error, ProcessFailed) and error.timedOut:
                # nft may have committed before it was killed.
                return self._clearAfterTimeout(changes, errorFor(error))
            if isinstance(error, ProcessFailed) and _GONE in error.stderr:
                # Our table, or the host's, may have gone: a firewall reload.
                return self._checkTable(errorFor(error))
            return Failure(errorFor(error))

        return self._run(batch).addCallbacks(committed, failed)

    def _clearAfterTimeout(
        self, changes: Sequence[ForwardChange], error: CommitFailed
    ) -> Deferred[None]:
        """
        After a batch that timed out, remove the forwards of every mapping
        it changed (removing is safe to repeat, whether it committed or
        not), then fail with C{error}, C{cleared} set; if that fails too,
        the state is lost (L{CommitFailed} with C{lost}).
        """
        mappings = {forwardOf(c.mapping): c.mapping for c in changes}
        removals = [ForwardChange(ChangeKind.REMOVE, m) for m in mappings.values()]
        batch, filtered = self.ruleset.batch(removals, self._filtered)

        def removed(result: object) -> Failure:
            self._filtered = filtered
            self._forwarded.difference_update(mappings)
            self._flowCutter.end(list(mappings.values()))
            detail = f"{error.detail}; its {len(mappings)} forward(s) removed"
            return Failure(CommitFailed(error.error, detail, cleared=True))

        def notRemoved(failure: Failure) -> Failure:
            self.state = BackendState.STOPPED
            detail = f"{error.detail}; then cannot clean up: {failure.value}"
            return Failure(CommitFailed(NetworkFailureError(), detail, lost=True))

        return self._run(batch).addCallbacks(removed, notRemoved)

    def check(self) -> Deferred[None]:
        if self.state is not BackendState.RUNNING:
            return succeed(None)
        return self._checkTable(None)

    def _checkTable(self, error: CommitFailed | None) -> Deferred[None]:
        """
        Fail with C{error} (or fire, if L{None}), or, when our table is not
        there any more, fail with a L{CommitFailed} that says the
        forwarding state was lost.
        """
        table = self.ruleset.table
        listed = self._nft.run(("list", "table", "inet", table), b"")

        def there(output: bytes) -> Failure | None:
            return None if error is None else Failure(error)

        def gone(failure: Failure) -> Failure:
            if not (
                isinstance(failure.value, ProcessFailed)
                and _GONE in failure.value.stderr
            ):
                return failure if error is None else Failure(error)
            self.state = BackendState.STOPPED
            return Failure(
                CommitFailed(
                    NetworkFailureError(),
                    f"nftables table inet {table} is gone (a firewall reload?)",
                    lost=True,
                )
            )

        return listed.addCallbacks(there, gone)

    def stop(self, held: Sequence[GatewayMapping]) -> Deferred[None]:
        self.state = BackendState.STOPPED
        self._forwarded = set()
        if self.ruleset.forwardChain is None:
            handles: Deferred[list[int] | None] = succeed([])
        else:
            handles = self._ownRules().addErrback(self._noHostChain)
        stopped = handles.addCallback(lambda h: self._run(self.ruleset.destroy(h)))

        def removed(result: object) -> Deferred[None]:
            log.info("nftables table inet {table} removed", table=self.ruleset.table)
            return self._flowCutter.end(held)

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
