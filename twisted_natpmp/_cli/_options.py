# -*- test-case-name: tests.cli.test_options -*-
"""
The C{natpmp} command line: L{parseArguments} turns it into L{Options}, or
a bad value into a L{UsageError} whose one line names it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import NoReturn

from twisted.python.usage import UsageError

from .._parse import (
    ParseError,
    commandMessage,
    parseGateway46,
    parseLifetime,
    parseMappingProtocol,
    parsePort,
    parseSeconds,
)
from .._types import IPAddress, Transport
from ..natpmp._forwarded import FORWARDED_LIFETIME
from ..natpmp._wire import RECOMMENDED_LIFETIME, SERVER_PORT

#: The commands, as typed.
COMMANDS = ("external", "map", "unmap", "unmap-all", "forwarded-port")


@dataclass(frozen=True)
class Options:
    """
    A parsed C{natpmp} command line.

    @ivar command: C{"external"}, C{"map"}, C{"unmap"}, C{"unmap-all"} or
        C{"forwarded-port"}.
    @ivar gateway: the gateway to ask (IPv6 for PCP only); L{None} finds
        the default IPv4 gateway.
    @ivar gatewayPort: the gateway's UDP port.
    @ivar timeout: the most seconds to wait for an answer; L{None} waits as
        long as the RFC 6886 s3.1 schedule (127.75 s).
    @ivar json: print one JSON object instead of text.
    @ivar protocol: the transport to map or unmap.
    @ivar internalPort: the local port to map or unmap.
    @ivar externalPort: the external port to suggest; L{None} suggests the
        internal port, 0 lets the gateway choose.
    @ivar lifetime: the lifetime to request, in seconds.
    @ivar allowPublic: ask the gateway even when this host's address is
        public (RFC 6886 s3 says a client SHOULD NOT).
    @ivar mappingProtocol: C{"auto"} (PCP, falling back to NAT-PMP at once
        when the gateway speaks only that), C{"pcp"} or C{"natpmp"}.
    @ivar exact: fail rather than accept another external port than the
        one asked for (PCP's PREFER_FAILURE, RFC 6887 s13.2).
    @ivar nonceFile: where PCP mapping nonces are kept; L{None}: the
        per-user default (L{twisted_natpmp.pcp._nonces.defaultPath}).
    @ivar internalAddress: the address mapped for and sent from (NAT-PMP and
        PCP bind to it; for IPv6, the global address to open a pinhole for);
        L{None}: the kernel's choice.
    """

    command: str
    gateway: IPAddress | None = None
    gatewayPort: int = SERVER_PORT
    timeout: float | None = None
    json: bool = False
    protocol: Transport | None = None
    internalPort: int = 0
    externalPort: int | None = None
    lifetime: int = RECOMMENDED_LIFETIME
    allowPublic: bool = False
    mappingProtocol: str = "auto"
    exact: bool = False
    nonceFile: Path | None = None
    internalAddress: IPAddress | None = None


def _argument(what: str, parse: Callable[[str], int]) -> Callable[[str], int]:
    """
    An argparse C{type} for a number: C{parse} (from L{twisted_natpmp._parse})
    with its error worded as C{natpmp} words it, naming the value C{what}.
    """

    def convert(text: str) -> int:
        try:
            return parse(text)
        except ParseError as e:
            raise argparse.ArgumentTypeError(commandMessage(what, e)) from None

    return convert


_internalPort = _argument("port", parsePort)
_externalPort = _argument("external port", lambda text: parsePort(text, zero=True))
_gatewayPort = _argument("gateway port", parsePort)


def _lifetime(text: str) -> int:
    try:
        return parseLifetime(text)
    except ParseError as e:
        if e.value == 0:
            # The client refuses lifetime 0 too: deleting is its own request.
            raise argparse.ArgumentTypeError(
                "lifetime 0 would delete the mapping; use 'natpmp unmap' to delete"
            ) from None
        raise argparse.ArgumentTypeError(commandMessage("lifetime", e)) from None


def _timeout(text: str) -> float:
    try:
        return parseSeconds(text)
    except ParseError as e:
        raise argparse.ArgumentTypeError(commandMessage("timeout", e)) from None


def _gateway(text: str) -> IPAddress:
    try:
        return parseGateway46("gateway", text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _internalAddress(text: str) -> IPAddress:
    try:
        return ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"internal address {text!r} is not an IPv4 or IPv6 address"
        ) from None


def _mappingProtocol(text: str) -> str:
    try:
        return parseMappingProtocol("protocol", text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _protocol(text: str) -> Transport:
    try:
        return Transport.fromLabel(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"protocol {text!r} is not tcp or udp"
        ) from None


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose errors are a L{UsageError} with a one-line
    message, not a usage dump and C{sys.exit}.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


_DESCRIPTION = """\
Ask a PCP (RFC 6887) or NAT-PMP (RFC 6886) gateway for its external
address, or to map or unmap a port of this host.  By default PCP is asked
first and NAT-PMP used at once if the gateway speaks only that.
"""

#: Where PCP nonces are kept unless --nonce-file says otherwise.
NONCE_FILE_HELP = (
    "where the nonces of PCP mappings are kept, so that a later unmap (another"
    " process) can delete what map made (default:"
    " $XDG_STATE_HOME/twisted-natpmp/pcp-nonces.json, else"
    " ~/.local/state/twisted-natpmp/pcp-nonces.json)"
)

_EPILOG = """\
exit codes: 0 success; 1 the gateway refused, did not answer, or could not
be found or reached; 2 bad arguments; 130 interrupted.
"""

UNMAP_ALL_HELP = (
    "delete all of this host's mappings of a protocol (some gateways,"
    " miniupnpd among them, delete those of the other protocol too)"
)


FORWARDED_HELP = (
    "ask a VPN gateway (ProtonVPN: --gateway 10.2.0.1) for its forwarded"
    " public port, for udp and tcp (NAT-PMP, internal port 0 with a lifetime)"
)


class ShowVersion(Exception):
    """
    C{--version} was given: L{twisted_natpmp._cli.main} prints the version.
    """


class _VersionAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        raise ShowVersion()


def _addCommonOptions(parser: argparse.ArgumentParser) -> None:
    """
    The options every command takes, before or after the command name.  They
    default to C{argparse.SUPPRESS}, so that a subcommand's copy left out
    does not reset a value given before the command name; the real defaults
    are the main parser's (L{_buildParser}).
    """
    parser.add_argument(
        "--gateway",
        type=_gateway,
        metavar="IP",
        default=argparse.SUPPRESS,
        help="the gateway to ask, IPv4, or IPv6 for PCP (default: this host's"
        " default IPv4 gateway)",
    )
    parser.add_argument(
        "--gateway-port",
        type=_gatewayPort,
        metavar="PORT",
        dest="gatewayPort",
        default=argparse.SUPPRESS,
        help=f"the gateway's UDP port (default: {SERVER_PORT}; others are for tests)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help="give up after this many seconds (default and most: the"
        " protocol's retransmission schedule, NAT-PMP's 127.75 s (RFC 6886"
        " s3.1), PCP's 128 s (RFC 6887 s8.1.1))",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON object instead of text, also on failure",
    )
    parser.add_argument(
        "--allow-public",
        action="store_true",
        dest="allowPublic",
        default=argparse.SUPPRESS,
        help="ask the gateway even if this host's address is public (RFC 6886"
        " s3: NAT-PMP is for hosts behind a NAT)",
    )
    parser.add_argument(
        "--protocol",
        type=_mappingProtocol,
        dest="mappingProtocol",
        metavar="{auto,pcp,natpmp}",
        default=argparse.SUPPRESS,
        help="the port-mapping protocol (default: auto, PCP first and NAT-PMP"
        " if the gateway speaks only that)",
    )
    parser.add_argument(
        "--internal-address",
        type=_internalAddress,
        dest="internalAddress",
        metavar="IP",
        default=argparse.SUPPRESS,
        help="the address to map for and send from (NAT-PMP binds its socket"
        " to it, as forwarded-port does to the tunnel's address; PCP also"
        " names it in the request), for IPv6 the global address to open an"
        " inbound pinhole for (default: the one the kernel picks towards the"
        " gateway)",
    )
    parser.add_argument(
        "--nonce-file",
        type=Path,
        dest="nonceFile",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=NONCE_FILE_HELP,
    )


def _buildParser() -> _Parser:
    parser = _Parser(
        prog="natpmp",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _addCommonOptions(parser)
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        default=argparse.SUPPRESS,
        help="print the version and exit",
    )
    parser.set_defaults(
        gateway=None,
        gatewayPort=SERVER_PORT,
        timeout=None,
        json=False,
        allowPublic=False,
        mappingProtocol="auto",
        nonceFile=None,
        internalAddress=None,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        _addCommonOptions(sub)
        return sub

    command("external", "show the gateway's external address")

    def protocolArgument(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "protocol", type=_protocol, metavar="{tcp,udp}", help="the protocol"
        )

    def lifetimeArgument(sub: argparse.ArgumentParser, default: int) -> None:
        sub.add_argument(
            "--lifetime",
            type=_lifetime,
            default=default,
            metavar="SECONDS",
            help=f"the lifetime to ask for (default: {default}; the gateway may"
            " grant another)",
        )

    mapCommand = command("map", "map a port of this host on the gateway")
    protocolArgument(mapCommand)
    mapCommand.add_argument(
        "internalPort", type=_internalPort, metavar="INTERNAL", help="the local port"
    )
    mapCommand.add_argument(
        "--external",
        type=_externalPort,
        dest="externalPort",
        metavar="PORT",
        help="the external port to ask for (default: INTERNAL; 0: any)",
    )
    lifetimeArgument(mapCommand, RECOMMENDED_LIFETIME)
    mapCommand.add_argument(
        "--exact",
        action="store_true",
        help="fail rather than accept another external port (PCP:"
        " PREFER_FAILURE, the gateway answers CANNOT_PROVIDE_EXTERNAL; NAT-PMP:"
        " another port granted is deleted again)",
    )

    unmapCommand = command("unmap", "delete this host's mapping of a port")
    protocolArgument(unmapCommand)
    unmapCommand.add_argument(
        "internalPort", type=_internalPort, metavar="INTERNAL", help="the local port"
    )

    unmapAllCommand = command("unmap-all", UNMAP_ALL_HELP)
    protocolArgument(unmapAllCommand)

    forwardedCommand = command("forwarded-port", FORWARDED_HELP)
    lifetimeArgument(forwardedCommand, FORWARDED_LIFETIME)
    return parser


def parseArguments(argv: Sequence[str]) -> Options:
    """
    Parse a C{natpmp} command line (without the program name).

    @raise UsageError: the arguments are wrong; the one-line message names
        the offending value.
    @raise SystemExit: C{--help} was given (and printed).
    @raise ShowVersion: C{--version} was given.
    """
    namespace = _buildParser().parse_args(list(argv))
    if namespace.command == "forwarded-port":
        # VPN gateways such as ProtonVPN's forward a port over NAT-PMP.
        if namespace.mappingProtocol == "pcp":
            raise UsageError(
                "natpmp forwarded-port: error: --protocol pcp: forwarded-port"
                " speaks NAT-PMP"
            )
        namespace.mappingProtocol = "natpmp"
        if namespace.gateway is None:
            # A VPN's gateway sits behind the tunnel, not on the default route.
            raise UsageError(
                "natpmp forwarded-port: error: --gateway IP is required (the VPN"
                " gateway, e.g. 10.2.0.1)"
            )
    return Options(**vars(namespace))
