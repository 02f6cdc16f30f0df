# -*- test-case-name: tests.test_gatewaytap -*-
"""
C{twistd natpmp-gateway}: run a NAT-PMP (RFC 6886) and PCP (RFC 6887)
gateway with an in-memory backend, to try clients without a router, or
with nftables, as a router's daemon (L{twisted_natpmp._gatewaytapnft})::

    twistd -n natpmp-gateway --listen 10.77.0.1/24 --external-address 192.0.3.1

This module is imported whenever C{twistd} lists its plugins, so it imports
only what option parsing needs; the server is imported by L{makeService}.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_interface,
    ip_network,
)
from typing import TYPE_CHECKING

from twisted.python import usage

from ._gatewaytapnft import (
    BACKEND_PARAMETERS,
    checkBackend,
    gatewayArguments,
    nftablesService,
)
from ._parse import MAX_PORT, MAX_UINT32, optionValue, parseInteger
from .server._ratelimit import DEFAULT_REQUEST_BURST, DEFAULT_REQUEST_RATE
from .server.table import (
    DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MAPPINGS,
    DEFAULT_MAX_MAPPINGS_PER_CLIENT,
    DEFAULT_MAX_PORT,
    DEFAULT_MIN_LIFETIME,
    DEFAULT_MIN_PORT,
)

if TYPE_CHECKING:
    from twisted.application.service import IService
    from twisted.python.failure import Failure


def interfaceNetwork(
    address: IPv4Address | IPv6Address,
) -> IPv4Network | IPv6Network | None:
    """
    The network of the local interface that has C{address}, from its
    netmask, or L{None} if no interface has it.
    """
    from .server._internalport import interfaceWith

    interface = interfaceWith(address)
    return None if interface is None else interface.address.network


def _integer(option: str, value: str, low: int, high: int) -> int:
    """
    The whole number given as C{--option}, from C{low} to C{high}.

    @raise usage.UsageError: it is not; the one line names the option.
    """
    return optionValue(
        option, value, lambda text: parseInteger(text, low, high), separator=":"
    )


#: The widest network --listen accepts as internal (IPv4, IPv6).
_SHORTEST_PREFIX = 8
_SHORTEST_PREFIX6 = 32


class Options(usage.Options):
    """
    The options of C{twistd natpmp-gateway}.
    """

    synopsis = (
        "--listen IP[/PREFIX] [--listen ...] [--external-address IP]"
        " [--min-port N] [--max-port N] [--min-lifetime S] [--max-lifetime S]"
        " [--max-mappings-per-client N] [--max-mappings N] [--rate-limit N]"
        " [--rate-burst N] [--pcp | --no-pcp] [--allow-third-party NETWORK ...]"
    )
    longdesc = (
        "Run a NAT-PMP (RFC 6886) and PCP (RFC 6887) gateway on UDP port 5351"
        " of each --listen address, serving clients in that address's network"
        " (given as a prefix, or else the netmask of the interface that has"
        " the address) whose requests arrive on the interface that has the"
        " address; both protocols share one mapping table.  IPv6 --listen"
        " addresses serve PCP only (a MAP opens a pinhole).  Mappings are kept"
        " in memory (--backend memory, the default), or made real forwarding"
        " rules with nftables (--backend nftables --external-interface IF)."
    )
    optFlags = [
        ["pcp", None, "Answer PCP (RFC 6887) too (the default)."],
        ["no-pcp", None, "Answer NAT-PMP only: PCP clients are told to fall back."],
    ]
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
            "min-lifetime",
            None,
            str(DEFAULT_MIN_LIFETIME),
            "The shortest PCP mapping lifetime to grant, in seconds (RFC 6887"
            " s15; NAT-PMP grants what it is asked, up to --max-lifetime).",
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
        *BACKEND_PARAMETERS,
    ]

    #: Finds the network of a --listen address given without a prefix
    #: (replaced in tests).
    lookupNetwork: Callable[
        [IPv4Address | IPv6Address], IPv4Network | IPv6Network | None
    ] = staticmethod(interfaceNetwork)

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["allow-third-party"] = []

    def opt_allow_third_party(self, value: str) -> None:
        """
        A network whose hosts may ask for mappings for other internal hosts
        with PCP's THIRD_PARTY option (RFC 6887 s13.1), e.g. 10.77.0.5/32
        (repeatable; nobody by default).
        """
        try:
            network = ip_network(value)
        except ValueError:
            raise usage.UsageError(
                f"--allow-third-party: {value!r} is not a network (address/prefix"
                " with no host bits)"
            ) from None
        self["allow-third-party"].append(network)

    def opt_listen(self, value: str) -> None:
        """
        An internal address to serve on, e.g. 10.77.0.1/24 (repeatable).
        """
        try:
            interface: IPv4Interface | IPv6Interface = ip_interface(value)
        except ValueError:
            raise usage.UsageError(
                f"--listen: {value!r} is not an IP address[/prefix]"
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
            interface = ip_interface(f"{address}/{network.prefixlen}")
        shortest = (
            _SHORTEST_PREFIX6
            if isinstance(interface, IPv6Interface)
            else _SHORTEST_PREFIX
        )
        if interface.network.prefixlen < shortest:
            # RFC 6886 s3.3: only clients on the internal networks are served;
            # a /0 would make every address internal.
            raise usage.UsageError(
                f"--listen: {value!r} is wider than /{shortest}: too large"
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
        for option in ("min-lifetime", "max-lifetime"):
            self[option] = _integer(option, self[option], 1, MAX_UINT32)
        if self["pcp"] and self["no-pcp"]:
            raise usage.UsageError("--pcp and --no-pcp contradict each other")
        self["pcp"] = not self["no-pcp"]
        if self["pcp"] and self["min-lifetime"] > self["max-lifetime"]:
            raise usage.UsageError(
                f"--min-lifetime {self['min-lifetime']} is above --max-lifetime"
                f" {self['max-lifetime']}"
            )
        if not self["pcp"]:
            if self["allow-third-party"]:
                raise usage.UsageError("--allow-third-party needs PCP (not --no-pcp)")
            for interface in self["listen"]:
                if isinstance(interface, IPv6Interface):
                    # RFC 6886 is IPv4's; PCP serves IPv6.
                    raise usage.UsageError(
                        f"--listen: {interface} is IPv6, served by PCP only"
                        " (not --no-pcp)"
                    )
        for option in ("max-mappings-per-client", "max-mappings", "rate-burst"):
            self[option] = _integer(option, self[option], 1, MAX_UINT32)
        self["rate-limit"] = _integer("rate-limit", self["rate-limit"], 0, MAX_UINT32)
        checkBackend(self)


def _cannotStart(failure: Failure) -> None:
    """
    The backend could not be made ready: say why in one line and stop.
    """
    from twisted.internet import reactor
    from twisted.logger import Logger

    Logger().critical(
        "natpmp-gateway: cannot start the backend: {error}", error=str(failure.value)
    )
    reactor.stop()  # type: ignore[attr-defined]


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
            self.started.addErrback(_cannotStart)

    if options["backend"] == "nftables":
        return nftablesService(reactor, options, CommandLineGateway)
    return CommandLineGateway(
        reactor,
        options["listen"],
        options["external-address"],
        **gatewayArguments(options),
    )
