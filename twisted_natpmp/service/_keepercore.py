# -*- test-case-name: tests.service.test_keeperpcp,tests.service.test_keeper -*-
"""
The core of L{MappingKeeper <twisted_natpmp.service.keeper.MappingKeeper>}'s
state machine (L{twisted_natpmp.service._keepermachine}): what it keeps
between states, each state's data, and how long it waits after a failure.

The waits are the protocol's, looked up by the protocol's name in
L{twisted_natpmp.service.policy}, so that the keeper stays
protocol-neutral: a gateway's error that says how long it holds (PCP's
error lifetime, RFC 6887 s7.4) is waited out; a failed renewal of a mapping
still held is tried again at the protocol's retry point (RFC 6887
s11.2.1), never sooner than L{RENEWAL_SPACING} after the failure; anything
else waits for the backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from .._types import Mapping, ProtocolName
from ..errors import GatewayError
from ..interfaces import IPortMapper
from ._keeping import KeeperChange, KeeperContext, Why
from .declarations import MappingDeclaration
from .policy import RENEWAL_SPACING, errorWait, mapTimeoutsFor, renewalRetryPoint

__all__ = ["Deletion", "Grant", "KeeperCore", "Request", "RetryWait", "Timer"]


@dataclass
class Grant:
    """
    The mapping held, and when it runs out.

    @ivar lifetime: the effective lifetime: granted, or asked for if less.
    @ivar expires: when it runs out, on the keeper's clock.
    @ivar run: when the gateway's run that granted it began (monotonic
        seconds), and C{epoch} the epoch of the grant.
    """

    mapping: Mapping
    lifetime: int
    expires: float
    run: float
    expiry: IDelayedCall | None = None

    @property
    def granted(self) -> float:
        """
        When it was granted, on the keeper's clock.
        """
        return self.expires - self.lifetime

    def cancel(self) -> None:
        expiry, self.expiry = self.expiry, None
        if expiry is not None and expiry.active():
            expiry.cancel()


@dataclass(frozen=True)
class RetryWait:
    """
    How long a keeper waits after a failure, and why.

    @ivar delay: seconds.
    @ivar reason: C{"backoff"}, C{"error lifetime"} or C{"renewal point"},
        for the log line.
    """

    delay: float
    reason: str


@dataclass
class KeeperCore:
    declaration: MappingDeclaration
    clock: IReactorTime
    report: Callable[[KeeperChange], object]
    backoff: Callable[[int], float]
    #: The schedule of each mapping attempt; L{None}: the protocol's
    #: (L{mapTimeoutsFor}).
    mapTimeouts: Sequence[float] | None
    deleteTimeouts: Sequence[float]
    monotonic: Callable[[], float]
    context: KeeperContext
    mapper: IPortMapper | None = None
    grant: Grant | None = None
    heldPort: int | None = None
    error: BaseException | None = None
    failures: int = 0
    #: The source of the random renewal retry points.
    random: Callable[[], float] = random.random
    #: The failure last told of (its error's type and result code), until
    #: a grant: the same failure again is no news (L{toldAgain}).
    toldFailure: tuple[type, int | None] | None = None
    #: Fired once the outcome of the request in flight (or of none) is
    #: handled.
    settling: list[Deferred[None]] = field(default_factory=list)
    #: Fired with the outcome of the deletion.
    removing: list[Deferred[None]] = field(default_factory=list)

    def settle(self) -> None:
        waiting, self.settling = self.settling, []
        for d in waiting:
            d.callback(None)

    def finishRemoving(self, result: Failure | None) -> None:
        waiting, self.removing = self.removing, []
        for d in waiting:
            d.callback(result)

    @property
    def protocolName(self) -> ProtocolName:
        """
        The protocol the mapper speaks now (NAT-PMP before one is known).
        """
        if self.mapper is None:
            return ProtocolName.NATPMP
        return ProtocolName(self.mapper.protocolName)

    def timeouts(self) -> Sequence[float] | None:
        """
        The retransmission schedule of the next mapping attempt: the one
        given, else the protocol's.
        """
        if self.mapTimeouts is not None:
            return self.mapTimeouts
        return mapTimeoutsFor(self.protocolName)

    def toldAgain(self, error: BaseException | None) -> bool:
        """
        Note C{error} as the failure last told of.

        @return: whether it is the same failure as the last one told of
            since the last grant (the same type of error, with the same
            result code), so that a gateway that keeps refusing is warned
            about once, not at every retry.
        """
        told = (type(error), getattr(error, "resultCode", None))
        again = self.toldFailure == told
        self.toldFailure = told
        return again

    def retryWait(self, failure: Failure) -> RetryWait:
        """
        How long to wait after the request in flight failed with
        C{failure}, the failures so far (L{failures}) not counting it.
        """
        error = failure.value
        wait = errorWait(error)
        if wait is not None:
            assert isinstance(error, GatewayError)
            return RetryWait(wait, "error lifetime")
        grant = self.grant
        if grant is not None:
            point = renewalRetryPoint(
                grant.mapping.protocolName,
                grant.lifetime,
                self.failures + 1,
                self.random,
            )
            if point is not None:
                delay = grant.granted + point - self.clock.seconds()
                return RetryWait(max(delay, RENEWAL_SPACING), "renewal point")
        return RetryWait(self.backoff(self.failures), "backoff")


@dataclass
class Request:
    """
    A request in flight (requesting, renewing).
    """

    deferred: Deferred[None]
    why: Why
    suggested: int | None


@dataclass
class Timer:
    """
    A renewal (mapped) or retry (backingOff).
    """

    call: IDelayedCall

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


@dataclass
class Deletion:
    deferred: Deferred[None] | None = None
