# -*- test-case-name: tests.service.test_service -*-
"""
L{Declared}: the mapper service's declarations, each with its
L{MappingKeeper}, and what observers and callers hear of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .._types import IPAddress, Mapping
from ..interfaces import IMappingObserver, MappingKey
from .declarations import MappingDeclaration, MappingState, behindSecondNAT
from .keeper import KeeperChange, MappingKeeper
from .policy import STOP_TIMEOUTS

__all__ = ["Declared", "tellObservers"]

log = Logger(namespace="twisted_natpmp.service")


def tellObservers(observers: Sequence[IMappingObserver], state: MappingState) -> None:
    """
    Call each observer's C{mappingChanged(state)}; one that fails is logged
    and does not keep the others from hearing.
    """
    for observer in list(observers):
        try:
            observer.mappingChanged(state)
        except Exception:
            log.failure("observer {observer} failed", observer=repr(observer))


class Declared:
    """
    The declarations, in the order declared, each kept by a
    L{MappingKeeper}; every change told to the observers as a
    L{MappingState}.

    @ivar observers: the L{IMappingObserver}s told of every change.
    """

    def __init__(
        self,
        clock: IReactorTime,
        where: Callable[[], tuple[IPAddress | None, IPAddress | None]],
        granted: Callable[[Mapping | None], object],
        *,
        backoff: Callable[[int], float],
        mapTimeouts: Sequence[float] | None = None,
        deleteTimeouts: Sequence[float] = STOP_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param where: returns the gateway in use and its external address,
            as the states tell them.
        @param granted: called with the mapping after each grant.
        """
        self._clock = clock
        self._where = where
        self._granted = granted
        self._backoff = backoff
        self._mapTimeouts = None if mapTimeouts is None else tuple(mapTimeouts)
        self._deleteTimeouts = tuple(deleteTimeouts)
        self._monotonic = monotonic
        self.keepers: dict[MappingKey, MappingKeeper] = {}
        self.observers: list[IMappingObserver] = []
        self._waiters: dict[MappingKey, list[Deferred[MappingState]]] = {}

    def __iter__(self) -> Iterator[MappingKeeper]:
        return iter(list(self.keepers.values()))

    def declare(self, declaration: MappingDeclaration) -> MappingKeeper:
        """
        Keep C{declaration}, not started yet.

        @raise ValueError: its transport and internal port are declared.
        """
        if declaration.key in self.keepers:
            raise ValueError(
                f"{declaration.protocol.label} port {declaration.internalPort}"
                " is already declared"
            )
        keeper = self.keepers[declaration.key] = MappingKeeper(
            declaration,
            self._clock,
            self._keeperChanged,
            backoff=self._backoff,
            mapTimeouts=self._mapTimeouts,
            deleteTimeouts=self._deleteTimeouts,
            monotonic=self._monotonic,
        )
        return keeper

    def nextState(self, key: MappingKey) -> Deferred[MappingState]:
        """
        The next state of the declaration of C{key}, when it changes.
        """
        waiters = self._waiters.setdefault(key, [])
        waiter: Deferred[MappingState] = Deferred(
            lambda d: waiters.remove(d) if d in waiters else None
        )
        waiters.append(waiter)
        return waiter

    def held(self) -> tuple[list[MappingDeclaration], set[MappingKey]]:
        """
        What may be mapped on the gateway now (granted, or asked for:
        perhaps granted), and the keys of those never seen granted.
        """
        held, unconfirmed = [], set()
        for keeper in self:
            mayBe, never = keeper.mayBeHeld()
            if mayBe:
                held.append(keeper.declaration)
            if never:
                unconfirmed.add(keeper.declaration.key)
        return held, unconfirmed

    def failAll(self, error: BaseException) -> None:
        """
        Every declaration fails with C{error} (no gateway, or none to use).
        """
        for keeper in self:
            keeper.error = error
            self.changed(keeper)

    def state(self, keeper: MappingKeeper, removed: bool = False) -> MappingState:
        """
        What observers are told of C{keeper}'s declaration.
        """
        gateway, address = self._where()
        mapping = keeper.mapping
        if address is None and mapping is not None:
            address = mapping.externalAddress
        return MappingState(
            declaration=keeper.declaration,
            gateway=gateway,
            externalAddress=address,
            externalPort=None if mapping is None else mapping.externalPort,
            # RFC 6886 s3.3: a longer grant than asked is not trusted.
            lifetime=keeper.lifetime,
            expires=keeper.expires,
            error=keeper.error,
            doubleNAT=behindSecondNAT(address),
            removed=removed,
            protocolName=None if mapping is None else mapping.protocolName,
        )

    def changed(self, keeper: MappingKeeper, removed: bool = False) -> None:
        """
        Tell whoever waits for C{keeper}'s next state, and every observer.
        """
        state = self.state(keeper, removed)
        for waiter in self._waiters.pop(keeper.declaration.key, []):
            waiter.callback(state)
        tellObservers(self.observers, state)

    def _keeperChanged(self, keeper: MappingKeeper, change: KeeperChange) -> None:
        if change is KeeperChange.GRANTED:
            self._granted(keeper.mapping)
        self.changed(keeper)
