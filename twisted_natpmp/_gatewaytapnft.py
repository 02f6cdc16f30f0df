# -*- test-case-name: tests.test_gatewaytapnft -*-
"""
The C{--backend} options of C{twistd natpmp-gateway}: the in-memory table
(the default) or real forwarding with nftables::

    twistd -n natpmp-gateway --backend nftables --external-interface wan0 \\
        --listen 10.77.0.1/24 [--nft-table NAME] [--forward-chain inet:filter:forward]

Imported whenever C{twistd} lists its plugins: only option checking here;
the backend is imported by L{nftablesService}.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from twisted.python import usage

if TYPE_CHECKING:
    from twisted.application.service import IService

    from .server import GatewayService

__all__ = ["BACKEND_PARAMETERS", "checkBackend", "nftablesService"]

#: The backends C{--backend} names.
BACKENDS = ("memory", "nftables")

#: The options, for the C{optParameters} of the gateway's options.
BACKEND_PARAMETERS: list[list[Any]] = [
    [
        "backend",
        None,
        "memory",
        "Where mappings go: memory (kept in a table, nothing forwarded) or"
        " nftables (real forwarding rules, on Linux; needs root).",
    ],
    [
        "external-interface",
        None,
        None,
        "With --backend nftables: the interface whose arriving packets are"
        " forwarded, and whose IPv4 address is the external address (followed"
        " when it changes) unless --external-address is given.",
    ],
    [
        "nft-table",
        None,
        "twisted_natpmp",
        "With --backend nftables: the name of our own nftables table (family"
        " inet), made afresh on start and deleted on stop.",
    ],
    [
        "forward-chain",
        None,
        None,
        "With --backend nftables: FAMILY:TABLE:CHAIN of the host's forward"
        " chain (e.g. inet:filter:forward) to add an accept rule for our"
        " mappings to, removed on stop.  Without it the host's firewall must"
        " accept DNATed flows itself (ct status dnat accept).",
    ],
    ["nft", None, "nft", "The nft program (a path, or a name in PATH)."],
    [
        "conntrack",
        None,
        "conntrack",
        "The conntrack program, which ends the flows through a mapping that has gone.",
    ],
]

_NFTABLES_ONLY = ("external-interface", "forward-chain")


def _program(option: str, value: str) -> str:
    found = shutil.which(value)
    if found is None:
        raise usage.UsageError(f"--{option}: {value!r} is not a program found")
    return found


def checkBackend(options: usage.Options) -> None:
    """
    Check the backend options of C{options} (after its own checks).

    @raise usage.UsageError: one is bad, in one line naming it.
    """
    from .server.backends.nftables._names import (
        ForwardChain,
        checkInterface,
        checkName,
    )

    backend = options["backend"]
    if backend not in BACKENDS:
        raise usage.UsageError(f"--backend: {backend!r} is not memory or nftables")
    if backend == "memory":
        for option in _NFTABLES_ONLY:
            if options[option] is not None:
                raise usage.UsageError(f"--{option} needs --backend nftables")
        return
    interface = options["external-interface"]
    if interface is None:
        raise usage.UsageError("--backend nftables needs --external-interface")
    for option, check in (
        ("external-interface", checkInterface),
        ("nft-table", lambda name: checkName("table", name)),
        ("forward-chain", ForwardChain.parse),
    ):
        if options[option] is not None:
            try:
                check(options[option])
            except ValueError as e:
                raise usage.UsageError(f"--{option}: {e}") from None
    options["nft"] = _program("nft", options["nft"])
    options["conntrack"] = _program("conntrack", options["conntrack"])


def nftablesService(
    reactor: Any, options: usage.Options, gatewayClass: type[GatewayService]
) -> IService:
    """
    The gateway over nftables that C{options} describe.
    """
    from .server.backends.nftables._service import nftablesGateway

    return nftablesGateway(
        reactor,
        gatewayClass,
        options["external-interface"],
        table=options["nft-table"],
        forwardChain=options["forward-chain"],
        nft=options["nft"],
        conntrack=options["conntrack"],
        externalAddress=options["external-address"],
        listen=options["listen"],
        **gatewayArguments(options),
    )


def gatewayArguments(options: usage.Options) -> dict[str, Any]:
    """
    The L{GatewayService} arguments every backend shares, from C{options}.
    """
    return {
        "minPort": options["min-port"],
        "maxPort": options["max-port"],
        "maxLifetime": options["max-lifetime"],
        "maxMappingsPerClient": options["max-mappings-per-client"],
        "maxMappings": options["max-mappings"],
        "requestRate": options["rate-limit"] or None,
        "requestBurst": options["rate-burst"],
        "pcp": options["pcp"],
        "minLifetime": options["min-lifetime"],
        "allowThirdParty": options["allow-third-party"],
    }
