"""
L{PortMapperService}: an L{IService <twisted.application.service.IService>}
that keeps a declared set of ports mapped on the NAT-PMP gateway for as long
as it runs.

It talks to an L{IPortMapper} (the L{NATPMPClient} by default), never to
packets.  What it does, and where RFC 6886 asks for it:

  - maps every declaration when it starts, and renews each at half the
    lifetime the gateway granted, or half the lifetime asked for if the
    gateway granted more (s3.3: it SHOULD NOT), suggesting the external
    port it holds; a gateway's short grant never makes it renew more often
    than every L{MIN_RENEWAL_INTERVAL} seconds;
  - gives each mapping attempt a short s3.1 schedule (L{MAP_TIMEOUTS}:
    sends at 0, 0.25, 0.75 and 1.75 s, given up at 3.75 s), one request at
    a time, and retries a failed one after a capped exponential backoff
    behind the others, for as long as it runs: a declaration is never
    forgotten, and one unlucky request does not hold up the rest;
  - re-maps everything, after a random 0-5 s hold-off and one request at a
    time, each suggesting the external port held before (s3.7), when the
    gateway is seen to have lost its state (s3.6), or when it announces
    itself on 224.0.0.1:5350 (s3.2.1, or a PCP ANNOUNCE, RFC 6887 s14.1,
    which is what miniupnpd sends when it starts).  Every announcement
    leads to the mappings being confirmed so, unless its epoch proves that
    the gateway has not restarted since they were granted (two restarts
    close together look alike to the s3.6 rule), at most once every
    L{CONFIRM_SPACING} seconds; a mapping waiting to be retried is retried
    early once per burst of announcements, not per copy, and at once,
    without the hold-off, if this gateway never granted it (a first
    request, not a renewal: s3.1 has an announcement discard the verdict
    that the gateway does not speak NAT-PMP);
  - asks for the external address every C{healthInterval} seconds, so a
    gateway reboot is noticed even when no announcement arrives (s3.6);
  - says within L{SILENCE_WARNING} seconds that the gateway does not
    answer, reminds every L{SILENCE_REMINDER} seconds, and retries every
    failing mapping as soon as it answers again;
  - follows the default gateway when it changes, deleting its mappings at
    the old one;
  - reports a private external address (RFC 1918 or 100.64/10): the host is
    behind a second NAT;
  - deletes every mapping when it stops (s3.4), quickly: every deletion is
    sent at once and resent until answered on the s3.1 doubling schedule,
    cut short by the stop deadline (s3.1 lets a client give up on a
    deletion sooner), and what could not be deleted is named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from ipaddress import IPv4Address
from typing import Any, TypeVar, cast

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorMulticast,
    IReactorTime,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._epoch import EpochTracker
from .._types import Mapping
from .._wire import RECOMMENDED_LIFETIME, Protocol
from ..announce import (
    Announcement,
    AnnouncementKind,
    AnnouncementProtocol,
    listenAnnouncements,
)
from ..discovery import defaultGateway, isPrivateAddress, localAddress
from ..errors import NoGatewayError, NoResponseError, NotSupportedError
from ..interfaces import IMappingObserver, IPortMapper

__all__ = [
    "MAP_TIMEOUTS",
    "MappingDeclaration",
    "MappingState",
    "PortMapperService",
    "PublicAddressError",
    "isPrivateAddress",
]

log = Logger()

_T = TypeVar("_T")

from .policy import (
    ADDRESS_TIMEOUTS,
    CONFIRM_SPACING,
    COPY_SLACK,
    GATEWAY_CHECK_INTERVAL,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUTS,
    MAP_TIMEOUTS,
    MIN_RENEWAL_INTERVAL,
    SILENCE_REMINDER,
    SILENCE_WARNING,
    STOP_DEADLINE,
    STOP_TIMEOUTS,
    defaultBackoff,
)
from .policy import randomHoldOff as _randomHoldOff


def _renewalFloor(declaration: MappingDeclaration) -> float:
    """
    The shortest wait before renewing C{declaration}'s mapping, however
    short the gateway's grant: L{MIN_RENEWAL_INTERVAL}, or half the
    lifetime asked for if that is shorter.
    """
    return min(MIN_RENEWAL_INTERVAL, declaration.lifetime / 2)


def _sourceAddress(client: IPortMapper) -> IPv4Address | None:
    """
    The local address of C{client}'s socket, connected to the gateway (the
    kernel's choice, in whatever network namespace the socket is), if the
    client has one.
    """
    transport = getattr(getattr(client, "protocol", None), "transport", None)
    try:
        address = IPv4Address(transport.getHost().host)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return None
    return None if address.is_unspecified else address


def _unanswered(failure: Failure) -> bool:
    """
    Did a request fail for want of an answer from the gateway (rather than
    with the gateway's answer)?
    """
    return bool(failure.check(NoResponseError, NotSupportedError, OSError))


from .declarations import MappingDeclaration, MappingState, PublicAddressError


class _Phase(Enum):
    """
    Where one declaration's keeping stands; each phase owns what it names.
    """

    #: Nothing scheduled: the service is not running or has no gateway.
    IDLE = "idle"
    #: A request is in flight (C{_Entry.request}).
    REQUESTING = "requesting"
    #: The mapping is held; C{_Entry.timer} renews it.
    RENEWAL = "renewal"
    #: The last request failed; C{_Entry.timer} retries it after a backoff.
    BACKOFF = "backoff"


class _Why(Enum):
    """
    Why a mapping request is made, for the log line of its outcome.
    """

    MAP = "map"
    RENEW = "renew"
    RETRY = "retry"
    REMAP = "remap"


class _Remap(Enum):
    """
    Where the re-mapping of everything (RFC 6886 s3.7) stands.
    """

    IDLE = "idle"
    #: Waiting for the hold-off (C{_recoveryCall}).
    DUE = "due"
    #: Asking the external address.
    ASKING = "asking"
    #: Renewing the mappings one at a time.
    MAPPING = "mapping"


class _Entry:
    """
    The service's bookkeeping for one declaration.
    """

    def __init__(self, declaration: MappingDeclaration) -> None:
        self.declaration = declaration
        self.phase = _Phase.IDLE
        self.mapping: Mapping | None = None
        self.expires: float | None = None
        self.error: BaseException | None = None
        #: The external port last granted: suggested again (s3.3, s3.7).
        self.heldPort: int | None = None
        self.failures = 0
        #: The pending renewal (RENEWAL) or retry (BACKOFF).
        self.timer: IDelayedCall | None = None
        self.expiry: IDelayedCall | None = None
        #: The request in flight (REQUESTING); fires with None once handled.
        self.request: Deferred[None] | None = None
        #: The announcement burst in which a re-mapping last retried this
        #: mapping before its backoff ended (0: none).
        self.retriedInBurst = 0
        #: When the gateway's run that granted the mapping began (monotonic
        #: seconds), and the epoch of the grant.
        self.grantRun: float | None = None
        self.grantEpoch = 0
        self.waiters: list[Deferred[MappingState]] = []

    def cancelTimers(self) -> None:
        for call in (self.timer, self.expiry):
            if call is not None and call.active():
                call.cancel()
        self.timer = self.expiry = None
        if self.phase in (_Phase.RENEWAL, _Phase.BACKOFF):
            self.phase = _Phase.IDLE

    def cancelRequest(self) -> bool:
        """
        Cancel the request in flight; return whether there was one.
        """
        request, self.request = self.request, None
        if request is None:
            return False
        if self.phase is _Phase.REQUESTING:
            self.phase = _Phase.IDLE
        request.cancel()
        return True

    def forgetMapping(self) -> None:
        self.mapping = None
        self.expires = None
        self.grantRun = None

    def confirmedBy(self, run: float) -> bool:
        """
        Does an announcement from the gateway's run that began at C{run}
        (monotonic seconds) prove that the mapping is still held?  Only if
        the mapping was granted by the same run, late enough in it that a
        restart after the grant would show.
        """
        return (
            self.grantRun is not None
            and self.grantEpoch > COPY_SLACK
            and abs(run - self.grantRun) <= COPY_SLACK
        )


class _GatewayWatch:
    """
    Whether the gateway answers, told to a person: a warning when nothing
    came back for C{warnAfter} seconds of asking, a reminder every
    C{remindEvery} seconds while the silence lasts (not a line per retry),
    and one line when it answers again.  A gateway that keeps falling
    silent and answering again (a lossy link) is warned about at most once
    every C{remindEvery} seconds.  Whenever it answers after a silence,
    C{answersAgain} is called.

    @ivar silent: nothing has come back for C{warnAfter} seconds of asking.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPv4Address,
        answersAgain: Callable[[], object],
        warnAfter: float = SILENCE_WARNING,
        remindEvery: float = SILENCE_REMINDER,
    ) -> None:
        self._clock = clock
        self._gateway = str(gateway)
        self._answersAgain = answersAgain
        self._warnAfter = warnAfter
        self._remindEvery = remindEvery
        self.silent = False
        #: Whether this silence was told to a person.
        self._told = False
        #: When a person was last told of a silence.
        self._lastTold: float | None = None
        #: When the first request since the last answer was made, or the
        #: last answer if requests were still outstanding then.
        self._since: float | None = None
        #: How many requests are queued or in flight.
        self._outstanding = 0
        self._timer: IDelayedCall | None = None

    def asking(self) -> None:
        """
        A request goes to the gateway.
        """
        self._outstanding += 1
        if self._since is None:
            self._since = self._clock.seconds()
            self._schedule(self._warnAfter, self._silence)

    def unanswered(self) -> None:
        """
        A request settled without an answer (it gave up or was cancelled).
        """
        self._outstanding = max(0, self._outstanding - 1)

    def answered(self) -> None:
        """
        The gateway answered a request (success or a result code).  If
        other requests are still queued or in flight, the silence is timed
        again from now (RFC 6886 s3.1: they are still being retried).
        """
        self._outstanding = max(0, self._outstanding - 1)
        since, self._since = self._since, None
        self._cancel()
        if self._outstanding:
            self._since = self._clock.seconds()
            self._schedule(self._warnAfter, self._silence)
        if not self.silent:
            return
        self.silent = False
        if self._told:
            self._told = False
            log.info(
                "gateway {gateway} answers again, after {seconds:.0f} s without"
                " an answer",
                gateway=self._gateway,
                seconds=0.0 if since is None else self._clock.seconds() - since,
            )
        self._answersAgain()

    def stop(self) -> None:
        """
        Say nothing more.
        """
        self._cancel()

    def _schedule(self, delay: float, f: Callable[[], None]) -> None:
        self._cancel()
        self._timer = self._clock.callLater(delay, f)

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _silence(self) -> None:
        self._timer = None
        self.silent = True
        now = self._clock.seconds()
        if self._lastTold is None or now - self._lastTold >= self._remindEvery:
            self._told = True
            self._lastTold = now
            log.warn(
                "no answer from gateway {gateway} yet; still trying",
                gateway=self._gateway,
            )
        self._schedule(self._remindEvery, self._remind)

    def _remind(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        self._told = True
        self._lastTold = now
        log.warn(
            "still no answer from gateway {gateway} after {seconds:.0f} s;"
            " still trying",
            gateway=self._gateway,
            seconds=0.0 if self._since is None else now - self._since,
        )
        self._schedule(self._remindEvery, self._remind)


class PortMapperService(Service):
    """
    Keep declared ports mapped on the gateway while the service runs.

    Declarations are given to the constructor or added and removed with
    L{addMapping} and L{removeMapping} at any time.  L{states} tells what
    each one holds; observers (L{IMappingObserver}) hear every change.

    @ivar gateway: the gateway in use, or L{None} before one is known.
    @ivar externalAddress: the gateway's external address, if known.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        mappings: Iterable[MappingDeclaration] = (),
        *,
        gateway: IPv4Address | str | None = None,
        discoverGateway: Callable[[], IPv4Address] = defaultGateway,
        clientFactory: Callable[[IPv4Address], IPortMapper] | None = None,
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None]
        | None = None,
        holdOff: Callable[[], float] = _randomHoldOff,
        healthInterval: float = HEALTH_INTERVAL,
        gatewayCheckInterval: float = GATEWAY_CHECK_INTERVAL,
        backoff: Callable[[int], float] | None = None,
        stopTimeouts: Sequence[float] = STOP_TIMEOUTS,
        stopDeadline: float = STOP_DEADLINE,
        mapTimeouts: Sequence[float] = MAP_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
        allowPublicAddress: bool = False,
    ) -> None:
        """
        @param reactor: the clock; also the UDP and multicast reactor of the
            default C{clientFactory} and C{announcements}.
        @param mappings: the initial declarations.
        @param gateway: the gateway to use; L{None} finds the default
            gateway with C{discoverGateway} and follows it as it changes.
        @param discoverGateway: returns the default gateway, or raises
            L{NoGatewayError}.
        @param clientFactory: makes a listening L{IPortMapper} for a gateway
            (one per gateway; one with a C{stop()} method is stopped when
            done with); by default a L{twisted_natpmp.client.NATPMPClient}
            that judges epochs on C{monotonic}.
        @param announcements: starts listening with an L{AnnouncementProtocol}
            and returns the port, or L{None} for none; by default it binds
            224.0.0.1:5350 (a failure to bind is logged, not fatal).
        @param holdOff: returns the seconds to wait before re-mapping after a
            loss of state (RFC 6886 s3.7: uniform in 0-5 s).
        @param healthInterval: seconds between external-address checks.
        @param gatewayCheckInterval: seconds between default-gateway checks
            (only when C{gateway} is not given), which also check again
            whether a host refused for a public address reaches the gateway
            from a private one now.
        @param backoff: given the number of failures so far, returns the
            seconds to wait before retrying (like the C{retryPolicy} of
            L{twisted.application.internet.ClientService}); by default
            L{defaultBackoff}.
        @param stopTimeouts: the retransmission schedule of deletions: the
            wait after each send (five waits by default: each deletion sent
            up to five times, until answered).
        @param stopDeadline: the longest L{stopService} waits for deletions.
        @param mapTimeouts: the retransmission schedule of one mapping
            attempt (L{MAP_TIMEOUTS}); after it, the attempt fails and is
            retried after the C{backoff}.
        @param monotonic: returns the seconds of a clock that never steps,
            for the RFC 6886 s3.6 judgement of epochs (a wall clock stepped
            by NTP would look like a gateway reboot).
        @param allowPublicAddress: map even when this host reaches the
            gateway from an address that is not private (RFC 1918, RFC 6598
            or loopback); by default the service then maps nothing and each
            state carries a L{PublicAddressError} (RFC 6886 s3 SHOULD),
            until the address, checked again every C{gatewayCheckInterval}
            seconds, is private.
        """
        self._reactor = reactor
        self._entries: dict[tuple[Protocol, int], _Entry] = {}
        for declaration in mappings:
            self._declare(declaration)
        self._fixedGateway = None if gateway is None else IPv4Address(gateway)
        self._discoverGateway = discoverGateway
        self._clientFactory = clientFactory or self._defaultClient
        self._announcements = announcements or self._defaultAnnouncements
        self._holdOff = holdOff
        self._healthInterval = healthInterval
        self._gatewayCheckInterval = gatewayCheckInterval
        self._backoff = backoff or defaultBackoff()
        self._stopTimeouts = tuple(stopTimeouts)
        self._stopDeadline = stopDeadline
        self._mapTimeouts = tuple(mapTimeouts)
        self._monotonic = monotonic
        self._allowPublicAddress = allowPublicAddress
        self._observers: list[IMappingObserver] = []

        self.gateway: IPv4Address | None = None
        self.externalAddress: IPv4Address | None = None
        self._client: IPortMapper | None = None
        self._watch: _GatewayWatch | None = None
        #: Every request made of the current client and not yet settled, in
        #: the order made (a dict as an ordered set).
        self._inFlight: dict[Deferred[Any], None] = {}
        self._announcer: AnnouncementProtocol | None = None
        self._announcePort: IListeningPort | None = None
        self._healthLoop: LoopingCall | None = None
        self._gatewayLoop: LoopingCall | None = None
        self._healthRequest: Deferred[None] | None = None
        self._addressRequest: Deferred[None] | None = None
        self._recoveryCall: IDelayedCall | None = None
        self._recovery: Deferred[None] | None = None
        self._remap = _Remap.IDLE
        #: Why to re-map again once the one under way is done, if need be,
        #: and whether that is only a confirmation (rate-limited).
        self._remapAgain: tuple[str, bool] | None = None
        #: When the last re-mapping started, or an announcement last asked
        #: at once for the mappings never granted (monotonic seconds).
        self._lastRemap: float | None = None
        #: Announcements that came while a re-mapping was due or under way.
        self._coalesced = 0
        #: The current announcement burst (counted from 1), and when the
        #: gateway's run that its announcements come from began.
        self._burst = 0
        self._burstRun: float | None = None

        self._pcpEpochs = EpochTracker()
        self._gatewayMissing = False
        #: The public address this host reaches the gateway in use from,
        #: if it was refused for it (RFC 6886 s3); checked again with the
        #: gateway.
        self._refusedFrom: IPv4Address | None = None
        self._warnedTinyLifetime = False

    # Declarations

    @property
    def doubleNAT(self) -> bool:
        """
        Is the gateway's external address private (a second NAT upstream)?
        """
        return self.externalAddress is not None and isPrivateAddress(
            self.externalAddress
        )

    def states(self) -> list[MappingState]:
        """
        The state of every declaration, in the order declared.
        """
        return [self._state(entry) for entry in self._entries.values()]

    def state(self, protocol: Protocol, internalPort: int) -> MappingState:
        """
        The state of one declaration.

        @raise KeyError: nothing is declared for C{protocol} and
            C{internalPort}.
        """
        return self._state(self._entries[(Protocol(protocol), internalPort)])

    def addMapping(
        self,
        protocol: Protocol,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = RECOMMENDED_LIFETIME,
    ) -> Deferred[MappingState]:
        """
        Declare a port to keep mapped, and map it now if the service runs.

        @return: fires with the declaration's state after the first attempt
            (mapped, or with its error: the service keeps trying either way),
            or at once if the service is not running or has no gateway; fails
            with L{ValueError} for a bad or duplicate declaration.
        """
        try:
            declaration = MappingDeclaration(
                Protocol(protocol), internalPort, externalPort, lifetime
            )
            entry = self._declare(declaration)
        except ValueError as e:
            return fail(e)
        if not self.running or self._client is None:
            return succeed(self._state(entry))
        waiter: Deferred[MappingState] = Deferred(
            lambda d: entry.waiters.remove(d) if d in entry.waiters else None
        )
        entry.waiters.append(waiter)
        self._request(entry, _Why.MAP)
        return waiter

    def removeMapping(self, protocol: Protocol, internalPort: int) -> Deferred[None]:
        """
        Forget a declaration and delete its mapping from the gateway.

        @return: fires when the gateway confirmed the deletion (or at once if
            nothing was mapped); fails with the deletion's error, or with
            L{KeyError} if nothing is declared for that port.
        """
        try:
            entry = self._entries.pop((Protocol(protocol), internalPort))
        except (KeyError, ValueError) as e:
            return fail(e)
        entry.cancelTimers()
        held = entry.cancelRequest() or entry.mapping is not None
        entry.forgetMapping()
        self._changed(entry, removed=True)
        client = self._client
        if not self.running or client is None or not held:
            return succeed(None)
        # RFC 6886 s3.1: a deletion may be given up sooner than other requests.
        d = self._track(
            client.deleteMapping(
                entry.declaration.protocol,
                entry.declaration.internalPort,
                timeouts=self._stopTimeouts,
            )
        )
        what = str(entry.declaration)
        d.addCallback(lambda _: log.info("removed {what}", what=what))
        return d

    def addObserver(self, observer: IMappingObserver) -> None:
        """
        Call C{observer.mappingChanged(state)} on every change of state.
        """
        self._observers.append(observer)

    def removeObserver(self, observer: IMappingObserver) -> None:
        """
        Stop calling C{observer}.
        """
        self._observers.remove(observer)

    # IService

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._startAnnouncements()
        gateway = self._fixedGateway or self._discover()
        if gateway is not None:
            self._useGateway(gateway)
        self._healthLoop = self._loop(self._healthCheck, self._healthInterval)
        self._gatewayLoop = self._loop(self._checkGateway, self._gatewayCheckInterval)

    def stopService(self) -> Deferred[None]:
        """
        Stop keeping ports mapped and delete every mapping held.

        Every request still pending is cancelled first, so that nothing but
        the deletions goes out; the deletions are then sent together, each
        resent until answered on the s3.1 doubling schedule within the
        deadline (RFC 6886 s3.1, s3.4), and what could not be deleted is
        logged by name, with the reason.

        @return: fires when the gateway answered every deletion, or after
            at most C{stopDeadline} seconds.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        for loop in (self._healthLoop, self._gatewayLoop):
            if loop is not None and loop.running:
                loop.stop()
        self._healthLoop = self._gatewayLoop = None
        # What may be mapped on the gateway is known before anything is
        # cancelled: cancelling a re-mapping cancels the request it awaits,
        # and a request in flight may have been granted.
        held, unconfirmed = self._held()
        waits: list[Deferred[Any]] = []
        port, self._announcePort = self._announcePort, None
        if port is not None:
            waits.append(maybeDeferred(port.stopListening))
        self._announcer = None
        client = self._client
        self._quiesce()
        if client is not None:
            waits.append(
                self._deleteAll(client, held, "stopping", unconfirmed).addErrback(
                    lambda f: log.failure("deleting the mappings failed", f)
                )
            )
        return DeferredList(waits, consumeErrors=True).addCallback(self._stopped)

    # Internals: gateways and clients

    def _defaultClient(self, gateway: IPv4Address) -> IPortMapper:
        from ..natpmp.client import listenClient

        return listenClient(self._reactor, gateway, monotonic=self._monotonic)

    def _defaultAnnouncements(
        self, protocol: AnnouncementProtocol
    ) -> IListeningPort | None:
        if not hasattr(self._reactor, "listenMulticast"):
            log.warn(
                "the reactor cannot listen for gateway announcements; the health"
                " check every {interval} s will notice a gateway reboot",
                interval=self._healthInterval,
            )
            return None
        try:
            return listenAnnouncements(cast(IReactorMulticast, self._reactor), protocol)
        except CannotListenError as e:
            log.warn(
                "not listening for gateway announcements ({error}); the health"
                " check every {interval} s will notice a gateway reboot",
                error=str(e),
                interval=self._healthInterval,
            )
            return None

    def _startAnnouncements(self) -> None:
        self._announcer = AnnouncementProtocol(
            self.gateway, self._announced, clock=self._reactor
        )
        self._announcePort = self._announcements(self._announcer)

    def _discover(self) -> IPv4Address | None:
        try:
            gateway = self._discoverGateway()
        except NoGatewayError as e:
            if not self._gatewayMissing:
                log.warn("no gateway: {error}", error=str(e))
                self._gatewayMissing = True
                for entry in self._entries.values():
                    entry.error = e
                    self._changed(entry)
            return None
        except Exception:
            log.failure("finding the default gateway failed")
            return None
        self._gatewayMissing = False
        return gateway

    def _useGateway(self, gateway: IPv4Address) -> None:
        if self._refusedFrom is None:
            log.info("using NAT-PMP gateway {gateway}", gateway=str(gateway))
        self.gateway = gateway
        if self._announcer is not None:
            # The gateway's announcements are its own even while this host
            # is refused (a public address): heard, not dropped as a
            # stranger's.
            self._announcer.gateway = gateway
        client = self._clientFactory(gateway)
        client.addStateLossObserver(self._stateLost)
        if not self._privateHere(client, gateway):
            self._releaseClient(client).addErrback(
                lambda f: log.failure("stopping the client failed", f)
            )
            return
        self._client = client
        self._watch = _GatewayWatch(self._reactor, gateway, self._answersAgain)
        self._warnedTinyLifetime = False
        self._askExternalAddress(client)
        for entry in self._entries.values():
            self._request(entry, _Why.MAP)

    def _privateHere(self, client: IPortMapper, gateway: IPv4Address) -> bool:
        """
        RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
        address, here the one it reaches the gateway from, is private.
        Warn when it is not, and go ahead only if allowed to.

        @return: whether to use C{client}.
        """
        address = _sourceAddress(client)
        if address is None:
            try:
                address = localAddress(gateway)
            except OSError:
                return True
        refused, self._refusedFrom = self._refusedFrom, None
        if isPrivateAddress(address):
            if refused is not None:
                log.info(
                    "now reaching gateway {gateway} from {address}, a private"
                    " address: mapping",
                    gateway=str(gateway),
                    address=str(address),
                )
            return True
        error = PublicAddressError(address, gateway)
        if self._allowPublicAddress:
            log.warn("{error}; mapping anyway, as allowed", error=str(error))
            return True
        self._refusedFrom = address
        if address == refused:
            # Said already, and the states tell it.
            return False
        log.warn("{error}; mapping nothing", error=str(error))
        for entry in self._entries.values():
            entry.error = error
            self._changed(entry)
        return False

    def _quiesce(self) -> None:
        """
        Cancel everything scheduled or pending: timers, the re-mapping, and
        every request made of the client, the last made first, so that
        cancelling the one in flight sends none of those queued behind it.
        Nothing new is requested afterwards unless the service runs and has
        a client.
        """
        for d in reversed(list(self._inFlight)):
            d.cancel()
        self._inFlight.clear()
        self._cancelRecovery()
        for request in (self._healthRequest, self._addressRequest):
            if request is not None:
                request.cancel()
        self._healthRequest = self._addressRequest = None
        for entry in self._entries.values():
            entry.cancelTimers()
            entry.cancelRequest()
        if self._watch is not None:
            self._watch.stop()

    def _releaseClient(self, client: IPortMapper | None) -> Deferred[None]:
        if client is None:
            return succeed(None)
        client.removeStateLossObserver(self._stateLost)
        stop = getattr(client, "stop", None)
        if stop is None:
            return succeed(None)
        return maybeDeferred(stop).addCallback(lambda _: None)

    def _checkGateway(self) -> None:
        """
        Follow a change of the default gateway (unless the gateway is
        fixed), and check again whether this host, refused for a public
        address (RFC 6886 s3), reaches the gateway from a private one now.
        """
        gateway = self._fixedGateway or self._discover()
        if gateway is None:
            return
        if gateway == self.gateway:
            if self._refusedFrom is not None:
                self._useGateway(gateway)
            return
        self._refusedFrom = None
        old, oldClient = self.gateway, self._client
        held, unconfirmed = self._held()
        if old is not None:
            log.info(
                "the default gateway changed from {old} to {new}: moving the mappings",
                old=str(old),
                new=str(gateway),
            )
        self._client = None
        self._quiesce()
        for entry in self._entries.values():
            entry.forgetMapping()
            entry.heldPort = None
            entry.failures = 0
        if oldClient is not None:
            # The old gateway may still be reachable (a second router on
            # the same network): delete the mappings there, then let go of
            # its client.  An old gateway out of reach costs only the
            # deletions' few seconds, while the new one is already asked.
            deleted = self._deleteAll(oldClient, held, "leaving", unconfirmed)
            deleted.addBoth(lambda _: self._releaseClient(oldClient)).addErrback(
                lambda f: log.failure("stopping the old client failed", f)
            )
        self.externalAddress = None
        self._pcpEpochs.reset()
        self._burst, self._burstRun, self._lastRemap = 0, None, None
        self.gateway = gateway
        for entry in self._entries.values():
            self._changed(entry)
        self._useGateway(gateway)

    def _track(self, d: Deferred[_T]) -> Deferred[_T]:
        """
        Remember a request made of the current client until it settles, so
        that it can be cancelled, and tell the gateway watch whether it was
        answered.
        """
        watch = self._watch
        if watch is not None:
            watch.asking()
        self._inFlight[d] = None

        def settled(result: object) -> object:
            self._inFlight.pop(d, None)
            if watch is not None and watch is self._watch:
                if not isinstance(result, Failure):
                    watch.answered()
                elif not (result.check(CancelledError) or _unanswered(result)):
                    watch.answered()
                else:
                    watch.unanswered()
            return result

        d.addBoth(settled)
        return d

    def _answersAgain(self) -> None:
        """
        The gateway answers again after a silence: retry at once every
        mapping waiting for its backoff, rather than at its end.
        """
        for entry in self._entries.values():
            if entry.phase is _Phase.BACKOFF:
                self._request(entry, _Why.RETRY)

    # Internals: mapping

    def _declare(self, declaration: MappingDeclaration) -> _Entry:
        if declaration.key in self._entries:
            raise ValueError(
                f"{declaration.protocol.label} port {declaration.internalPort}"
                " is already declared"
            )
        entry = _Entry(declaration)
        self._entries[declaration.key] = entry
        return entry

    def _request(self, entry: _Entry, why: _Why) -> Deferred[None]:
        """
        Map or renew C{entry} now, unless a request for it is in flight.

        @param why: what the request is for, as its log line will say.
        @return: fires (with L{None}) once the outcome is handled.
        """
        if entry.request is not None:
            return entry.request
        client = self._client
        if not self.running or client is None:
            return succeed(None)
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        declaration = entry.declaration
        if entry.heldPort is not None:
            suggested: int | None = entry.heldPort
        else:
            suggested = declaration.externalPort
        requested = self._track(
            client.addMapping(
                declaration.protocol,
                declaration.internalPort,
                suggested,
                declaration.lifetime,
                timeouts=self._mapTimeouts,
            )
        )
        entry.phase = _Phase.REQUESTING
        handled = requested.addCallbacks(
            self._granted,
            self._failed,
            callbackArgs=(entry, client, why, suggested),
            errbackArgs=(entry, client, why),
        )
        if not handled.called:
            entry.request = handled
        return handled

    def _current(self, entry: _Entry, client: IPortMapper) -> bool:
        return (
            bool(self.running)
            and client is self._client
            and self._entries.get(entry.declaration.key) is entry
        )

    def _granted(
        self,
        mapping: Mapping,
        entry: _Entry,
        client: IPortMapper,
        why: _Why,
        suggested: int | None,
    ) -> None:
        entry.request = None
        if not self._current(entry, client):
            return
        declaration = entry.declaration
        previous = entry.mapping
        now = self._reactor.seconds()
        entry.mapping = mapping
        entry.heldPort = mapping.externalPort
        entry.error = None
        entry.failures = 0
        # RFC 6886 s3.3: a gateway may grant less than asked and SHOULD NOT
        # grant more; a longer grant (a faulty gateway, or a forged reply)
        # is not trusted beyond the lifetime asked for.
        lifetime = min(mapping.lifetime, declaration.lifetime)
        entry.expires = now + lifetime
        entry.grantRun = self._monotonic() - mapping.epoch
        entry.grantEpoch = mapping.epoch
        entry.cancelTimers()
        # RFC 6886 s3.3: renew halfway to expiry, by the GRANTED lifetime,
        # but a short grant not more often than MIN_RENEWAL_INTERVAL.
        floor = _renewalFloor(declaration)
        renewal = max(lifetime / 2, floor)
        entry.phase = _Phase.RENEWAL
        entry.timer = self._reactor.callLater(renewal, self._timerFired, entry)
        entry.expiry = self._reactor.callLater(lifetime, self._expired, entry)
        address = mapping.externalAddress or self.externalAddress
        fields: dict[str, Any] = dict(
            what=str(declaration),
            address="?" if address is None else str(address),
            port=mapping.externalPort,
            lifetime=mapping.lifetime,
            gateway=str(self.gateway),
        )
        asked = declaration.internalPort if suggested is None else suggested
        notes = []
        if asked and mapping.externalPort != asked:
            notes.append(f"asked for port {asked}")
        if mapping.lifetime != declaration.lifetime:
            notes.append(f"asked for {declaration.lifetime} s")
        fields["notes"] = f" ({'; '.join(notes)})" if notes else ""
        if why is _Why.REMAP:
            verb = "re-mapped"
        else:
            verb = "mapped" if previous is None else "renewed"
        if previous is not None and previous.externalPort != mapping.externalPort:
            log.warn(
                "{what} moved to {address}:{port} (was port {old}) for"
                " {lifetime} s{notes}",
                old=previous.externalPort,
                **fields,
            )
        else:
            # Once a person was told that the gateway grants tiny lifetimes,
            # each grant's line (a "mapped" one: the last expired before the
            # renewal) is no news.
            tinyAgain = lifetime / 2 < floor and self._warnedTinyLifetime
            (log.debug if tinyAgain else log.info)(
                verb + " {what} -> {address}:{port} for {lifetime} s{notes}", **fields
            )
        if mapping.lifetime > declaration.lifetime:
            log.warn(
                "gateway {gateway} granted {what} {lifetime} s, more than the"
                " {asked} s asked for (RFC 6886 s3.3: it should not); renewing"
                " as if granted {asked} s",
                asked=declaration.lifetime,
                **fields,
            )
        if lifetime / 2 < floor and not self._warnedTinyLifetime:
            self._warnedTinyLifetime = True
            log.warn(
                "gateway {gateway} grants tiny lifetimes ({lifetime} s for"
                " {what}); renewing no more often than every {floor:.0f} s, so"
                " mappings may lapse between renewals",
                floor=floor,
                **fields,
            )
        if self.externalAddress is None:
            # The first address request went unanswered (it is kept short so
            # as not to hold up the mappings): the gateway answers now.
            self._askExternalAddress(client)
        self._changed(entry)

    def _failed(
        self, failure: Failure, entry: _Entry, client: IPortMapper, why: _Why
    ) -> None:
        entry.request = None
        if failure.check(CancelledError) or not self._current(entry, client):
            return
        entry.error = failure.value
        delay = self._backoff(entry.failures)
        entry.failures += 1
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.phase = _Phase.BACKOFF
        entry.timer = self._reactor.callLater(delay, self._timerFired, entry)
        fields = dict(
            what=str(entry.declaration),
            gateway=str(self.gateway),
            error=failure.getErrorMessage(),
            delay=delay,
        )
        text = (
            "could not map {what} via {gateway}: {error}; next attempt in {delay:.1f} s"
        )
        if _unanswered(failure) and self._watch is not None and self._watch.silent:
            # The gateway watch tells a person, at a sensible interval.
            log.info(text, **fields)
        else:
            log.warn(text, **fields)
        self._changed(entry)

    def _timerFired(self, entry: _Entry) -> None:
        why = _Why.RENEW if entry.phase is _Phase.RENEWAL else _Why.RETRY
        entry.timer = None
        self._request(entry, why)

    def _expired(self, entry: _Entry) -> None:
        entry.expiry = None
        mapping = entry.mapping
        tiny = mapping is not None and mapping.lifetime / 2 < _renewalFloor(
            entry.declaration
        )
        # A gateway granting tiny lifetimes was warned about once.
        (log.debug if tiny else log.warn)(
            "the mapping of {what} expired", what=str(entry.declaration)
        )
        entry.forgetMapping()
        self._changed(entry)

    # Internals: state loss and recovery (RFC 6886 s3.6, s3.7)

    def _stateLost(self) -> None:
        self._burst += 1
        self._scheduleRecovery("the gateway lost its state (RFC 6886 s3.6)")

    def _announced(self, announcement: Announcement) -> None:
        """
        An announcement from the gateway (RFC 6886 s3.2.1, RFC 6887 s14.1):
        confirm the mappings unless it proves them held.

        A loss of state by the epoch rule (s3.6, which s3.2.1 applies to
        announcements too) or a new external address re-maps everything.
        But two restarts close together look alike to that rule, so any
        other announcement also leads to the mappings being requested
        again (rate-limited to one re-mapping every L{CONFIRM_SPACING}
        seconds), unless its epoch shows the same run of the gateway as the
        one that granted each held mapping, late enough in that run that a
        restart since would show (L{COPY_SLACK}): the copies of s3.2.1 so
        cost nothing.  A mapping waiting for its backoff is retried early
        once per burst of announcements from one run (s3.1: an announcement
        is the signal to try again), not per copy.
        """
        client = self._client
        if not self.running or client is None:
            return
        kind = announcement.kind
        now = self._monotonic()
        run = now - announcement.epoch
        if self._burstRun is None or abs(run - self._burstRun) > COPY_SLACK:
            self._burst += 1
        self._burstRun = run
        reason = f"{kind.value} announcement from {self.gateway}"
        if kind is AnnouncementKind.NATPMP:
            # A loss of state reaches _stateLost through the client (a new
            # burst: asked after the judgement, so once per burst).
            lost = client.noteEpoch(announcement.epoch)
            self._askFirstRequests()
            if lost:
                return
            known = self.externalAddress
            if known is None and announcement.externalAddress is not None:
                # The address was not known yet (the first request failed):
                # the announcement tells it.
                self._gotExternalAddress(announcement.externalAddress, client, False)
            elif (
                known is not None
                and announcement.externalAddress is not None
                and announcement.externalAddress != known
            ):
                # (An announcement of 0.0.0.0, no address, RFC 6886 s3.2,
                # is no address news; its epoch was judged above.)
                self._scheduleRecovery(f"{reason}: a new external address")
                return
        else:
            lost = self._pcpEpochs.update(announcement.epoch, now)
            self._askFirstRequests()
            if lost:
                self._scheduleRecovery(f"{reason}: the gateway lost its state")
                return
        due = [
            entry
            for entry in self._entries.values()
            if (entry.phase is _Phase.BACKOFF and entry.retriedInBurst != self._burst)
            or (
                entry.phase is _Phase.RENEWAL
                and entry.mapping is not None
                and not entry.confirmedBy(run)
            )
        ]
        if due:
            self._scheduleRecovery(reason, confirm=True)
        # Otherwise a copy: nothing to do, and nothing to log per packet.

    def _askFirstRequests(self) -> None:
        """
        On an announcement, ask at once, one request at a time behind any
        queued (RFC 6886 s3.1), for every mapping waiting to be retried that
        this gateway never granted: such a request is a first request, not
        a renewal.  The s3.7 hold-off is for renewals after a loss of state
        (so that a rebooted gateway is not flooded by every client at
        once), and s3.1 has an announcement discard a cached verdict that
        the gateway does not speak NAT-PMP; so a gateway that was down when
        the service started maps its ports as soon as it says it is up.
        Mappings it did grant keep the hold-off.  Once per burst of
        announcements, not per copy, and at most once every
        L{CONFIRM_SPACING} seconds, counted with the re-mappings (it is one
        for the spacing of confirmations), so that forged announcements with
        ever new epochs cannot make the service ask faster than before
        (those it leaves are retried by the re-mapping); one granted so,
        early in the gateway's run, is confirmed by the re-mapping like the
        others (L{COPY_SLACK}).
        """
        now = self._monotonic()
        if self._lastRemap is not None and now - self._lastRemap < CONFIRM_SPACING:
            return
        for entry in list(self._entries.values()):
            if (
                entry.phase is _Phase.BACKOFF
                and entry.heldPort is None
                and entry.retriedInBurst != self._burst
            ):
                self._lastRemap = now
                entry.retriedInBurst = self._burst
                self._request(entry, _Why.RETRY)

    def _scheduleRecovery(self, reason: str, confirm: bool = False) -> None:
        """
        Re-map everything after the s3.7 hold-off, unless a re-mapping that
        covers this reason is due or under way already.

        @param confirm: nothing is known to be lost: start no sooner than
            L{CONFIRM_SPACING} seconds after the last re-mapping started.
        """
        if not self.running or self._client is None:
            return
        if self._remap in (_Remap.DUE, _Remap.ASKING):
            # Its mapping requests are all still to be sent: they cover it.
            self._coalesced += 1
            return
        if self._remap is _Remap.MAPPING:
            self._coalesced += 1
            if self._remapAgain is None or not confirm:
                self._remapAgain = (reason, confirm)
            return
        delay = self._holdOff()
        if confirm and self._lastRemap is not None:
            delay = max(delay, self._lastRemap + CONFIRM_SPACING - self._monotonic())
        log.info(
            "{reason}: re-mapping everything in {delay:.2f} s",
            reason=reason,
            delay=delay,
        )
        self._remap = _Remap.DUE
        self._recoveryCall = self._reactor.callLater(delay, self._recover)

    def _cancelRecovery(self) -> None:
        call, self._recoveryCall = self._recoveryCall, None
        if call is not None and call.active():
            call.cancel()
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
        self._remap = _Remap.IDLE
        self._remapAgain = None
        self._coalesced = 0

    def _recover(self) -> None:
        self._recoveryCall = None
        client = self._client
        if client is None:
            self._remap = _Remap.IDLE
            return
        self._lastRemap = self._monotonic()
        d = Deferred.fromCoroutine(self._remapAll(client))
        d.addErrback(self._recoveryFailed)
        if not d.called:
            self._recovery = d

    def _recoveryFailed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.failure("re-mapping failed", failure)

    async def _remapAll(self, client: IPortMapper) -> None:
        """
        RFC 6886 s3.7: refresh the external address, then renew every
        mapping one request at a time, each suggesting the external port it
        held before.  A mapping waiting for its backoff is retried only if
        no re-mapping of this announcement burst retried it yet.
        """
        try:
            self._remap = _Remap.ASKING
            await self._askExternalAddress(client, recovering=True)
            self._remap = _Remap.MAPPING
            for entry in list(self._entries.values()):
                if not self._current(entry, client):
                    continue
                if entry.phase is _Phase.BACKOFF:
                    if entry.retriedInBurst == self._burst:
                        continue
                    entry.retriedInBurst = self._burst
                await self._request(entry, _Why.REMAP)
        finally:
            self._remap = _Remap.IDLE
            self._recovery = None
        coalesced, self._coalesced = self._coalesced, 0
        log.info(
            "re-mapping done{more}: {states}",
            more=f" ({coalesced} more announcements or losses meanwhile)"
            if coalesced
            else "",
            states="; ".join(s.describe() for s in self.states()),
        )
        again, self._remapAgain = self._remapAgain, None
        if again is not None:
            self._scheduleRecovery(again[0], confirm=again[1])

    # Internals: external address and health

    def _askExternalAddress(
        self, client: IPortMapper, recovering: bool = False
    ) -> Deferred[None]:
        if not recovering and self._addressRequest is not None:
            return self._addressRequest
        d = self._track(client.externalAddress(timeouts=ADDRESS_TIMEOUTS))
        handled = d.addCallbacks(
            self._gotExternalAddress,
            self._externalAddressFailed,
            callbackArgs=(client, recovering),
            errbackArgs=(client,),
        )
        if not recovering and not handled.called:
            self._addressRequest = handled
            handled.addBoth(self._addressDone, handled)
        return handled

    def _addressDone(self, result: object, request: Deferred[None]) -> None:
        if self._addressRequest is request:
            self._addressRequest = None

    def _gotExternalAddress(
        self, address: IPv4Address, client: IPortMapper, recovering: bool
    ) -> None:
        if client is not self._client:
            return
        previous, self.externalAddress = self.externalAddress, address
        if address == previous:
            return
        log.info(
            "gateway {gateway} has external address {address}",
            gateway=str(self.gateway),
            address=str(address),
        )
        if isPrivateAddress(address):
            log.warn(
                "the external address {address} is private: this host is behind"
                " a second NAT, and its mappings do not make it reachable from"
                " the Internet",
                address=str(address),
            )
        if previous is not None and not recovering:
            self._scheduleRecovery(f"the external address changed from {previous}")
        for entry in self._entries.values():
            if entry.mapping is not None:
                self._changed(entry)

    def _externalAddressFailed(self, failure: Failure, client: IPortMapper) -> None:
        if failure.check(CancelledError) or client is not self._client:
            return
        # No answer at all is the gateway watch's to tell.
        (log.info if _unanswered(failure) else log.warn)(
            "gateway {gateway} did not tell its external address: {error}",
            gateway=str(self.gateway),
            error=failure.getErrorMessage(),
        )

    def _healthCheck(self) -> None:
        """
        RFC 6886 s3.6: any reply carries the epoch, so a cheap external
        address request every so often reveals a gateway that lost its state
        without announcing it.
        """
        client = self._client
        if client is None or self._healthRequest is not None:
            return
        d = self._track(client.externalAddress(timeouts=HEALTH_TIMEOUTS))
        handled = d.addCallbacks(
            self._gotExternalAddress,
            self._externalAddressFailed,
            callbackArgs=(client, False),
            errbackArgs=(client,),
        )
        if not handled.called:
            self._healthRequest = handled
            handled.addBoth(self._healthDone, handled)

    def _healthDone(self, result: object, request: Deferred[None]) -> None:
        if self._healthRequest is request:
            self._healthRequest = None

    def _loop(self, f: Callable[[], object], interval: float) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = self._reactor
        loop.start(interval, now=False).addErrback(
            lambda failure: log.failure("periodic check failed", failure)
        )
        return loop

    # Internals: stopping

    def _held(self) -> tuple[list[MappingDeclaration], set[tuple[Protocol, int]]]:
        """
        What may be mapped on the gateway now: the declarations granted or
        with a request in flight (which may have been granted), and the keys
        of those never seen granted.
        """
        held = [
            entry.declaration
            for entry in self._entries.values()
            if entry.request is not None or entry.mapping is not None
        ]
        unconfirmed = {
            entry.declaration.key
            for entry in self._entries.values()
            if entry.request is not None and entry.mapping is None
        }
        return held, unconfirmed

    def _deleteAll(
        self,
        client: IPortMapper,
        declarations: list[MappingDeclaration],
        why: str,
        unconfirmed: set[tuple[Protocol, int]] | frozenset[tuple[Protocol, int]] = (
            frozenset()
        ),
    ) -> Deferred[None]:
        """
        Delete C{declarations} from the gateway of C{client}: every deletion
        sent at once and resent until answered (RFC 6886 s3.1), all
        given up at C{stopDeadline}; then log what was deleted and name,
        with the reason, each mapping left behind.

        @param why: what the service is doing, for the log (C{"stopping"}).
        @param unconfirmed: the keys of declarations asked for but never
            seen granted: where their deletion fails, they I{may} be left
            (the request may have reached the gateway), and the log says so.
        """
        if not declarations:
            return succeed(None)
        byKey = {declaration.key: declaration for declaration in declarations}
        gateway = str(client.gateway)
        d = client.deleteMappings(list(byKey), self._stopTimeouts)
        deadline = self._reactor.callLater(self._stopDeadline, d.cancel)

        def report(
            outcomes: dict[tuple[Protocol, int], Failure | None] | Failure,
        ) -> None:
            if deadline.active():
                deadline.cancel()
            if isinstance(outcomes, Failure):
                # The deletions could not even be asked for (a bad key):
                # every mapping is left, for that reason.
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
            for perhaps, format in (
                (
                    False,
                    "{why}: left {count} mapping(s) at gateway {gateway}, which"
                    " expire by themselves: {what}",
                ),
                (
                    True,
                    "{why}: may have left {count} mapping(s) at gateway {gateway},"
                    " asked for but never seen granted (they expire by themselves"
                    " if made): {what}",
                ),
            ):
                left = {
                    k: f for k, f in failed.items() if (k in unconfirmed) is perhaps
                }
                if left:
                    log.warn(
                        format,
                        why=why,
                        count=len(left),
                        gateway=gateway,
                        what="; ".join(
                            f"{byKey[k]} ({self._whyLeft(f)})" for k, f in left.items()
                        ),
                    )

        return d.addBoth(report)

    def _whyLeft(self, failure: Failure) -> str:
        if failure.check(CancelledError):
            return f"not answered within the {self._stopDeadline:g} s stop deadline"
        return failure.getErrorMessage() or type(failure.value).__name__

    def _stopped(self, result: object) -> Deferred[None]:
        for entry in self._entries.values():
            entry.forgetMapping()
            entry.error = None
            self._changed(entry, removed=True)
        self.externalAddress = None
        self.gateway = None
        client, self._client = self._client, None
        self._watch = None
        self._lastRemap, self._burst, self._burstRun = None, 0, None
        # A new run judges its own epochs and says again that there is no
        # gateway.
        self._pcpEpochs.reset()
        self._gatewayMissing = False
        self._refusedFrom = None
        return self._releaseClient(client)

    # Internals: state

    def _state(self, entry: _Entry, removed: bool = False) -> MappingState:
        mapping = entry.mapping
        address = self.externalAddress
        if address is None and mapping is not None:
            address = mapping.externalAddress
        return MappingState(
            declaration=entry.declaration,
            gateway=self.gateway,
            externalAddress=address,
            externalPort=None if mapping is None else mapping.externalPort,
            # RFC 6886 s3.3: a longer grant than asked is not trusted (the
            # expiry and renewal use the lifetime asked for): report that.
            lifetime=None
            if mapping is None
            else min(mapping.lifetime, entry.declaration.lifetime),
            expires=entry.expires,
            error=entry.error,
            doubleNAT=address is not None and isPrivateAddress(address),
            removed=removed,
        )

    def _changed(self, entry: _Entry, removed: bool = False) -> None:
        state = self._state(entry, removed)
        waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            waiter.callback(state)
        for observer in list(self._observers):
            try:
                observer.mappingChanged(state)
            except Exception:
                log.failure("observer {observer} failed", observer=repr(observer))
