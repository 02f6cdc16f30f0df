# -*- test-case-name: tests.cli -*-
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

One job per module:
  - C{_options}: the command line, parsed into L{Options};
  - C{_commands}: what each command asks of the gateway;
  - C{_output}: the outcome as text or JSON, and the progress of a wait;
  - C{_run}: L{run}: the gateway, the public-address check, the errors;
  - C{_main}: L{main}: the reactor, C{--version} and the exit codes.
"""

from ._main import main
from ._options import Options, parseArguments
from ._run import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ClientFactory,
    GatewayFinder,
    LocalAddressFinder,
    run,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ClientFactory",
    "GatewayFinder",
    "LocalAddressFinder",
    "Options",
    "main",
    "parseArguments",
    "run",
]
