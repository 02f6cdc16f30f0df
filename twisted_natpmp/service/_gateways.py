# -*- test-case-name: tests.service.test_natpmp,tests.service.test_service -*-
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
from typing import TYPE_CHECKING, cast

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorMulticast, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .._types import IPAddress
from ..announce import Announcement, AnnouncementProtocol, listenAnnouncements
from ..discovery import isPrivateAddress, localAddress
from ..errors import NoGatewayError
from ..interfaces import IPortMapper, MappingKey
from .declarations import MappingDeclaration, PublicAddressError
from .watch import GatewayWatch

if TYPE_CHECKING:
    from .keeper import MappingKeeper

log = Logger()


class _GatewayFollower:
    """
    Finds the gateway, makes its mapper and watch, starts the keepers on it,
    and follows it when it changes.
    """

    _reactor: IReactorTime
    _monotonic: Callable[[], float]
    _keepers: dict[MappingKey, MappingKeeper]
    running: bool | int

    def _changed(self, keeper: MappingKeeper, removed: bool = False) -> None:
        raise NotImplementedError()

    def _held(self) -> tuple[list[MappingDeclaration], set[MappingKey]]:
        raise NotImplementedError()

    def _deleteAll(
        self,
        client: IPortMapper,
        declarations: list[MappingDeclaration],
        why: str,
        unconfirmed: set[MappingKey],
    ) -> Deferred[None]:
        raise NotImplementedError()

    def _announced(self, announcement: Announcement) -> None:
        raise NotImplementedError()

    def _releaseClient(self, client: IPortMapper | None) -> Deferred[None]:
        raise NotImplementedError()

    def _follow(
        self,
        gateway: IPv4Address | None,
        discoverGateway: Callable[[], IPv4Address],
        clientFactory: Callable[[IPv4Address], IPortMapper],
        announcements: Callable[[AnnouncementProtocol], IListeningPort | None] | None,
        holdOff: Callable[[], float],
        healthInterval: float,
        gatewayCheckInterval: float,
        allowPublicAddress: bool,
    ) -> None:
        self._fixedGateway = gateway
        self._discoverGateway = discoverGateway
        self._clientFactory = clientFactory
        self._announcements = announcements or self._defaultAnnouncements
        self._holdOff = holdOff
        self._healthInterval = healthInterval
        self._gatewayCheckInterval = gatewayCheckInterval
        self._allowPublicAddress = allowPublicAddress
        self.gateway: IPv4Address | None = None
        #: The mapper of the gateway in use, and its watch.
        self._client: IPortMapper | None = None
        self._watch: GatewayWatch | None = None
        self._announcer: AnnouncementProtocol | None = None
        self._announcePort: IListeningPort | None = None
        self._gatewayLoop: LoopingCall | None = None
        self._gatewayMissing = False
        #: The public address this host reaches the gateway in use from, if
        #: it was refused for it (RFC 6886 s3); checked again with the
        #: gateway.
        self._refusedFrom: IPAddress | None = None

    def _defaultClient(self, gateway: IPv4Address) -> IPortMapper:
        from ..natpmp.client import listenClient

        return listenClient(
            self._reactor,  # type: ignore[arg-type]
            gateway,
            monotonic=self._monotonic,
        )

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

    def _startFollowing(self) -> None:
        self._announcer = AnnouncementProtocol(
            self.gateway,  # type: ignore[arg-type]
            self._announced,
            clock=self._reactor,
        )
        self._announcePort = self._announcements(self._announcer)
        gateway = self._fixedGateway or self._discover()
        if gateway is not None:
            self._useGateway(gateway)
        loop = self._gatewayLoop = LoopingCall(self._checkGateway)
        loop.clock = self._reactor
        loop.start(self._gatewayCheckInterval, now=False).addErrback(
            lambda failure: log.failure("periodic check failed", failure)
        )

    def _stopFollowing(self) -> Deferred[object]:
        if self._gatewayLoop is not None and self._gatewayLoop.running:
            self._gatewayLoop.stop()
        self._gatewayLoop = None
        port, self._announcePort = self._announcePort, None
        self._announcer = None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening)

    def _quiesce(self) -> None:
        """
        Cancel everything scheduled or pending: every request made of the
        mapper (the last made first, so that cancelling the one in flight
        sends none of those queued behind it) and nothing more asked, the
        re-mapping and the probes, then the keepers' timers.
        """
        if self._watch is not None:
            self._watch.stop()
        for keeper in self._keepers.values():
            keeper.pause()

    def _forgetGateway(self) -> Deferred[None]:
        self.gateway = None
        client, self._client = self._client, None
        self._watch = None
        # A new run says again that there is no gateway.
        self._gatewayMissing = False
        self._refusedFrom = None
        return self._releaseClient(client)

    def _discover(self) -> IPv4Address | None:
        try:
            gateway = self._discoverGateway()
        except NoGatewayError as e:
            if not self._gatewayMissing:
                log.warn("no gateway: {error}", error=str(e))
                self._gatewayMissing = True
                for keeper in self._keepers.values():
                    keeper.error = e
                    self._changed(keeper)
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
        if not self._privateHere(client, gateway):
            self._releaseClient(client).addErrback(
                lambda f: log.failure("stopping the client failed", f)
            )
            return
        self._client = client
        watch = self._watch = GatewayWatch(
            self._reactor,
            client,
            self._keepers.values,
            holdOff=self._holdOff,
            monotonic=self._monotonic,
            healthInterval=self._healthInterval,
            changed=self._changed,
            describe=lambda: "; ".join(
                s.describe()
                for s in self.states()  # type: ignore[attr-defined]
            ),
        )
        watch.start()
        for keeper in list(self._keepers.values()):
            keeper.start(watch.mapper, watch.context)

    def _privateHere(self, client: IPortMapper, gateway: IPv4Address) -> bool:
        """
        RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
        address, here the one it reaches the gateway from, is private.
        Warn when it is not, and go ahead only if allowed to.

        @return: whether to use C{client}.
        """
        address = client.sourceAddress()
        if address is None:
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
        if self._allowPublicAddress:
            log.warn("{error}; mapping anyway, as allowed", error=str(error))
            return True
        self._refusedFrom = address
        if address == refused:
            # Said already, and the states tell it.
            return False
        log.warn("{error}; mapping nothing", error=str(error))
        for keeper in self._keepers.values():
            keeper.error = error
            self._changed(keeper)
        return False

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
        self._quiesce()
        self._client = self._watch = None
        for keeper in self._keepers.values():
            keeper.forget(ports=True)
        if oldClient is not None:
            # The old gateway may still be reachable (a second router on the
            # same network): delete the mappings there, then let go of its
            # mapper.  An old gateway out of reach costs only the deletions'
            # few seconds, while the new one is already asked.
            deleted = self._deleteAll(oldClient, held, "leaving", unconfirmed)
            deleted.addBoth(lambda _: self._releaseClient(oldClient)).addErrback(
                lambda f: log.failure("stopping the old client failed", f)
            )
        self.gateway = gateway
        for keeper in self._keepers.values():
            self._changed(keeper)
        self._useGateway(gateway)
