# -*- test-case-name: tests.server.nftables.test_service -*-
"""
What C{twistd natpmp-gateway --backend nftables} runs beside the gateway:
L{ExternalInterfaceService} follows the external interface's address and
the router's own ports on it; L{nftablesGateway} builds the backend and
both services.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, ip_interface
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service

from ._address import DEFAULT_POLL_INTERVAL, AddressWatcher, interfaceAddress
from ._ownports import ownPorts

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from ..._service import GatewayService

__all__ = ["CHECK_EVERY", "ExternalInterfaceService"]

#: Every how many polls of the interface the backend's table is looked for.
CHECK_EVERY = 5


class ExternalInterfaceService(Service):
    """
    Reads the external interface's IPv4 address every few seconds and gives
    the gateway each new one (which announces it; none: result 3), unless
    the address is fixed; and each time keeps the ports the router itself
    uses on that address out of the gateway's grants; every
    L{CHECK_EVERY} polls, has the gateway look for its table (a firewall
    reload may have deleted it).
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: GatewayService,
        interface: str,
        *,
        fixed: IPv4Address | None = None,
        read: Callable[[str], IPv4Address | None] = interfaceAddress,
        ports: Callable[[IPv4Address | None], frozenset[int]] = ownPorts,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        """
        @param fixed: the external address given (C{--external-address}),
            which the interface's does not replace.
        @param read: reads an interface's address.
        @param ports: the router's own ports on an address.
        """
        self._gateway = gateway
        self._fixed = fixed
        self._ports = ports
        self._polls = 0
        if fixed is not None:
            read = _always(fixed)
        self.watcher = AddressWatcher(
            clock,
            interface,
            self._changed,
            read=read,
            interval=interval,
            polled=self._reserve,
        )

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.watcher.start()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.watcher.stop()

    def _changed(self, address: IPv4Address | None) -> None:
        if self._gateway.externalAddress != address:
            self._gateway.setExternalAddress(address)

    def _reserve(self, address: IPv4Address | None) -> None:
        gateway = self._gateway.gateway
        if gateway is not None:
            gateway.table.reserve(self._ports(address))
            self._polls += 1
            if self._polls % CHECK_EVERY == 0:
                # A firewall reload may have deleted our table.
                gateway.checkForwarding()


def _always(address: IPv4Address) -> Callable[[str], IPv4Address | None]:
    return lambda interface: address


def nftablesGateway(
    reactor: Any,
    gatewayClass: type[GatewayService],
    interface: str,
    *,
    table: str,
    forwardChain: str | None,
    nft: str,
    conntrack: str | None,
    externalAddress: IPv4Address | None,
    **gatewayArguments: Any,
) -> MultiService:
    """
    The gateway over an L{NftablesBackend
    <twisted_natpmp.server.backends.nftables.NftablesBackend>} forwarding
    from C{interface}, and the L{ExternalInterfaceService} beside it.

    @param gatewayClass: L{GatewayService} or a subclass.
    @param gatewayArguments: the rest of C{gatewayClass}'s arguments.
    @raise ValueError: C{interface}, C{table} or C{forwardChain} is bad.
    """
    from ..._entries import DEFAULT_MAX_PORT, DEFAULT_MIN_PORT
    from ._process import ProcessRunner
    from ._ruleset import ForwardChain, Ruleset
    from .backend import NftablesBackend

    chain = None if forwardChain is None else ForwardChain.parse(forwardChain)
    ruleset = Ruleset(interface, table, chain)

    def externalAddresses() -> frozenset[IPv4Address]:
        # The flows an earlier run left went to the interface's address,
        # which --external-address (the address announced) may not be.
        found = (gateway.externalAddress, interfaceAddress(interface))
        return frozenset(a for a in found if a is not None)

    backend = NftablesBackend(
        ruleset,
        ProcessRunner(reactor, reactor, nft),
        None if conntrack is None else ProcessRunner(reactor, reactor, conntrack),
        internalNetworks=[
            ip_interface(i).network for i in gatewayArguments.get("listen", ())
        ],
        portRange=(
            gatewayArguments.get("minPort", DEFAULT_MIN_PORT),
            gatewayArguments.get("maxPort", DEFAULT_MAX_PORT),
        ),
        externalAddresses=externalAddresses,
    )
    first = (
        externalAddress if externalAddress is not None else interfaceAddress(interface)
    )
    gateway = gatewayClass(
        reactor, backend=backend, externalAddress=first, **gatewayArguments
    )
    top = MultiService()
    gateway.setServiceParent(top)  # type: ignore[no-untyped-call]
    watching = ExternalInterfaceService(
        reactor, gateway, interface, fixed=externalAddress
    )
    watching.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top
