"""
C{twistd natpmp}: keep ports of this host mapped on the NAT-PMP gateway for
as long as it runs, and delete them when it stops::

    twistd -n natpmp --map udp:5000 --map tcp:8080:80

This module is imported when C{twistd} lists its plugins' options, so it
imports only what option parsing needs; the service is imported by
L{makeService}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from twisted.python import usage

from ._wire import RECOMMENDED_LIFETIME, Protocol

if TYPE_CHECKING:
    from twisted.application.service import IService

_MAX32 = 2**32 - 1
_MAP_FORMAT = (
    "PROTO:INTERNAL[:EXTERNAL], PROTO udp or tcp, INTERNAL 1-65535, EXTERNAL"
    " 0-65535 (0: the gateway chooses)"
)

#: A parsed --map: protocol, internal port, suggested external port.
MapSpec = tuple[Protocol, int, "int | None"]


def parseMap(value: str) -> MapSpec:
    """
    Parse a C{--map} value, C{PROTO:INTERNAL[:EXTERNAL]}.  An external
    port of 0 asks the gateway to choose one (RFC 6886 s3.3), as
    C{natpmp map --external 0} does.

    @raise usage.UsageError: one line naming the bad value.
    """
    parts = value.split(":")
    protocols = {p.label: p for p in Protocol}
    try:
        if len(parts) not in (2, 3) or parts[0].lower() not in protocols:
            raise ValueError
        ports = [int(part, 10) for part in parts[1:]]
        if not 1 <= ports[0] <= 0xFFFF or not all(0 <= p <= 0xFFFF for p in ports):
            raise ValueError
    except ValueError:
        raise usage.UsageError(
            f"--map {value!r} is not {_MAP_FORMAT} (e.g. udp:5000 or tcp:8080:80)"
        ) from None
    external = ports[1] if len(ports) == 2 else None
    return (protocols[parts[0].lower()], ports[0], external)


def _number(option: str, value: str, low: float, high: float, integer: bool) -> float:
    try:
        number = int(value, 10) if integer else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        kind = "a whole number" if integer else "a number"
        raise usage.UsageError(
            f"--{option} {value!r} is not {kind} from {low:.0f} to {high:.0f}"
        )
    return number


class Options(usage.Options):
    """
    The options of C{twistd natpmp}.
    """

    synopsis = (
        "--map PROTO:INTERNAL[:EXTERNAL] [--map ...] [--gateway IP]"
        " [--lifetime S] [--health-interval S] [--allow-public]"
    )
    longdesc = (
        "Keep ports of this host mapped on the NAT-PMP (RFC 6886) gateway:"
        " renew them, re-map them when the gateway reboots or announces a new"
        " address, follow a change of default gateway, and delete them on exit."
    )
    optFlags = [
        [
            "allow-public",
            None,
            "Map even when this host reaches the gateway from an address that"
            " is not private (RFC 1918, 100.64/10, loopback); by default it"
            " then maps nothing, as RFC 6886 s3 asks.",
        ],
    ]
    optParameters = [
        [
            "gateway",
            "g",
            None,
            "The gateway's IPv4 address (default: the default gateway, followed"
            " as it changes).",
        ],
        [
            "lifetime",
            "l",
            str(RECOMMENDED_LIFETIME),
            "Lifetime to request for each mapping, in seconds (renewed at half"
            " the lifetime granted).",
        ],
        [
            "health-interval",
            None,
            "60",
            "Seconds between checks that the gateway kept its state.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        maps: list[MapSpec] = []
        self["maps"] = maps

    def opt_map(self, value: str) -> None:
        """A port to keep mapped, PROTO:INTERNAL[:EXTERNAL]; repeatable."""
        spec = parseMap(value)
        if any(spec[:2] == other[:2] for other in self["maps"]):
            raise usage.UsageError(
                f"--map {value!r}: {spec[0].label} port {spec[1]} is mapped twice"
            )
        self["maps"].append(spec)

    opt_m = opt_map

    def parseArgs(self, *args: str) -> None:
        """
        No positional arguments: a port is given with C{--map}.
        """
        if args:
            hint = " ".join(f"--map {arg}" for arg in args)
            raise usage.UsageError(
                f"unexpected argument {args[0]!r}: ports to map are given as"
                f" --map PROTO:INTERNAL[:EXTERNAL] (did you mean {hint}?)"
            )

    def postOptions(self) -> None:
        if not self["maps"]:
            raise usage.UsageError("give at least one --map PROTO:INTERNAL")
        gateway = self["gateway"]
        if gateway is not None:
            try:
                self["gateway"] = IPv4Address(gateway)
            except ValueError:
                raise usage.UsageError(
                    f"--gateway {gateway!r} is not an IPv4 address"
                ) from None
            from .discovery import unusableGateway

            why = unusableGateway(self["gateway"])
            if why is not None:
                raise usage.UsageError(
                    f"--gateway {gateway!r} cannot be a gateway's address ({why})"
                )
        self["lifetime"] = int(
            _number("lifetime", self["lifetime"], 1, _MAX32, integer=True)
        )
        self["health-interval"] = _number(
            "health-interval", self["health-interval"], 1, 86400, integer=False
        )


def makeService(config: Options) -> IService:
    """
    The L{PortMapperService} for C{config}, on the global reactor.
    """
    from twisted.internet import reactor

    from .service import MappingDeclaration, PortMapperService

    declarations = [
        MappingDeclaration(protocol, internal, external, config["lifetime"])
        for protocol, internal, external in config["maps"]
    ]
    return PortMapperService(
        reactor,  # type: ignore[arg-type]
        declarations,
        gateway=config["gateway"],
        healthInterval=config["health-interval"],
        allowPublicAddress=bool(config["allow-public"]),
    )
