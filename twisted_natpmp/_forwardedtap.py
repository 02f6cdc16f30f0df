# -*- test-case-name: tests.test_forwardedtap -*-
"""
C{twistd natpmp --forwarded-port}: keep a VPN gateway's forwarded public
port alive (ProtonVPN: NAT-PMP on 10.2.0.1, 60 s leases) and hand it to the
application::

    twistd -n natpmp --gateway 10.2.0.1 --forwarded-port \\
        --port-file /run/forwarded_port --on-change 'my-app-rebind'

The options' checks and the service for them; L{twisted_natpmp._tap} holds
the options themselves.  This module imports only what option parsing
needs; the service is imported by L{makeForwardedService}.

Decisions, each said in one line when an option contradicts them:

  - The gateway is given (C{--gateway}), never discovered: a VPN's gateway
    sits behind the tunnel, not on the default route.  C{--internal-address}
    binds the client to the tunnel's address.
  - C{--on-change} must be a command, and C{--on-change-timeout} comes
    only with it; C{--port-file}'s directory must exist and be writable at
    start.
  - It speaks NAT-PMP, as ProtonVPN's gateway does: C{--protocol auto} and
    C{natpmp} mean NAT-PMP here, C{pcp} is refused.
  - It keeps one port, for UDP and TCP: C{--map} is refused beside it.
  - C{--lifetime} defaults to 60 s, the lease such gateways grant.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.python import usage

from ._parse import optionValue, parseNumber
from .natpmp._forwarded import FORWARDED_LIFETIME

if TYPE_CHECKING:
    from twisted.application.service import IService

__all__ = ["FORWARDED_LIFETIME", "checkForwarded", "makeForwardedService"]

#: The default and the longest --on-change-timeout, in seconds.
ON_CHANGE_TIMEOUT = 30
MAX_ON_CHANGE_TIMEOUT = 3600

#: The options only this mode takes.
FORWARDED_ONLY = ("port-file", "on-change", "on-change-timeout")


def checkForwarded(options: Any) -> None:
    """
    Check the options of C{--forwarded-port}, or that its own options are
    not given without it, and fill in its defaults.

    @raise usage.UsageError: one line naming the option.
    """
    if not options["forwarded-port"]:
        for name in FORWARDED_ONLY:
            if options[name] is not None:
                raise usage.UsageError(f"--{name} needs --forwarded-port")
        return
    if options["maps"]:
        raise usage.UsageError(
            "--forwarded-port keeps the VPN gateway's one forwarded port for"
            " UDP and TCP; it takes no --map"
        )
    gateway = options["gateway"]
    if gateway is None:
        raise usage.UsageError(
            "--forwarded-port needs --gateway (the VPN gateway, e.g. 10.2.0.1):"
            " it is not discovered"
        )
    if not isinstance(gateway, IPv4Address):
        raise usage.UsageError(
            f"--gateway {str(gateway)!r}: --forwarded-port speaks NAT-PMP, IPv4 only"
        )
    if options["protocol"] == "pcp":
        raise usage.UsageError(
            "--forwarded-port speaks NAT-PMP (as ProtonVPN's gateway does), not"
            " --protocol pcp"
        )
    address = options["internal-address"]
    if address is not None and not isinstance(address, IPv4Address):
        raise usage.UsageError(
            f"--internal-address {str(address)!r}: --forwarded-port binds an IPv4"
            " address (the tunnel's)"
        )
    command = options["on-change"]
    if command is not None and not command.strip():
        raise usage.UsageError(f"--on-change {command!r}: the command is empty")
    timeout = options["on-change-timeout"]
    if timeout is not None and command is None:
        raise usage.UsageError("--on-change-timeout needs --on-change")
    options["on-change-timeout"] = optionValue(
        "on-change-timeout",
        str(ON_CHANGE_TIMEOUT) if timeout is None else timeout,
        lambda text: parseNumber(text, 0.1, MAX_ON_CHANGE_TIMEOUT),
    )
    if options["port-file"] is not None:
        checkPortFile(options["port-file"])


def checkPortFile(text: str) -> None:
    """
    The C{--port-file}'s directory must exist and be writable now, so that
    a wrong path is said at start, not at the first grant.

    @raise usage.UsageError: one line naming the path.
    """
    directory = Path(text).parent
    if not directory.is_dir():
        raise usage.UsageError(
            f"--port-file {text!r}: directory {str(directory)!r} does not exist"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise usage.UsageError(
            f"--port-file {text!r}: directory {str(directory)!r} is not writable"
        )


def makeForwardedService(config: Any) -> IService:
    """
    The L{ForwardedPortService
    <twisted_natpmp.service.forwarded.ForwardedPortService>} for C{config},
    on the global reactor.
    """
    from twisted.internet import reactor

    from .service.forwarded import ForwardedPortService

    address = config["internal-address"]
    return ForwardedPortService(
        reactor,
        config["gateway"],
        lifetime=config["lifetime"],
        portFile=config["port-file"],
        onChange=config["on-change"],
        onChangeTimeout=config["on-change-timeout"],
        interface="" if address is None else str(address),
        allowPublicAddress=bool(config["allow-public"]),
    )
