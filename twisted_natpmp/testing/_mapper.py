# -*- test-case-name: tests.service.test_mapper -*-
"""
L{FakePortMapper}: an L{IPortMapper} that speaks no protocol, for testing
code that only talks to the interface (the mapper service, its keepers, an
application's own use of a mapper).

Every call is recorded as a L{FakeRequest} holding the L{Deferred} the call
returned, so that the test decides each outcome: grant it, fail it with an
error named by meaning, or never answer.  Or let the fake answer at once
like a well-behaved gateway (C{autoAnswer=True}) and look only at what was
asked.  For example::

    mapper = FakePortMapper()
    d = mapper.addMapping(Transport.TCP, 8080)
    request = mapper.pending()[0]
    request.grant(externalPort=18080)
    mapping = successResultOf(d)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from .._epoch import EpochTracker
from .._types import (
    DELETION_TIMEOUTS,
    Announcement,
    IPAddress,
    Mapping,
    ProtocolName,
    Transport,
)
from ..interfaces import IExternalAddressQuery, IPortMapper, MappingKey, Probe

__all__ = ["FakePortMapper", "FakeRequest"]


@dataclass(eq=False)
class FakeRequest:
    """
    One call made of a L{FakePortMapper}.

    @ivar method: the method called: C{"probe"}, C{"addMapping"},
        C{"deleteMapping"}, C{"deleteMappings"} or C{"externalAddress"}.
    @ivar arguments: the call's arguments, by name (C{transport},
        C{internalPort}, C{externalPort}, C{lifetime}, C{timeouts},
        C{keys}, as the method takes them).
    @ivar deferred: the L{Deferred} the call returned.
    @ivar mapper: the mapper called.
    @ivar cancelled: whether the caller cancelled C{deferred}.
    """

    method: str
    arguments: dict[str, Any]
    deferred: Deferred[Any]
    mapper: FakePortMapper = field(repr=False)
    cancelled: bool = False

    @property
    def answered(self) -> bool:
        """
        Has the call's L{Deferred} fired (or been cancelled)?
        """
        return self.deferred.called

    def succeed(self, result: object = None) -> None:
        """
        Fire the call's L{Deferred} with C{result}.
        """
        self.deferred.callback(result)

    def fail(self, error: BaseException | Failure) -> None:
        """
        Fail the call's L{Deferred} with C{error}, for instance a
        L{twisted_natpmp.errors.NotAuthorizedError} or a
        L{twisted_natpmp.errors.NoResponseError}.
        """
        self.deferred.errback(error)

    def grant(
        self,
        externalPort: int | None = None,
        lifetime: int | None = None,
        *,
        epoch: int | None = None,
        externalAddress: IPAddress | None | bool = True,
        renewAfter: float | None = None,
    ) -> Mapping:
        """
        Answer an C{addMapping} call with a L{Mapping}, as a gateway would.

        @param externalPort: the port granted; by default the one suggested
            (the internal port if none was, or C{1024 + internalPort} if the
            caller let the gateway choose).
        @param lifetime: the lifetime granted; by default the one asked for.
        @param epoch: the epoch in the answer; by default the mapper's.
        @param externalAddress: the address in the answer; C{True} (the
            default) gives the mapper's C{mappingAddress} (L{None}, as
            NAT-PMP's map response carries none, unless set).
        @param renewAfter: the protocol's renewal point, if any.
        @return: the L{Mapping} the call's L{Deferred} fired with.
        """
        mapping = self.mapper.mappingFor(
            self,
            externalPort=externalPort,
            lifetime=lifetime,
            epoch=epoch,
            externalAddress=externalAddress,
            renewAfter=renewAfter,
        )
        self.succeed(mapping)
        return mapping


@implementer(IPortMapper, IExternalAddressQuery)
class FakePortMapper:
    """
    An L{IPortMapper} (and L{IExternalAddressQuery}) that records every call
    and lets the test answer it.

    @ivar gateway: the gateway it pretends to ask.
    @ivar protocolName: the protocol it pretends to speak.
    @ivar requests: every call made, in order, as L{FakeRequest}s.
    @ivar autoAnswer: answer every call at once, as a well-behaved gateway
        would: grant each mapping as asked (L{FakeRequest.grant}'s defaults),
        confirm each deletion, answer each probe.
    @ivar epoch: the epoch the fake's answers carry.
    @ivar address: the external address its probes and address queries
        tell.
    @ivar mappingAddress: the external address its granted mappings carry
        (L{None}, as in NAT-PMP, by default).
    @ivar source: what L{sourceAddress} returns.
    @ivar stopped: how many times L{stop} was called.
    @ivar stateLossObservers: the observers given to
        L{addStateLossObserver}.
    @ivar retryObservers: the observers given to L{addRetryObserver}.
    @ivar announcements: every announcement given to L{announced}.
    """

    def __init__(
        self,
        gateway: IPAddress | str = "10.0.0.1",
        protocolName: ProtocolName = ProtocolName.NATPMP,
        *,
        autoAnswer: bool = False,
        epoch: int = 1000,
        address: IPAddress | str | None = "192.0.2.1",
        mappingAddress: IPAddress | str | None = None,
        source: IPAddress | str | None = "10.0.0.2",
        now: Callable[[], float] | None = None,
    ) -> None:
        """
        @param now: the clock on which L{announced} judges epochs (RFC 6886
            s3.6); by default every announcement is judged as if it arrived
            at time 0.
        """
        self.gateway: IPAddress = ip_address(gateway)
        self.protocolName = protocolName
        self.autoAnswer = autoAnswer
        self.epoch = epoch
        self.address = None if address is None else ip_address(address)
        self.mappingAddress = (
            None if mappingAddress is None else ip_address(mappingAddress)
        )
        self.source = None if source is None else ip_address(source)
        self.requests: list[FakeRequest] = []
        self.stopped = 0
        self.stateLossObservers: list[Callable[[], object]] = []
        self.retryObservers: list[Callable[[str, int, float], object]] = []
        self.announcements: list[Announcement] = []
        self._now = now or (lambda: 0.0)
        self._epochs: dict[object, EpochTracker] = {}

    # What the test looks at and does

    def pending(self, method: str | None = None) -> list[FakeRequest]:
        """
        The calls not answered (nor cancelled) yet, oldest first; only those
        of C{method}, if given.
        """
        return [
            r
            for r in self.requests
            if not r.answered and (method is None or r.method == method)
        ]

    def calls(self, method: str) -> list[FakeRequest]:
        """
        Every call of C{method}, answered or not, oldest first.
        """
        return [r for r in self.requests if r.method == method]

    def loseState(self) -> None:
        """
        Behave as a gateway seen to have lost its mapping state (RFC 6886
        s3.6): call every state-loss observer.
        """
        for observer in list(self.stateLossObservers):
            observer()

    def retrying(self, what: str, attempt: int, wait: float) -> None:
        """
        Behave as a mapper about to resend: call every retry observer.
        """
        for observer in list(self.retryObservers):
            observer(what, attempt, wait)

    def mappingFor(
        self,
        request: FakeRequest,
        *,
        externalPort: int | None = None,
        lifetime: int | None = None,
        epoch: int | None = None,
        externalAddress: IPAddress | None | bool = True,
        renewAfter: float | None = None,
    ) -> Mapping:
        """
        The L{Mapping} a well-behaved gateway grants for C{request} (an
        C{addMapping} call), with any of its fields given instead.
        """
        arguments = request.arguments
        internalPort: int = arguments["internalPort"]
        if externalPort is None:
            suggested = arguments["externalPort"]
            if suggested is None:
                externalPort = internalPort
            elif suggested == 0:
                externalPort = 1024 + internalPort % 64000
            else:
                externalPort = suggested
        address = self.mappingAddress if externalAddress is True else externalAddress
        assert not isinstance(address, bool)
        return Mapping(
            transport=arguments["transport"],
            internalPort=internalPort,
            externalPort=externalPort,
            lifetime=arguments["lifetime"] if lifetime is None else lifetime,
            epoch=self.epoch if epoch is None else epoch,
            externalAddress=address,
            renewAfter=renewAfter,
            protocolName=self.protocolName,
        )

    def _call(self, method: str, **arguments: Any) -> FakeRequest:
        def cancel(d: Deferred[Any]) -> None:
            request.cancelled = True

        request = FakeRequest(method, arguments, Deferred(cancel), self)
        self.requests.append(request)
        return request

    # IPortMapper

    def probe(self, timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        request = self._call("probe", timeouts=timeouts)
        if self.autoAnswer:
            request.succeed(Probe(self.protocolName, self.epoch, self.address))
        return request.deferred

    def externalAddress(
        self, timeouts: Sequence[float] | None = None
    ) -> Deferred[IPAddress]:
        request = self._call("externalAddress", timeouts=timeouts)
        if self.autoAnswer:
            request.succeed(self.address)
        return request.deferred

    def addMapping(
        self,
        transport: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = 7200,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        request = self._call(
            "addMapping",
            transport=transport,
            internalPort=internalPort,
            externalPort=externalPort,
            lifetime=lifetime,
            timeouts=timeouts,
        )
        if self.autoAnswer:
            request.grant()
        return request.deferred

    def deleteMapping(
        self,
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        request = self._call(
            "deleteMapping",
            transport=transport,
            internalPort=internalPort,
            timeouts=timeouts,
        )
        if self.autoAnswer:
            request.succeed(None)
        return request.deferred

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        keys = list(keys)
        request = self._call("deleteMappings", keys=keys, timeouts=timeouts)
        if self.autoAnswer:
            request.succeed(dict.fromkeys(keys))
        return request.deferred

    def cancelPending(self) -> None:
        for request in self.pending():
            request.deferred.cancel()

    def announced(self, announcement: Announcement) -> bool:
        self.announcements.append(announcement)
        # Each protocol's epochs are judged apart (they are not comparable).
        tracker = self._epochs.setdefault(announcement.kind, EpochTracker())
        lost = tracker.update(announcement.epoch, self._now())
        if lost:
            self.loseState()
        return lost

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        self.stateLossObservers.append(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        self.stateLossObservers.remove(observer)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        self.retryObservers.append(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        self.retryObservers.remove(observer)

    def sourceAddress(self) -> IPv4Address | IPv6Address | None:
        return self.source

    def stop(self) -> Deferred[None]:
        self.stopped += 1
        self.cancelPending()
        return succeed(None)
