# -*- test-case-name: tests.test_gatewaytap -*-
"""
C{twistd natpmp-gateway}: run a NAT-PMP gateway (RFC 6886) with an
in-memory backend, to try clients without a router::

    twistd -n natpmp-gateway --listen 10.77.0.1/24 --external-address 192.0.3.1

This module is imported whenever C{twistd} lists its plugins, so it imports
only what option parsing needs; the server is imported by L{makeService}.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING

from twisted.python import usage

from ._parse import MAX_PORT, MAX_UINT32, optionValue, parseInteger
from .server._ratelimit import DEFAULT_REQUEST_BURST, DEFAULT_REQUEST_RATE
from .server.table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_PORT,
)

if TYPE_CHECKING:
    from twisted.application.service import IService


def interfaceNetwork(address: IPv4Address) -> IPv4Network | None:
    """
    The network of the local interface that has C{address}, from its
    netmask, or L{None} if no interface has it.
    """
    from .server._internalport import interfaceWith

    interface = interfaceWith(address)
    if interface is None:
        return None
    network = interface.address.network
    # An IPv4 address is only ever an IPv4 interface's.
    assert isinstance(network, IPv4Network)
    return network


def _integer(option: str, value: str, low: int, high: int) -> int:
    """
    The whole number given as C{--option}, from C{low} to C{high}.

    @raise usage.UsageError: it is not; the one line names the option.
    """
    return optionValue(
        option, value, lambda text: parseInteger(text, low, high), separator=":"
    )


#: The widest network --listen accepts as internal.
_SHORTEST_PREFIX = 8


class Options(usage.Options):
    """
    The options of C{twistd natpmp-gateway}.
    """

    synopsis = (
        "--listen IP[/PREFIX] [--listen ...] [--external-address IP]"
        " [--min-port N] [--max-port N] [--max-lifetime S]"
        " [--max-mappings-per-client N] [--max-mappings N] [--rate-limit N]"
        " [--rate-burst N]"
    )
    longdesc = (
        "Run a NAT-PMP (RFC 6886) gateway on UDP port 5351 of each --listen"
        " address, serving clients in that address's network (given as a"
        " prefix, or else the netmask of the interface that has the address)"
        " whose requests arrive on the interface that has the address."
        " Mappings are kept in memory, not written to a firewall."
    )
    optParameters = [
        [
            "external-address",
            None,
            None,
            "The external IPv4 address to report and announce; without it (or"
            " with 0.0.0.0) every request but a deletion gets result 3,"
            " network failure.",
        ],
        [
            "min-port",
            None,
            str(DEFAULT_MIN_PORT),
            "The lowest external port to grant.",
        ],
        [
            "max-port",
            None,
            str(DEFAULT_MAX_PORT),
            "The highest external port to grant.",
        ],
        [
            "max-lifetime",
            None,
            str(DEFAULT_MAX_LIFETIME),
            "The longest mapping lifetime to grant, in seconds.",
        ],
        [
            "max-mappings-per-client",
            None,
            str(DEFAULT_MAX_MAPPINGS_PER_CLIENT),
            "How many mappings one client may hold (TCP and UDP together).",
        ],
        [
            "max-mappings",
            None,
            str(DEFAULT_MAX_MAPPINGS),
            "How many mappings the gateway holds at most, for all clients.",
        ],
        [
            "rate-limit",
            None,
            str(DEFAULT_REQUEST_RATE),
            "Mapping requests per second one source address may send; beyond"
            " it (and the burst) they are dropped and counted.  0 turns the"
            " limit off.",
        ],
        [
            "rate-burst",
            None,
            str(DEFAULT_REQUEST_BURST),
            "Mapping requests one source address may send at once after a quiet spell.",
        ],
    ]

    #: Finds the network of a --listen address given without a prefix
    #: (replaced in tests).
    lookupNetwork: Callable[[IPv4Address], IPv4Network | None] = staticmethod(
        interfaceNetwork
    )

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, value: str) -> None:
        """
        An internal address to serve on, e.g. 10.77.0.1/24 (repeatable).
        """
        try:
            interface = IPv4Interface(value)
        except ValueError:
            raise usage.UsageError(
                f"--listen: {value!r} is not an IPv4 address[/prefix]"
            ) from None
        address = interface.ip
        if address.is_unspecified or address.is_multicast:
            raise usage.UsageError(
                f"--listen: {value!r} is not the address of an interface"
            )
        if "/" not in value:
            network = self.lookupNetwork(address)
            if network is None:
                raise usage.UsageError(
                    f"--listen: no network interface has the address {value!r}"
                )
            interface = IPv4Interface(f"{address}/{network.prefixlen}")
        if interface.network.prefixlen < _SHORTEST_PREFIX:
            # RFC 6886 s3.3: only clients on the internal networks are served;
            # a /0 would make every address internal.
            raise usage.UsageError(
                f"--listen: {value!r} is wider than /{_SHORTEST_PREFIX}: too large"
                " to be an internal network"
            )
        if any(other.ip == address for other in self["listen"]):
            raise usage.UsageError(f"--listen: {value!r} is given twice")
        self["listen"].append(interface)

    def _externalAddress(self, value: str | None) -> IPv4Address | None:
        """
        The --external-address value: L{None} when absent or 0.0.0.0 (no
        external address yet: requests get result 3, RFC 6886 s3.5).
        """
        if value is None:
            return None
        try:
            address = IPv4Address(value)
        except ValueError:
            raise usage.UsageError(
                f"--external-address: {value!r} is not an IPv4 address"
            ) from None
        if address.is_unspecified:
            return None
        if address.is_multicast:
            raise usage.UsageError(
                f"--external-address: {value!r} cannot be an external address"
            )
        if any(interface.ip == address for interface in self["listen"]):
            # RFC 6886 s3.3: never serve requests sent to the external address.
            raise usage.UsageError(
                f"--external-address: {value!r} is also a --listen address"
            )
        for interface in self["listen"]:
            if address in interface.network:
                # RFC 6886 s3.3: the external side is never an internal network.
                raise usage.UsageError(
                    f"--external-address: {value!r} is inside the internal"
                    f" network {interface.network} of --listen"
                )
        return address

    def postOptions(self) -> None:
        if not self["listen"]:
            raise usage.UsageError("--listen is required")
        self["external-address"] = self._externalAddress(self["external-address"])
        for option in ("min-port", "max-port"):
            self[option] = _integer(option, self[option], 1, MAX_PORT)
        if self["min-port"] > self["max-port"]:
            raise usage.UsageError(
                f"--min-port {self['min-port']} is above --max-port {self['max-port']}"
            )
        self["max-lifetime"] = _integer(
            "max-lifetime", self["max-lifetime"], 1, MAX_UINT32
        )
        for option in ("max-mappings-per-client", "max-mappings", "rate-burst"):
            self[option] = _integer(option, self[option], 1, MAX_UINT32)
        self["rate-limit"] = _integer("rate-limit", self["rate-limit"], 0, MAX_UINT32)


def makeService(options: Options) -> IService:
    """
    Build the gateway service from parsed options.
    """
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError

    from .server import GatewayService

    class CommandLineGateway(GatewayService):
        """
        The gateway as the command runs it: an address it cannot bind (not
        this host's, or port 5351 taken) ends the program with one line, not
        a traceback.
        """

        def startService(self) -> None:
            try:
                super().startService()
            except CannotListenError as e:
                raise SystemExit(
                    f"natpmp-gateway: cannot listen on {e.interface}:{e.port}:"
                    f" {e.socketError}"
                ) from None

    return CommandLineGateway(
        reactor,
        options["listen"],
        options["external-address"],
        minPort=options["min-port"],
        maxPort=options["max-port"],
        maxLifetime=options["max-lifetime"],
        maxMappingsPerClient=options["max-mappings-per-client"],
        maxMappings=options["max-mappings"],
        requestRate=options["rate-limit"] or None,
        requestBurst=options["rate-burst"],
    )
