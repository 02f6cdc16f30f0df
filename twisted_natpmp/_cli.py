"""
The C{natpmp} command: ask a NAT-PMP gateway for its external address, or
to create or delete port mappings, from a shell.

L{main} parses the command line and runs L{run} under
L{twisted.internet.task.react}; L{run} takes its reactor, gateway finder and
client factory as arguments, so tests drive it on an in-memory network.

Exit codes: 0 on success; 1 when the gateway refuses, never answers, or
cannot be found or reached; 2 for bad arguments; 130 when interrupted.
Expected failures are one line on standard error, never a traceback; with
C{--json}, standard output is exactly one JSON object in every case.  While
it waits, the command says so on standard error if that is a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import IO, Any, NoReturn, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import react
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from ._types import Mapping
from ._wire import RECOMMENDED_LIFETIME, SERVER_PORT, Protocol
from .client import RETRANSMIT_TIMEOUTS, NATPMPClient, listenClient
from .discovery import (
    defaultGateway,
    isPrivateAddress,
    localAddress,
    unusableGateway,
)
from .errors import GatewayError, NATPMPError, NoGatewayError, NoResponseError

log = Logger()

_T = TypeVar("_T")

#: Exit codes of the command.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: How long to wait for the external address that C{map} shows after the
#: mapping succeeded (the gateway just answered, so a short wait will do).
_FOLLOW_UP_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)

_MAX_LIFETIME = 0xFFFFFFFF

#: A callable making a listening client: (reactor, gateway, gatewayPort).
ClientFactory = Callable[[Any, IPv4Address, int], NATPMPClient]
#: A callable returning the gateway to ask when none was given.
GatewayFinder = Callable[[], IPv4Address]
#: A callable returning this host's address towards a gateway
#: (L{twisted_natpmp.discovery.localAddress}).
LocalAddressFinder = Callable[[IPv4Address], IPv4Address]

#: The attempt from which a person waiting at a terminal is told that the
#: gateway has not answered yet: the 4th is sent 1.75 s after the first
#: (RFC 6886 s3.1), and the 5th to 9th follow at 3.75, 7.75 ... 63.75 s.
_PROGRESS_FROM_ATTEMPT = 4


@dataclass(frozen=True)
class Options:
    """
    A parsed C{natpmp} command line.

    @ivar command: C{"external"}, C{"map"}, C{"unmap"} or C{"unmap-all"}.
    @ivar gateway: the gateway to ask; L{None} finds the default gateway.
    @ivar gatewayPort: the gateway's UDP port.
    @ivar timeout: the most seconds to wait for an answer; L{None} waits as
        long as the RFC 6886 s3.1 schedule (127.75 s).
    @ivar json: print one JSON object instead of text.
    @ivar protocol: the protocol to map or unmap.
    @ivar internalPort: the local port to map or unmap.
    @ivar externalPort: the external port to suggest; L{None} suggests the
        internal port, 0 lets the gateway choose.
    @ivar lifetime: the lifetime to request, in seconds.
    @ivar allowPublic: ask the gateway even when this host's address is
        public (RFC 6886 s3 says a client SHOULD NOT).
    """

    command: str
    gateway: IPv4Address | None = None
    gatewayPort: int = SERVER_PORT
    timeout: float | None = None
    json: bool = False
    protocol: Protocol | None = None
    internalPort: int = 0
    externalPort: int | None = None
    lifetime: int = RECOMMENDED_LIFETIME
    allowPublic: bool = False


def _convert(convert: Callable[[str], _T], what: str, text: str, kind: str) -> _T:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not {kind}") from None


def _integer(what: str, text: str, low: int, high: int) -> int:
    value = _convert(int, what, text, "a number")
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} {value} is out of range {low}-{high}")
    return value


def _internalPort(text: str) -> int:
    return _integer("port", text, 1, 0xFFFF)


def _externalPort(text: str) -> int:
    return _integer("external port", text, 0, 0xFFFF)


def _gatewayPort(text: str) -> int:
    return _integer("gateway port", text, 1, 0xFFFF)


def _lifetime(text: str) -> int:
    if _convert(int, "lifetime", text, "a number") == 0:
        # The client refuses lifetime 0 too: deleting is its own request.
        raise argparse.ArgumentTypeError(
            "lifetime 0 would delete the mapping; use 'natpmp unmap' to delete"
        )
    return _integer("lifetime", text, 1, _MAX_LIFETIME)


def _timeout(text: str) -> float:
    value = _convert(float, "timeout", text, "a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"timeout {text!r} is not a positive number of seconds"
        )
    return value


def _gateway(text: str) -> IPv4Address:
    address = _convert(IPv4Address, "gateway", text, "an IPv4 address")
    why = unusableGateway(address)
    if why is not None:
        raise argparse.ArgumentTypeError(
            f"gateway {text!r} cannot be a gateway's address ({why})"
        )
    return address


def _protocol(text: str) -> Protocol:
    try:
        return Protocol[text.upper()]
    except KeyError:
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
Ask a NAT-PMP (RFC 6886) gateway for its external address, or to map or
unmap a port of this host.
"""

_EPILOG = """\
exit codes: 0 success; 1 the gateway refused, did not answer, or could not
be found or reached; 2 bad arguments; 130 interrupted.
"""

_UNMAP_ALL_HELP = (
    "delete all of this host's mappings of a protocol (some gateways,"
    " miniupnpd among them, delete those of the other protocol too)"
)


class _ShowVersion(Exception):
    """
    C{--version} was given: L{main} prints the version.
    """


class _VersionAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        raise _ShowVersion()


def _versionLine() -> str:
    from ._version import versionLine

    return versionLine("natpmp")


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
        help="the gateway to ask (default: this host's default IPv4 gateway)",
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
        help="give up after this many seconds (default and most: the RFC 6886"
        " retransmission schedule, 127.75 s)",
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
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        _addCommonOptions(sub)
        return sub

    command("external", "show the gateway's external IPv4 address")

    def protocolArgument(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "protocol", type=_protocol, metavar="{tcp,udp}", help="the protocol"
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
    mapCommand.add_argument(
        "--lifetime",
        type=_lifetime,
        default=RECOMMENDED_LIFETIME,
        metavar="SECONDS",
        help=f"the lifetime to ask for (default: {RECOMMENDED_LIFETIME}; the"
        " gateway may grant another)",
    )

    unmapCommand = command("unmap", "delete this host's mapping of a port")
    protocolArgument(unmapCommand)
    unmapCommand.add_argument(
        "internalPort", type=_internalPort, metavar="INTERNAL", help="the local port"
    )

    unmapAllCommand = command("unmap-all", _UNMAP_ALL_HELP)
    protocolArgument(unmapAllCommand)
    return parser


def parseArguments(argv: Sequence[str]) -> Options:
    """
    Parse a C{natpmp} command line (without the program name).

    @raise UsageError: the arguments are wrong; the one-line message names
        the offending value.
    @raise SystemExit: C{--help} was given (and printed).
    @raise _ShowVersion: C{--version} was given.
    """
    namespace = _buildParser().parse_args(list(argv))
    return Options(**vars(namespace))


def _cappedSchedule(
    schedule: Sequence[float], limit: float | None
) -> tuple[float, ...]:
    """
    Cut a retransmission schedule so that its waits add up to at most
    C{limit} seconds; the last wait is shortened to fit.
    """
    if limit is None:
        return tuple(schedule)
    capped: list[float] = []
    total = 0.0
    for wait in schedule:
        if total + wait >= limit:
            capped.append(limit - total)
            break
        capped.append(wait)
        total += wait
    return tuple(capped)


@dataclass(frozen=True)
class _Outcome:
    """
    What a command found: a line for a person and a JSON object.
    """

    text: str
    record: dict[str, object]


class _Output:
    """
    Where a command's outcome goes: a line on standard output (or one on
    standard error for a failure), or with C{--json} exactly one JSON
    object on standard output, whatever happens.

    @ivar header: the fields every JSON object starts with: the command and
        the gateway asked (once known).
    @ivar finished: the outcome has been written; nothing more will be.
    """

    def __init__(
        self,
        stdout: IO[str],
        stderr: IO[str],
        *,
        json: bool,
        command: str | None,
    ) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._json = json
        self.header: dict[str, object] = {"command": command, "gateway": None}
        self._warnings: list[str] = []
        self.finished = False

    @property
    def interactive(self) -> bool:
        """
        Is a person watching standard error (a terminal)?
        """
        isatty = getattr(self._stderr, "isatty", None)
        return bool(isatty is not None and isatty())

    def progress(self, message: str) -> None:
        """
        Tell a person at a terminal how the wait goes; nothing otherwise.
        """
        if self.interactive:
            print(f"natpmp: {message}", file=self._stderr, flush=True)

    def warn(self, message: str) -> None:
        """
        A warning: a line on standard error, and a C{warnings} field in
        the JSON object.
        """
        self._warnings.append(message)
        print(f"natpmp: warning: {message}", file=self._stderr)

    def succeed(self, outcome: _Outcome, gateway: IPv4Address) -> None:
        self._finish()
        if self._json:
            self._writeJSON(outcome.record)
        else:
            print(f"{outcome.text} (gateway {gateway})", file=self._stdout)

    def fail(
        self,
        message: str,
        fields: dict[str, object] | None = None,
        *,
        line: str | None = None,
    ) -> None:
        """
        A failure: one line on standard error (C{line}, by default
        C{"natpmp: "} and C{message}), and with C{--json} the object with
        C{error} set to C{message}, and C{fields}.
        """
        self._finish()
        print(f"natpmp: {message}" if line is None else line, file=self._stderr)
        if self._json:
            self._writeJSON({"error": message, **(fields or {})})

    def _finish(self) -> None:
        if self.finished:
            raise RuntimeError("natpmp: the outcome was already written")
        self.finished = True

    def _writeJSON(self, record: dict[str, object]) -> None:
        extra: dict[str, object] = (
            {"warnings": self._warnings} if self._warnings else {}
        )
        print(json.dumps({**self.header, **record, **extra}), file=self._stdout)


def _describeMapping(
    mapping: Mapping,
    options: Options,
    external: IPv4Address | None,
) -> _Outcome:
    where = f"{external}:" if external is not None else "external port "
    asked = (
        options.internalPort if options.externalPort is None else options.externalPort
    )
    differences = []
    if mapping.lifetime != options.lifetime:
        differences.append(
            f"{mapping.lifetime} s, not the {options.lifetime} s asked for"
        )
    if asked != 0 and mapping.externalPort != asked:
        differences.append(
            f"external port {mapping.externalPort}, not the {asked} asked for"
        )
    granted = (
        "; the gateway granted " + " and ".join(differences) if differences else ""
    )
    return _Outcome(
        f"mapped {mapping.transport.label} {where}{mapping.externalPort}"
        f" -> local port {mapping.internalPort} for {mapping.lifetime} s{granted}",
        {
            "protocol": mapping.transport.label,
            "internalPort": mapping.internalPort,
            "externalPort": mapping.externalPort,
            "lifetime": mapping.lifetime,
            "requestedExternalPort": asked,
            "requestedLifetime": options.lifetime,
            "epoch": mapping.epoch,
            "externalAddress": None if external is None else str(external),
        },
    )


def _unmappedAll(protocol: Protocol) -> _Outcome:
    other = Protocol.TCP if protocol is Protocol.UDP else Protocol.UDP
    # RFC 6886 s3.4 deletes one protocol's mappings; miniupnpd deletes both.
    note = (
        f"some gateways, miniupnpd among them, delete this host's {other.label}"
        " mappings too"
    )
    return _Outcome(
        f"unmapped every {protocol.label} port of this host ({note})",
        {"protocol": protocol.label, "note": note},
    )


async def _perform(client: NATPMPClient, clock: Any, options: Options) -> _Outcome:
    """
    Do what C{options} asks of the gateway.
    """
    started = clock.seconds()
    schedule = _cappedSchedule(RETRANSMIT_TIMEOUTS, options.timeout)
    protocol = options.protocol
    if options.command == "external":
        address = await client.externalAddress(timeouts=schedule)
        return _Outcome(
            f"external address {address}",
            {
                "externalAddress": str(address),
                "epoch": client.epochTracker.lastEpoch,
            },
        )
    assert protocol is not None
    if options.command == "unmap-all":
        await client.deleteAllMappings(protocol, timeouts=schedule)
        return _unmappedAll(protocol)
    if options.command == "unmap":
        await client.deleteMapping(protocol, options.internalPort, timeouts=schedule)
        return _Outcome(
            f"unmapped {protocol.label} local port {options.internalPort}",
            {"protocol": protocol.label, "internalPort": options.internalPort},
        )
    mapping = await client.addMapping(
        protocol,
        options.internalPort,
        options.externalPort,
        options.lifetime,
        timeouts=schedule,
    )
    external = mapping.externalAddress
    left = math.inf if options.timeout is None else options.timeout
    left -= clock.seconds() - started
    if external is None and left > 0:
        # Worth showing, not worth failing for: the mapping exists.
        try:
            external = await client.externalAddress(
                timeouts=_cappedSchedule(_FOLLOW_UP_TIMEOUTS, left)
            )
        except NATPMPError as e:
            log.info("external address unknown: {error}", error=str(e))
    return _describeMapping(mapping, options, external)


def _listen(reactor: Any, gateway: IPv4Address, gatewayPort: int) -> NATPMPClient:
    return listenClient(reactor, gateway, gatewayPort=gatewayPort)


def _describeError(
    error: Exception, gateway: IPv4Address | None, options: Options
) -> str:
    if isinstance(error, GatewayError):
        return (
            f"gateway {gateway} refused: result code {error.resultCode}"
            f" ({error.meaning})"
        )
    if isinstance(error, NoResponseError):
        limit = "" if options.timeout is None else f" (--timeout {options.timeout:g})"
        return (
            f"no response from gateway {error.gateway} after {error.attempts}"
            f" attempt(s) in {round(error.seconds, 2):g} s{limit}"
        )
    if isinstance(error, NoGatewayError):
        return f"{error} (--gateway IP)"
    if isinstance(error, NATPMPError):
        return str(error)
    if isinstance(error, CannotListenError):
        return f"cannot open a UDP socket: {error.socketError}"
    return f"cannot reach gateway {gateway}: {error}"


class _PublicAddressError(NATPMPError):
    """
    This host's address is public, and C{--allow-public} was not given.
    """


def _checkPrivate(
    gateway: IPv4Address,
    options: Options,
    findLocalAddress: LocalAddressFinder,
    output: _Output,
) -> None:
    """
    RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
    address is private.  A public address towards the gateway stops the
    command, unless C{--allow-public} makes it a warning.

    @raise _PublicAddressError: the address is public and the option was
        not given.
    """
    try:
        address = findLocalAddress(gateway)
    except OSError:
        return  # no route: the request itself will say so
    if isPrivateAddress(address):
        return
    problem = (
        f"this host's address towards gateway {gateway}, {address}, is public;"
        " NAT-PMP is for hosts behind a NAT (RFC 6886 s3)"
    )
    if not options.allowPublic:
        raise _PublicAddressError(f"{problem}; --allow-public asks anyway")
    output.warn(f"{problem}; asking anyway (--allow-public)")


def run(
    reactor: Any,
    options: Options,
    *,
    findGateway: GatewayFinder = defaultGateway,
    clientFactory: ClientFactory = _listen,
    findLocalAddress: LocalAddressFinder | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> Deferred[int]:
    """
    Carry out a parsed C{natpmp} command and print its outcome.

    @param reactor: provides L{twisted.internet.interfaces.IReactorUDP} and
        L{twisted.internet.interfaces.IReactorTime}.
    @param options: the command.
    @param findGateway: finds the gateway when C{options} names none.
    @param clientFactory: makes a listening L{NATPMPClient}.
    @param findLocalAddress: finds this host's address towards the gateway
        (default: L{twisted_natpmp.discovery.localAddress}).
    @param stdout: where the outcome goes (default C{sys.stdout}).
    @param stderr: where a failure's one line goes, and while standard
        error is a terminal, the progress of the wait (default
        C{sys.stderr}).
    @return: fires with the exit code.
    """
    output = _Output(
        sys.stdout if stdout is None else stdout,
        sys.stderr if stderr is None else stderr,
        json=options.json,
        command=options.command,
    )
    return _start(
        reactor, options, output, findGateway, clientFactory, findLocalAddress
    )


def _start(
    reactor: Any,
    options: Options,
    output: _Output,
    findGateway: GatewayFinder = defaultGateway,
    clientFactory: ClientFactory = _listen,
    findLocalAddress: LocalAddressFinder | None = None,
) -> Deferred[int]:
    return Deferred.fromCoroutine(
        _run(
            reactor,
            options,
            output,
            findGateway,
            clientFactory,
            localAddress if findLocalAddress is None else findLocalAddress,
        )
    )


async def _run(
    reactor: Any,
    options: Options,
    output: _Output,
    findGateway: GatewayFinder,
    clientFactory: ClientFactory,
    findLocalAddress: LocalAddressFinder,
) -> int:
    gateway = options.gateway
    try:
        if gateway is None:
            gateway = findGateway()
        output.header["gateway"] = str(gateway)
        _checkPrivate(gateway, options, findLocalAddress, output)
        client = clientFactory(reactor, gateway, options.gatewayPort)
        waiting = gateway

        def stillTrying(request: str, attempt: int, elapsed: float) -> None:
            if attempt >= _PROGRESS_FROM_ATTEMPT:
                output.progress(
                    f"no answer from gateway {waiting} yet; still trying"
                    f" (attempt {attempt}, {round(elapsed, 2):g} s)"
                )

        client.addRetryObserver(stillTrying)
        try:
            outcome = await _perform(client, reactor, options)
        finally:
            await client.stop()
    except (NATPMPError, OSError, CannotListenError) as e:
        fields: dict[str, object] = {}
        if isinstance(e, GatewayError):
            fields["resultCode"] = e.resultCode
        output.fail(_describeError(e, gateway, options), fields)
        return EXIT_FAILED
    output.succeed(outcome, gateway)
    return EXIT_OK


def _commandIn(argv: Sequence[str]) -> str | None:
    """
    The command named in a command line that did not parse, if any.
    """
    commands = ("external", "map", "unmap", "unmap-all")
    return next((word for word in argv if word in commands), None)


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{natpmp} console script.

    @param argv: the arguments, without the program name (default:
        C{sys.argv[1:]}).
    @return: the exit code.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Before the arguments parse, --json is known only by being there.
    output = _Output(
        sys.stdout,
        sys.stderr,
        json="--json" in arguments,
        command=_commandIn(arguments),
    )
    try:
        options = parseArguments(arguments)
    except UsageError as e:
        output.fail(str(e), line=str(e))
        return EXIT_USAGE
    except _ShowVersion:
        if "--json" in arguments:
            from twisted import __version__ as twistedVersion

            from ._version import __version__

            print(json.dumps({"version": __version__, "twisted": twistedVersion}))
        else:
            print(_versionLine())
        return EXIT_OK
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK

    outcome: list[int | Failure] = []

    def start(reactor: Any) -> Deferred[None]:
        return _start(reactor, options, output).addBoth(outcome.append)

    try:
        react(start)
    except SystemExit:
        pass
    if not outcome:
        # The reactor stopped first: a signal (Ctrl-C) stopped it.
        if not output.finished:
            output.fail("interrupted")
        return EXIT_INTERRUPTED
    result = outcome[0]
    if isinstance(result, Failure):
        # Not an expected error: a bug, which deserves its traceback.
        result.printTraceback(file=sys.stderr)
        if not output.finished:
            output.fail(f"internal error: {result.getErrorMessage()}")
        return EXIT_FAILED
    return result
