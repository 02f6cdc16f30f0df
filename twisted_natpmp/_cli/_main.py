# -*- test-case-name: tests.cli.test_main -*-
"""
L{main}, the C{natpmp} console script: parse the command line, run the
command under L{react}, and turn what happened into an exit code, whatever
happened (bad arguments, C{--help}, C{--version}, Ctrl-C, a bug).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from .._parse import parseGateway
from ._options import COMMANDS, ShowVersion, parseArguments
from ._output import Output
from ._run import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, start


def _commandIn(argv: Sequence[str]) -> str | None:
    """
    The command named in a command line that did not parse, if any.
    """
    return next((word for word in argv if word in COMMANDS), None)


def _gatewayIn(argv: Sequence[str]) -> str | None:
    """
    The gateway named in a command line that did not parse, if it names a
    usable one (the last, as the parser takes).
    """
    gateway = None
    for word, following in zip(argv, [*argv[1:], None], strict=True):
        if word == "--gateway" and following is not None:
            text = following
        elif word.startswith("--gateway="):
            text = word.partition("=")[2]
        else:
            continue
        try:
            gateway = str(parseGateway("gateway", text))
        except ValueError:
            gateway = None
    return gateway


def _printVersion(asJSON: bool) -> None:
    """
    C{--version}: the versions of twisted-natpmp and of Twisted.
    """
    from twisted import __version__ as twistedVersion

    from .._version import __version__, versionLine

    if asJSON:
        print(json.dumps({"version": __version__, "twisted": twistedVersion}))
    else:
        print(versionLine("natpmp"))


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{natpmp} console script.

    @param argv: the arguments, without the program name (default:
        C{sys.argv[1:]}).
    @return: the exit code.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Before the arguments parse, --json is known only by being there.
    output = Output(
        sys.stdout,
        sys.stderr,
        json="--json" in arguments,
        command=_commandIn(arguments),
    )
    try:
        options = parseArguments(arguments)
    except UsageError as e:
        output.header["gateway"] = _gatewayIn(arguments)
        output.fail(str(e), line=str(e))
        return EXIT_USAGE
    except ShowVersion:
        _printVersion("--json" in arguments)
        return EXIT_OK
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK

    outcome: list[int | Failure] = []

    def begin(reactor: Any) -> Deferred[None]:
        return start(reactor, options, output).addBoth(outcome.append)

    try:
        react(begin)
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
