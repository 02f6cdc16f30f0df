# -*- test-case-name: tests.cli.test_run -*-
"""
L{run}: carry out a parsed C{natpmp} command, from finding the gateway to
the outcome's line, with every expected failure said in one line.

L{run} takes its reactor, gateway finder and client factory as arguments, so
tests drive it on an in-memory network.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError

from .._types import IPAddress
from ..discovery import defaultGateway, isPrivateAddress, localAddress
from ..errors import GatewayError, NATPMPError, NoGatewayError, NoResponseError
from ..interfaces import IPortMapper
from ..natpmp.client import NATPMPClient, listenClient
from ._commands import perform
from ._options import Options
from ._output import Output
from ._protocols import listen as listenFor

#: Exit codes of the command.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: A callable making a listening client: (reactor, gateway, gatewayPort).
ClientFactory = Callable[[Any, Any, int], IPortMapper]
#: A callable returning the gateway to ask when none was given.
GatewayFinder = Callable[[], IPv4Address]
#: A callable returning this host's address towards a gateway
#: (L{twisted_natpmp.discovery.localAddress}).
LocalAddressFinder = Callable[[IPv4Address], IPv4Address]


def listen(reactor: Any, gateway: IPv4Address, gatewayPort: int) -> NATPMPClient:
    """
    A L{ClientFactory} of NAT-PMP clients listening on the reactor (the
    command's own, L{_protocols.listen <twisted_natpmp._cli._protocols.listen>},
    follows C{--protocol}).
    """
    return listenClient(reactor, gateway, gatewayPort=gatewayPort)


def describeError(error: Exception, gateway: IPAddress | None, options: Options) -> str:
    """
    The one line saying why the command failed.
    """
    if isinstance(error, GatewayError):
        # (NAT-PMP's codes, the first, are said as before.)
        code = "PCP result code" if error.protocol == "pcp" else "result code"
        if error.resultCode is None:
            return f"gateway {gateway} refused: {error.meaning}"
        return f"gateway {gateway} refused: {code} {error.resultCode} ({error.meaning})"
    if isinstance(error, NoResponseError):
        limit = "" if options.timeout is None else f" (--timeout {options.timeout:g})"
        return (
            f"no response from gateway {error.gateway} after {error.attempts}"
            f" attempt(s) in {round(error.seconds, 2):g} s{limit}"
        )
    if isinstance(error, ValueError):
        # A mapper that cannot be made (NAT-PMP to an IPv6 gateway).
        return str(error)
    if isinstance(error, NoGatewayError):
        return f"{error} (--gateway IP)"
    if isinstance(error, NATPMPError):
        return str(error)
    if isinstance(error, CannotListenError):
        return f"cannot open a UDP socket: {error.socketError}"
    return f"cannot reach gateway {gateway}: {error}"


class PublicAddressError(NATPMPError):
    """
    This host's address is public, and C{--allow-public} was not given.
    """


def checkPrivate(
    gateway: IPv4Address,
    options: Options,
    findLocalAddress: LocalAddressFinder,
    output: Output,
) -> None:
    """
    RFC 6886 s3: a client SHOULD use NAT-PMP only when its primary IPv4
    address is private.  The address judged is C{--internal-address} when
    it is an IPv4 one (NAT-PMP sends from it), else this host's address
    towards the gateway.  A public one stops the command, unless
    C{--allow-public} makes it a warning.

    @raise PublicAddressError: the address is public and the option was
        not given.
    """
    address = options.internalAddress
    if not isinstance(address, IPv4Address):
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
        raise PublicAddressError(f"{problem}; --allow-public asks anyway")
    output.warn(f"{problem}; asking anyway (--allow-public)")


def run(
    reactor: Any,
    options: Options,
    *,
    findGateway: GatewayFinder = defaultGateway,
    clientFactory: ClientFactory | None = None,
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
    @param clientFactory: makes a listening L{IPortMapper}; by default
        the mapper of C{--protocol}, its PCP nonces in C{--nonce-file}.
    @param findLocalAddress: finds this host's address towards the gateway
        (default: L{twisted_natpmp.discovery.localAddress}).
    @param stdout: where the outcome goes (default C{sys.stdout}).
    @param stderr: where a failure's one line goes, and while standard
        error is a terminal, the progress of the wait (default
        C{sys.stderr}).
    @return: fires with the exit code.
    """
    output = Output(
        sys.stdout if stdout is None else stdout,
        sys.stderr if stderr is None else stderr,
        json=options.json,
        command=options.command,
    )
    return start(reactor, options, output, findGateway, clientFactory, findLocalAddress)


def start(
    reactor: Any,
    options: Options,
    output: Output,
    findGateway: GatewayFinder = defaultGateway,
    clientFactory: ClientFactory | None = None,
    findLocalAddress: LocalAddressFinder | None = None,
) -> Deferred[int]:
    """
    L{run}, writing to an L{Output} already made.
    """
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
    output: Output,
    findGateway: GatewayFinder,
    clientFactory: ClientFactory | None,
    findLocalAddress: LocalAddressFinder,
) -> int:
    gateway = options.gateway
    client: IPortMapper | None = None
    try:
        if gateway is None:
            gateway = findGateway()
        output.header["gateway"] = str(gateway)
        if isinstance(gateway, IPv4Address) and options.mappingProtocol != "pcp":
            # RFC 6886 s3 is NAT-PMP's rule (auto may fall back to it).
            checkPrivate(gateway, options, findLocalAddress, output)
        if clientFactory is None:
            client = listenFor(
                reactor,
                gateway,
                options.gatewayPort,
                options.mappingProtocol,
                options.nonceFile,
                options.internalAddress,
            )
        else:
            client = clientFactory(reactor, gateway, options.gatewayPort)
        client.addRetryObserver(output.retryObserver(gateway))
        try:
            outcome = await perform(client, reactor, options)
        finally:
            await client.stop()
    except (NATPMPError, OSError, CannotListenError, ValueError) as e:
        fields: dict[str, object] = {}
        if client is not None:
            fields["mappingProtocol"] = client.protocolName.value
        if isinstance(e, GatewayError):
            fields["resultCode"] = e.resultCode
        output.fail(describeError(e, gateway, options), fields)
        return EXIT_FAILED
    outcome.record["mappingProtocol"] = client.protocolName.value
    output.succeed(outcome, gateway, client.protocolName)
    return EXIT_OK
