# -*- test-case-name: tests.service.test_forwarded -*-
"""
L{ForwardedPortService}: keep a VPN gateway's forwarded public port alive
(ProtonVPN's NAT-PMP port forwarding on 10.2.0.1, 60 s leases) and hand it
to the application: a port file written atomically, a command run with the
port in its environment, and L{IMappingObserver}s told.

The gateway is given, never discovered: a VPN's gateway sits behind the
tunnel, not on the default route.  The service speaks NAT-PMP (RFC 6886),
as ProtonVPN's gateway does, through
L{NATPMPClient.forwardedPort <twisted_natpmp.natpmp.client.NATPMPClient.forwardedPort>};
the keeping is L{twisted_natpmp.service._forwardedkeeper}'s.

What observers hear: for each change (a new public port, a loss, a port
back), one L{MappingState} for UDP and one for TCP, whose declaration's
internal port is the public port (the VPN gateway forwards the public port
to the same port on the tunnel address, where the application listens),
and whose C{externalPort} is L{None} when the port was lost.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from .._types import ProtocolName, Transport
from ..discovery import isPrivateAddress, localAddress
from ..interfaces import IForwardedPortMapper, IMappingObserver
from ..natpmp._forwarded import FORWARDED_LIFETIME
from ._forwardedkeeper import ForwardedPort, ForwardedPortKeeper, describe
from ._onchange import DEFAULT_TIMEOUT, ChangeCommand, portEnvironment
from ._portfile import writePortFile
from .declarations import MappingDeclaration, MappingState, PublicAddressError

__all__ = ["ForwardedPort", "ForwardedPortService"]

log = Logger()

#: Makes the listening mapper: (reactor, gateway, gatewayPort, interface).
MapperFactory = Callable[[Any, IPv4Address, int, str], IForwardedPortMapper]


def listenNATPMP(
    reactor: Any, gateway: IPv4Address, gatewayPort: int, interface: str
) -> IForwardedPortMapper:
    """
    The default L{MapperFactory}: a NAT-PMP client bound to C{interface}
    (the tunnel's address, or all).
    """
    from ..natpmp.client import listenClient

    return listenClient(reactor, gateway, gatewayPort=gatewayPort, interface=interface)


class ForwardedPortService(Service):
    """
    Keeps the forwarded public port of a VPN gateway, for UDP and TCP, and
    tells of every change.

    @ivar gateway: the VPN gateway.
    @ivar current: the port held, or L{None}.
    @ivar keeper: the L{ForwardedPortKeeper}, once started.
    @ivar portFile: where the port is written, or L{None}.
    @ivar command: the L{ChangeCommand}, or L{None}.
    """

    def __init__(
        self,
        reactor: Any,
        gateway: IPv4Address | str,
        *,
        lifetime: int = FORWARDED_LIFETIME,
        portFile: Path | str | None = None,
        onChange: str | None = None,
        onChangeTimeout: float = DEFAULT_TIMEOUT,
        gatewayPort: int = 5351,
        interface: str = "",
        mapperFactory: MapperFactory = listenNATPMP,
        allowPublicAddress: bool = False,
        findLocalAddress: Callable[[IPv4Address], IPv4Address] = localAddress,
    ) -> None:
        """
        @param reactor: provides C{IReactorUDP}, C{IReactorTime} and, for
            C{onChange}, C{IReactorProcess}.
        @param gateway: the VPN gateway's IPv4 address (ProtonVPN: 10.2.0.1).
        @param lifetime: the lease to ask for, in seconds.
        @param portFile: where the public port is written on each change.
        @param onChange: a shell command run on each change of the port.
        @param onChangeTimeout: seconds before that command is killed.
        @param interface: the local address to send from (the tunnel's).
        @param mapperFactory: makes the listening mapper.
        @param allowPublicAddress: keep the port even when this host reaches
            the gateway from an address that is not private; by default the
            service then keeps nothing and says why (RFC 6886 s3: NAT-PMP
            SHOULD be used only from a private address).
        @param findLocalAddress: this host's address towards the gateway,
            when C{interface} does not name it.
        """
        super().__init__()
        self._reactor = reactor
        self.gateway = IPv4Address(gateway)
        self.lifetime = lifetime
        self.portFile = None if portFile is None else Path(portFile)
        self.command = (
            None
            if onChange is None
            else ChangeCommand(reactor, onChange, onChangeTimeout)
        )
        self._gatewayPort = gatewayPort
        self._interface = interface
        self._mapperFactory = mapperFactory
        self._allowPublic = allowPublicAddress
        self._findLocalAddress = findLocalAddress
        self._observers: list[IMappingObserver] = []
        self._mapper: IForwardedPortMapper | None = None
        self.keeper: ForwardedPortKeeper | None = None
        self.current: ForwardedPort | None = None
        self._published: ForwardedPort | None = None

    def addObserver(self, observer: IMappingObserver) -> None:
        """
        Call C{observer.mappingChanged(state)} for UDP and TCP on every
        change.
        """
        self._observers.append(observer)

    def removeObserver(self, observer: IMappingObserver) -> None:
        """
        Stop calling C{observer}.
        """
        self._observers.remove(observer)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        problem = self._publicAddress()
        if problem is not None:
            log.error(
                "not keeping the forwarded port: {error}; --allow-public asks anyway",
                error=str(problem),
            )
            return
        self._mapper = self._mapperFactory(
            self._reactor, self.gateway, self._gatewayPort, self._interface
        )
        log.info(
            "keeping the forwarded port of VPN gateway {gateway} (NAT-PMP,"
            " {lifetime} s leases)",
            gateway=str(self.gateway),
            lifetime=self.lifetime,
        )
        self.keeper = ForwardedPortKeeper(
            self._reactor, self._mapper, self._changed, lifetime=self.lifetime
        )
        self.keeper.start()

    def stopService(self) -> Any:
        """
        Stop keeping the port: stop the keeper, kill a running C{--on-change}
        command (and wait for it, a few seconds at most), remove the port
        file written, and say what is left at the gateway.

        @return: a L{Deferred <twisted.internet.defer.Deferred>} that
            fires when the client and the command are done.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        if self.keeper is not None:
            self.keeper.stop()
        held, self.current = self.current, None
        if held is not None:
            left = max(0.0, held.expires - self._reactor.seconds())
            log.info(
                "leaving forwarded port {port} ({transports}) to expire at the"
                " gateway within {left:g} s; not deleted: internal port 0 with"
                " lifetime 0 would delete all (RFC 6886 s3.4)",
                port=held.port,
                transports="udp/tcp" if held.samePort else f"udp; tcp {held.tcpPort}",
                left=round(left, 1),
                **describe(held),
            )
        self._removePortFile()
        waits = []
        if self.command is not None:
            waits.append(self.command.stop())
        mapper, self._mapper = self._mapper, None
        if mapper is not None:
            waits.append(mapper.stop())
        return gatherResults(waits).addCallback(lambda _: None)

    def _removePortFile(self) -> None:
        if self.portFile is None or self._published is None:
            return
        self._published = None
        try:
            self.portFile.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warn(
                "could not remove --port-file {path}: {error}",
                path=str(self.portFile),
                error=str(e),
            )
        else:
            log.info("removed --port-file {path}", path=str(self.portFile))

    def _publicAddress(self) -> PublicAddressError | None:
        # RFC 6886 s3: NAT-PMP SHOULD be used only from a private address
        # (a VPN's tunnel address is one: ProtonVPN's is 10.2.0.2).
        if self._allowPublic:
            return None
        try:
            if self._interface:
                address = IPv4Address(self._interface)
            else:
                address = self._findLocalAddress(self.gateway)
        except (OSError, ValueError):
            return None  # no route yet: the requests will say so
        if isPrivateAddress(address):
            return None
        return PublicAddressError(address, self.gateway)

    # The keeper's report

    def _changed(
        self,
        new: ForwardedPort | None,
        old: ForwardedPort | None,
        error: Exception | None,
    ) -> None:
        self.current = new
        if new is None:
            assert old is not None
            log.warn(
                "lost the forwarded port {port} of VPN gateway {gateway}: {error}",
                port=old.port,
                gateway=str(self.gateway),
                error=str(error),
            )
            self._tell(old, None, error)
            return
        previous = self._published
        if not new.samePort:
            log.warn(
                "VPN gateway {gateway} forwards UDP port {udpPort} but TCP port"
                " {tcpPort}: publishing UDP's",
                gateway=str(self.gateway),
                **describe(new),
            )
        if new.movedFrom(previous):
            log.info(
                "VPN gateway {gateway} forwards public port {port} (was {previous})",
                gateway=str(self.gateway),
                port=new.port,
                previous="none" if previous is None else previous.port,
                **describe(new),
            )
            self._published = new
            self._publish(new, previous)
        self._tell(new, new, None)

    def _publish(self, new: ForwardedPort, previous: ForwardedPort | None) -> None:
        if self.portFile is not None:
            try:
                writePortFile(self.portFile, new.port)
            except OSError as e:
                log.warn(
                    "cannot write --port-file {path}: {error}",
                    path=str(self.portFile),
                    error=str(e),
                )
        if self.command is not None:
            self.command.run(
                portEnvironment(
                    new.port,
                    new.tcpPort,
                    None if previous is None else previous.port,
                    new.externalAddress,
                    self.gateway,
                    new.lifetime,
                )
            )

    def _tell(
        self,
        port: ForwardedPort,
        held: ForwardedPort | None,
        error: Exception | None,
    ) -> None:
        for transport, number in (
            (Transport.UDP, port.udpPort),
            (Transport.TCP, port.tcpPort),
        ):
            state = MappingState(
                declaration=MappingDeclaration(transport, number, 0, self.lifetime),
                gateway=self.gateway,
                externalAddress=port.externalAddress,
                externalPort=None if held is None else number,
                lifetime=None if held is None else held.lifetime,
                expires=None if held is None else held.expires,
                error=error,
                protocolName=None if held is None else ProtocolName.NATPMP,
            )
            for observer in list(self._observers):
                try:
                    observer.mappingChanged(state)
                except Exception:
                    log.failure("observer {observer} failed", observer=repr(observer))
