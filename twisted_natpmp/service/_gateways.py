# -*- test-case-name: tests.service.natpmp,tests.service.test_service -*-
"""
The part of L{PortMapperService <twisted_natpmp.service.PortMapperService>}
that finds the gateway and follows it: discovery and the periodic check of
the default gateway, the mapper made for each gateway and its
L{GatewayWatch}, the announcement listener, and the RFC 6886 s3 refusal to
map from a public address.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorMulticast, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .._types import IPAddress, Mapping, ProtocolName
from ..announce import Announcement, AnnouncementProtocol, listenAnnouncements
from ..discovery import isPrivateAddress, localAddress
from ..errors import NoGatewayError
from ..interfaces import IPortMapper, MappingKey
from ._declared import Declared
from .declarations import MappingDeclaration, MappingState, PublicAddressError
from .keeper import MappingKeeper
from .watch import GatewayWatch

log = Logger()


class GatewayFollower:
    """
    Finds the gateway, makes its mapper and watch, starts the keepers on it,
    and follows it when it changes.

    @ivar gateway: the gateway in use, or L{None}.
    @ivar client: the mapper of the gateway in use, if this host may use it.
    @ivar watch: the watch of that mapper.
    @ivar announcer: the announcement listener's protocol, while running.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        declared: Declared,
        *,
        gateway: IPAddress | None,
        discoverGateway: Callable[[], IPAddress],
        clientFactory: Callable[[IPAddress], IPortMapper],
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None] | None,
        holdOff: Callable[[], float],
        healthInterval: float,
        gatewayCheckInterval: float,
        allowPublicAddress: bool,
        monotonic: Callable[[], float],
        deleteAll: Callable[
            [IPortMapper, list[MappingDeclaration], str, set[MappingKey]],
            Deferred[None],
        ],
        running: Callable[[], bool],
    ) -> None:
        self._reactor = reactor
        self._declared = declared
        self.fixedGateway = gateway
        self._discoverGateway = discoverGateway
        self.clientFactory = clientFactory
        self._announcements = announcements or self._defaultAnnouncements
        self._holdOff = holdOff
        self.healthInterval = healthInterval
        self._gatewayCheckInterval = gatewayCheckInterval
        self.allowPublicAddress = allowPublicAddress
        self._monotonic = monotonic
        self._deleteAll = deleteAll
        self._running = running
        self.gateway: IPAddress | None = None
        self.client: IPortMapper | None = None
        self.watch: GatewayWatch | None = None
        self.announcer: AnnouncementProtocol | None = None
        self._announcePort: IListeningPort | None = None
        self._gatewayLoop: LoopingCall | None = None
        self._gatewayMissing = False
        #: The public address this host reaches the gateway in use from, if
        #: it was refused for it (RFC 6886 s3); checked again with the
        #: gateway.
        self._refusedFrom: IPAddress | None = None

    def _defaultAnnouncements(
        self, protocol: AnnouncementProtocol
    ) -> IListeningPort | None:
        if not hasattr(self._reactor, "listenMulticast"):
            log.warn(
                "the reactor cannot listen for gateway announcements; the health"
                " check every {interval} s will notice a gateway reboot",
                interval=self.healthInterval,
            )
            return None
        try:
            return listenAnnouncements(cast(IReactorMulticast, self._reactor), protocol)
        except CannotListenError as e:
            log.warn(
                "not listening for gateway announcements ({error}); the health"
                " check every {interval} s will notice a gateway reboot",
                error=str(e),
                interval=self.healthInterval,
            )
            return None

    def start(self) -> None:
        """
        Listen for announcements, use the gateway (given, or the default
        one), and check the default gateway every C{gatewayCheckInterval}.
        """
        # (An IPv6 gateway is set on it once in use.)
        known = self.gateway if isinstance(self.gateway, IPv4Address) else None
        self.announcer = AnnouncementProtocol(
            known, self.announced, clock=self._reactor
        )
        self._announcePort = self._announcements(self.announcer)
        gateway = self.fixedGateway or self._discover()
        if gateway is not None:
            self._useGateway(gateway)
        loop = self._gatewayLoop = LoopingCall(self._checkGateway)
        loop.clock = self._reactor
        loop.start(self._gatewayCheckInterval, now=False).addErrback(
            lambda failure: log.failure("periodic check failed", failure)
        )

    def stop(self) -> Deferred[object]:
        """
        Check the gateway no more, and stop listening for announcements.

        @return: fires once the listening port is closed.
        """
        if self._gatewayLoop is not None and self._gatewayLoop.running:
            self._gatewayLoop.stop()
        self._gatewayLoop = None
        port, self._announcePort = self._announcePort, None
        self.announcer = None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening)

    def quiesce(self) -> None:
        """
        Cancel everything scheduled or pending: every request made of the
        mapper (the last made first, so that cancelling the one in flight
        sends none of those queued behind it) and nothing more asked, the
        re-mapping and the probes, then the keepers' timers.
        """
        if self.watch is not None:
            self.watch.stop()
        for keeper in self._declared:
            keeper.pause()

    def forget(self) -> Deferred[None]:
        """
        Let go of the gateway and its mapper, as when stopped.

        @return: fires once the mapper is stopped.
        """
        self.gateway = None
        client, self.client = self.client, None
        self.watch = None
        # A new run says again that there is no gateway.
        self._gatewayMissing = False
        self._refusedFrom = None
        return _release(client)

    def startKeeper(self, keeper: MappingKeeper) -> Deferred[MappingState]:
        """
        Start a keeper just declared, if running on a gateway.

        @return: fires with its state after the first attempt, or at once
            if not running or without a gateway.
        """
        watch = self.watch
        if not self._running() or self.client is None or watch is None:
            return succeed(self._declared.state(keeper))
        waiter = self._declared.nextState(keeper.declaration.key)
        keeper.start(watch.mapper, watch.context)
        return waiter

    def removeKeeper(self, keeper: MappingKeeper) -> Deferred[None]:
        """
        Delete the mapping of a keeper no longer declared.

        @return: fires when the gateway confirmed the deletion (or at once
            if nothing was mapped).
        """
        if not self._running() or self.client is None:
            keeper.pause()
            keeper.forget()
        d = keeper.remove()
        self._declared.changed(keeper, removed=True)
        return d

    def granted(self, mapping: Mapping | None) -> None:
        """
        Tell the watch of the gateway in use of a grant.
        """
        if self.watch is not None:
            self.watch.granted(mapping)

    def stopAll(self) -> Deferred[None]:
        """
        Stop following the gateway and delete every mapping held.

        @return: fires when the gateway answered every deletion, or after
            the deletions' deadline, once the gateway is forgotten.
        """
        # What may be mapped on the gateway is known before anything is
        # cancelled: a request in flight may have been granted.
        held, unconfirmed = self._declared.held()
        waits: list[Deferred[Any]] = [self.stop()]
        client = self.client
        self.quiesce()
        if client is not None:
            d = self._deleteAll(client, held, "stopping", unconfirmed)
            waits.append(
                d.addErrback(lambda f: log.failure("deleting the mappings failed", f))
            )
        return DeferredList(waits, consumeErrors=True).addCallback(
            lambda _: self._stopped()
        )

    def _stopped(self) -> Deferred[None]:
        for keeper in self._declared:
            keeper.forget()
            keeper.error = None
            self._declared.changed(keeper, removed=True)
        return self.forget()

    def _discover(self) -> IPAddress | None:
        try:
            gateway = self._discoverGateway()
        except NoGatewayError as e:
            if not self._gatewayMissing:
                log.warn("no gateway: {error}", error=str(e))
                self._gatewayMissing = True
                self._declared.failAll(e)
            return None
        except Exception:
            log.failure("finding the default gateway failed")
            return None
        self._gatewayMissing = False
        return gateway

    def _useGateway(self, gateway: IPAddress) -> None:
        self.gateway = gateway
        if self.announcer is not None:
            # The gateway's announcements are its own even while this host
            # is refused (a public address): heard, not dropped as a
            # stranger's.
            self.announcer.gateway = gateway  # type: ignore[assignment]
        try:
            client = self.clientFactory(gateway)
        except ValueError as e:
            # NAT-PMP asked of an IPv6 gateway, for one.
            log.warn(
                "cannot use gateway {gateway}: {error}",
                gateway=str(gateway),
                error=str(e),
            )
            self._declared.failAll(e)
            return
        if self._refusedFrom is None:
            log.info(
                "using {protocol} gateway {gateway}",
                gateway=str(gateway),
                protocol=ProtocolName(client.protocolName).display,
            )
        if not self._privateHere(client, gateway):
            _release(client).addErrback(
                lambda f: log.failure("stopping the client failed", f)
            )
            return
        self.client = client
        watch = self.watch = GatewayWatch(
            self._reactor,
            client,
            self._declared.keepers.values,
            holdOff=self._holdOff,
            monotonic=self._monotonic,
            healthInterval=self.healthInterval,
            changed=self._declared.changed,
            describe=lambda: "; ".join(
                self._declared.state(keeper).describe() for keeper in self._declared
            ),
        )
        watch.start()
        for keeper in list(self._declared):
            keeper.start(watch.mapper, watch.context)

    def _privateHere(self, client: IPortMapper, gateway: IPAddress) -> bool:
        """
        RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
        address, here the one it reaches the gateway from, is private.
        Warn when it is not, and go ahead only if allowed to.

        @return: whether to use C{client}.
        """
        address = client.sourceAddress()
        if address is None:
            if not isinstance(gateway, IPv4Address):
                return True
            try:
                address = localAddress(gateway)
            except OSError:
                return True
        refused, self._refusedFrom = self._refusedFrom, None
        if not isinstance(address, IPv4Address) or isPrivateAddress(address):
            if refused is not None:
                log.info(
                    "now reaching gateway {gateway} from {address}, a private"
                    " address: mapping",
                    gateway=str(gateway),
                    address=str(address),
                )
            return True
        error = PublicAddressError(address, gateway)
        if self.allowPublicAddress:
            log.warn("{error}; mapping anyway, as allowed", error=str(error))
            return True
        self._refusedFrom = address
        if address == refused:
            # Said already, and the states tell it.
            return False
        log.warn("{error}; mapping nothing", error=str(error))
        self._declared.failAll(error)
        return False

    def _checkGateway(self) -> None:
        """
        Follow a change of the default gateway (unless the gateway is
        fixed), and check again whether this host, refused for a public
        address (RFC 6886 s3), reaches the gateway from a private one now.
        """
        gateway = self.fixedGateway or self._discover()
        if gateway is None:
            return
        if gateway == self.gateway:
            if self._refusedFrom is not None:
                self._useGateway(gateway)
            return
        self._refusedFrom = None
        old, oldClient = self.gateway, self.client
        held, unconfirmed = self._declared.held()
        if old is not None:
            log.info(
                "the default gateway changed from {old} to {new}: moving the mappings",
                old=str(old),
                new=str(gateway),
            )
        self.quiesce()
        self.client = self.watch = None
        for keeper in self._declared:
            keeper.forget(ports=True)
        if oldClient is not None:
            # The old gateway may still be reachable (a second router on the
            # same network): delete the mappings there, then let go of its
            # mapper.  An old gateway out of reach costs only the deletions'
            # few seconds, while the new one is already asked.
            deleted = self._deleteAll(oldClient, held, "leaving", unconfirmed)
            deleted.addBoth(lambda _: _release(oldClient)).addErrback(
                lambda f: log.failure("stopping the old client failed", f)
            )
        self.gateway = gateway
        for keeper in self._declared:
            self._declared.changed(keeper)
        self._useGateway(gateway)

    def announced(self, announcement: Announcement) -> None:
        """
        An announcement from the gateway: the watch's to judge.
        """
        if self._running() and self.client is not None and self.watch is not None:
            self.watch.announced(announcement)


def _release(client: IPortMapper | None) -> Deferred[None]:
    if client is None:
        return succeed(None)
    return maybeDeferred(client.stop).addCallback(lambda _: None)
