# -*- test-case-name: tests.test_tap -*-
"""
C{twistd natpmp}: keep ports of this host mapped on the gateway, in PCP
(RFC 6887) or NAT-PMP (RFC 6886), for as long as it runs, and delete them
when it stops::

    twistd -n natpmp --map udp:5000 --map tcp:8080:80
    twistd -n natpmp --protocol pcp --map tcp:8443
    twistd -n natpmp --gateway 10.2.0.1 --forwarded-port --port-file PATH

(C{--forwarded-port}, a VPN gateway's forwarded port, is checked and served
by L{twisted_natpmp._forwardedtap}.)

This module is imported when C{twistd} lists its plugins' options, so it
imports only what option parsing needs; the service is imported by
L{makeService}.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import TYPE_CHECKING

from twisted.python import usage

from ._forwardedtap import (
    FORWARDED_LIFETIME,
    ON_CHANGE_TIMEOUT,
    checkForwarded,
    makeForwardedService,
)
from ._parse import (
    MAX_UINT32,
    optionValue,
    parseGateway46,
    parseInteger,
    parseMappingProtocol,
    parseNumber,
    parsePort,
)
from ._types import Transport
from .natpmp._wire import RECOMMENDED_LIFETIME

if TYPE_CHECKING:
    from twisted.application.service import IService

_MAP_FORMAT = (
    "PROTO:INTERNAL[:EXTERNAL], PROTO udp or tcp, INTERNAL 1-65535, EXTERNAL"
    " 0-65535 (0: the gateway chooses)"
)

#: The longest --health-interval, in seconds: a day.
_MAX_HEALTH_INTERVAL = 86400

#: A parsed --map: transport, internal port, suggested external port.
MapSpec = tuple[Transport, int, "int | None"]


def parseMap(value: str) -> MapSpec:
    """
    Parse a C{--map} value, C{PROTO:INTERNAL[:EXTERNAL]}.  An external
    port of 0 asks the gateway to choose one (RFC 6886 s3.3), as
    C{natpmp map --external 0} does.

    @raise usage.UsageError: one line naming the bad value.
    """
    parts = value.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        transport = Transport.fromLabel(parts[0])
        internal = parsePort(parts[1])
        external = parsePort(parts[2], zero=True) if len(parts) == 3 else None
    except ValueError:
        raise usage.UsageError(
            f"--map {value!r} is not {_MAP_FORMAT} (e.g. udp:5000 or tcp:8080:80)"
        ) from None
    return (transport, internal, external)


class Options(usage.Options):
    """
    The options of C{twistd natpmp}.
    """

    synopsis = (
        "--map PROTO:INTERNAL[:EXTERNAL] [--map ...] [--gateway IP]"
        " [--protocol auto|pcp|natpmp] [--internal-address IP]"
        " [--nonce-file PATH] [--lifetime S]"
        " [--health-interval S] [--allow-public]"
        " | --gateway IP --forwarded-port [--port-file PATH] [--on-change CMD]"
    )
    longdesc = (
        "Keep ports of this host mapped on the PCP (RFC 6887) or NAT-PMP"
        " (RFC 6886) gateway (by default PCP, falling back to NAT-PMP at once"
        " when the gateway speaks only that):"
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
        [
            "forwarded-port",
            None,
            "Keep the forwarded public port of a VPN gateway (ProtonVPN's"
            " NAT-PMP on --gateway 10.2.0.1) for UDP and TCP: internal port 0"
            " with a lifetime, instead of --map.",
        ],
    ]
    optParameters = [
        [
            "gateway",
            "g",
            None,
            "The gateway's IPv4 address, or IPv6 for PCP (default: the default"
            " gateway, followed as it changes).",
        ],
        [
            "protocol",
            None,
            "auto",
            "The port-mapping protocol: auto (PCP first, NAT-PMP if the gateway"
            " speaks only that), pcp or natpmp.",
        ],
        [
            "internal-address",
            None,
            None,
            "The address to map for and send from: NAT-PMP binds its socket"
            " to it (with --forwarded-port, the tunnel's address), PCP also"
            " names it in its requests; for IPv6 the global address to open"
            " inbound pinholes for (the default IPv6 gateway is then used by"
            " default).",
        ],
        [
            "nonce-file",
            None,
            None,
            "Where the nonces of PCP mappings are kept (default:"
            " $XDG_STATE_HOME/twisted-natpmp/pcp-nonces.json, else"
            " ~/.local/state/twisted-natpmp/pcp-nonces.json).",
        ],
        [
            "lifetime",
            "l",
            None,
            f"Lifetime to request for each mapping, in seconds (renewed at half"
            f" the lifetime granted; default {RECOMMENDED_LIFETIME}, with"
            f" --forwarded-port {FORWARDED_LIFETIME}).",
        ],
        [
            "port-file",
            None,
            None,
            "With --forwarded-port: write the public port to this file"
            " (atomically) whenever it changes.",
        ],
        [
            "on-change",
            None,
            None,
            "With --forwarded-port: a shell command run whenever the public port"
            " changes, one run at a time, with NATPMP_PUBLIC_PORT,"
            " NATPMP_PREVIOUS_PORT (empty at first), NATPMP_PUBLIC_ADDRESS,"
            " NATPMP_UDP_PORT, NATPMP_TCP_PORT, NATPMP_GATEWAY and"
            " NATPMP_LIFETIME in its environment.",
        ],
        [
            "on-change-timeout",
            None,
            None,
            f"Seconds before the --on-change command is killed, with its"
            f" children (default {ON_CHANGE_TIMEOUT}).",
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
        if not self["maps"] and not self["forwarded-port"]:
            raise usage.UsageError(
                "give at least one --map PROTO:INTERNAL, or --forwarded-port"
            )
        try:
            if self["gateway"] is not None:
                self["gateway"] = parseGateway46("--gateway", self["gateway"])
            self["protocol"] = parseMappingProtocol("--protocol", self["protocol"])
            if self["internal-address"] is not None:
                text = self["internal-address"]
                try:
                    self["internal-address"] = ip_address(text)
                except ValueError:
                    raise ValueError(
                        f"--internal-address {text!r} is not an IPv4 or IPv6 address"
                    ) from None
            if self["protocol"] == "natpmp" and ":" in str(self["gateway"] or ""):
                raise ValueError(
                    f"--gateway {str(self['gateway'])!r}: NAT-PMP speaks only IPv4"
                )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["lifetime"] is None:
            forwarded = self["forwarded-port"]
            self["lifetime"] = str(
                FORWARDED_LIFETIME if forwarded else RECOMMENDED_LIFETIME
            )
        self["lifetime"] = optionValue(
            "lifetime", self["lifetime"], lambda text: parseInteger(text, 1, MAX_UINT32)
        )
        checkForwarded(self)
        self["health-interval"] = optionValue(
            "health-interval",
            self["health-interval"],
            lambda text: parseNumber(text, 1, _MAX_HEALTH_INTERVAL),
        )


def makeService(config: Options) -> IService:
    """
    The L{PortMapperService} for C{config}, on the global reactor.
    """
    from pathlib import Path

    from twisted.internet import reactor

    from .pcp._nonces import NonceStore
    from .service import MappingDeclaration, PortMapperService

    if config["forwarded-port"]:
        return makeForwardedService(config)
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
        protocol=config["protocol"],
        internalAddress=config["internal-address"],
        nonces=None
        if config["nonce-file"] is None
        else NonceStore(Path(config["nonce-file"])),
    )
