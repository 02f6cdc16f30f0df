# -*- test-case-name: tests.service.test_stop -*-
"""
Deleting every mapping at once, as when the service stops or leaves a
gateway (RFC 6886 s3.4), quickly: every deletion is sent together and
resent until answered (s3.1 lets a client give up on a deletion sooner),
cut short by a deadline; then what could not be deleted is named.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..interfaces import IPortMapper, MappingKey
from .declarations import MappingDeclaration
from .policy import STOP_DEADLINE, STOP_TIMEOUTS

__all__ = ["deleteAll"]

log = Logger()

_LEFT = (
    "{why}: left {count} mapping(s) at gateway {gateway}, which expire by"
    " themselves: {what}"
)
_MAYBE_LEFT = (
    "{why}: may have left {count} mapping(s) at gateway {gateway}, asked for"
    " but never seen granted (they expire by themselves if made): {what}"
)


def deleteAll(
    clock: IReactorTime,
    mapper: IPortMapper,
    declarations: Sequence[MappingDeclaration],
    why: str,
    unconfirmed: Collection[MappingKey] = frozenset(),
    *,
    timeouts: Sequence[float] = STOP_TIMEOUTS,
    deadline: float = STOP_DEADLINE,
) -> Deferred[None]:
    """
    Delete C{declarations} from the gateway of C{mapper}: every deletion
    sent at once and resent until answered (RFC 6886 s3.1), all given up
    at C{deadline}; then log what was deleted and name, with the reason,
    each mapping left behind.

    @param why: what is being done, for the log (C{"stopping"}).
    @param unconfirmed: the keys of declarations asked for but never seen
        granted: where their deletion fails, they I{may} be left (the
        request may have reached the gateway), and the log says so.
    @param timeouts: the retransmission schedule of the deletions.
    @param deadline: the seconds after which every deletion still
        unanswered is given up.
    @return: fires (with L{None}) once every deletion is answered or given
        up.
    """
    if not declarations:
        return succeed(None)
    byKey = {declaration.key: declaration for declaration in declarations}
    gateway = str(mapper.gateway)
    d = mapper.deleteMappings(list(byKey), timeouts)
    timer = clock.callLater(deadline, d.cancel)

    def whyLeft(failure: Failure) -> str:
        if failure.check(CancelledError):
            return f"not answered within the {deadline:g} s stop deadline"
        return failure.getErrorMessage() or type(failure.value).__name__

    def report(outcomes: dict[MappingKey, Failure | None] | Failure) -> None:
        if timer.active():
            timer.cancel()
        if isinstance(outcomes, Failure):
            # The deletions could not even be asked for (a bad key): every
            # mapping is left, for that reason.
            outcomes = {key: outcomes for key in byKey}
        deleted = [str(byKey[k]) for k, f in outcomes.items() if f is None]
        failed = {k: f for k, f in outcomes.items() if f is not None}
        if deleted:
            log.info(
                "{why}: deleted {count} mapping(s) at gateway {gateway}: {what}",
                why=why,
                count=len(deleted),
                gateway=gateway,
                what=", ".join(deleted),
            )
        for perhaps, format in ((False, _LEFT), (True, _MAYBE_LEFT)):
            left = {k: f for k, f in failed.items() if (k in unconfirmed) is perhaps}
            if left:
                log.warn(
                    format,
                    why=why,
                    count=len(left),
                    gateway=gateway,
                    what="; ".join(
                        f"{byKey[k]} ({whyLeft(f)})" for k, f in left.items()
                    ),
                )

    return d.addBoth(report)
