"""
Our gateway in a process of its own, for the benchmarks to load:
C{python -m benchmarks._gatewayrun --listen 127.0.86.1/8 --log FILE}.

It runs L{GatewayService} (what C{twistd natpmp-gateway} runs) on the real
reactor, logging to a file as C{twistd -l FILE} would, without
announcements (the benchmarks stay on loopback).  It takes commands on
standard input, one per line, and answers each with one line:

  - C{fill N}: empty the table (a new epoch), then fill it with N mappings
    held by other clients (L{fillTable}), without logging them; answers
    C{filled N}.
  - C{count}: answers the number of mappings in the table.
  - C{quit}: stops.

It prints C{ready HOST PORT} once it listens, or C{error MESSAGE} and exits
1 when it cannot.
"""

from __future__ import annotations

import gc
import sys

from constantly import NamedConstant  # type: ignore[import-untyped]
from twisted.internet import stdio
from twisted.internet.error import CannotListenError
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogEvent,
    PredicateResult,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from zope.interface import implementer

from twisted_natpmp.server import GatewayService

from ._fill import fillTable

EXTERNAL_ADDRESS = "192.0.3.77"


class Options(usage.Options):
    optParameters = [
        ["listen", None, "127.0.86.1/8", "Internal address/prefix to serve on."],
        ["port", None, "5351", "UDP port."],
        ["log", None, None, "Log file (required)."],
        ["max-mappings-per-client", None, "100000", "Per-client mapping limit."],
    ]
    optFlags = [["pcp", None, "Serve PCP beside NAT-PMP."]]

    def postOptions(self) -> None:
        if self["log"] is None:
            raise usage.UsageError("--log is required")


@implementer(ILogFilterPredicate)
class _Quiet:
    """
    A log filter that drops every event while C{on}.
    """

    on = False

    def __call__(self, event: LogEvent) -> NamedConstant:
        return PredicateResult.no if self.on else PredicateResult.maybe


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, service: GatewayService, quiet: _Quiet) -> None:
        self.service = service
        self.quiet = quiet

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        assert self.service.gateway is not None
        if words[:1] == ["fill"] and len(words) == 2:
            self.quiet.on = True
            try:
                table = self.service.gateway.table
                table.reset()
                fillTable(table, int(words[1]))
                gc.collect()  # not while measuring: the old table is garbage
            finally:
                self.quiet.on = False
            self.sendLine(f"filled {len(self.service.gateway.table)}".encode())  # type: ignore[no-untyped-call]
        elif words == ["count"]:
            self.sendLine(str(len(self.service.gateway.table)).encode())  # type: ignore[no-untyped-call]
        elif words == ["quit"]:
            from twisted.internet import reactor

            reactor.stop()  # type: ignore[attr-defined]
        else:
            self.sendLine(f"error unknown command {line!r}".encode())  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: object = None) -> None:
        from twisted.internet import reactor

        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(argv)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        print(f"error {e}", flush=True)
        return 2
    from twisted.internet import reactor

    quiet = _Quiet()
    logFile = open(options["log"], "a")
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(logFile), [quiet])],
        redirectStandardIO=False,
    )
    service = GatewayService(
        reactor,  # type: ignore[arg-type]
        [options["listen"]],
        EXTERNAL_ADDRESS,
        port=int(options["port"]),
        maxMappingsPerClient=int(options["max-mappings-per-client"]),
        announceTo=None,
        pcp=bool(options["pcp"]),
    )
    try:
        service.startService()
    except CannotListenError as e:
        print(f"error {e}", flush=True)
        return 1
    host = service.ports[0].getHost()
    print(f"ready {host.host} {host.port}", flush=True)  # type: ignore[attr-defined]
    stdio.StandardIO(Control(service, quiet))  # type: ignore[no-untyped-call]
    reactor.run()  # type: ignore[attr-defined]
    quiet.on = True  # the table's deletions on stopping are not news
    service.stopService()
    logFile.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
