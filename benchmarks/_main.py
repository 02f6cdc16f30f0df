"""
The command line: run the sections in order on one reactor, print each
figure as it comes, and write them all as JSON at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage

from . import (
    _cpus,
    clients,
    codec,
    gateway,
    nftables,
    pcp,
    pcpgateway,
    peers,
    reliability,
    service,
)
from ._context import Context
from ._report import Figure, Report, notMeasured
from ._sizes import FULL, QUICK

Section = Callable[[Context], Awaitable[list[Figure]]]


async def _codec(context: Context) -> list[Figure]:
    return codec.run(context.sizes)


#: (key, title, section), in the order they run.
SECTIONS: list[tuple[str, str, Section]] = [
    ("codec", "1. codec: encode+decode per message type, vs bare struct", _codec),
    ("client", "2. client bulk: map then delete, one at a time", clients.run),
    ("server", "3. our gateway: requests/s by table size; memory", gateway.run),
    ("service", "4. service: gateway restart to all mappings back", service.run),
    ("miniupnpd", "5. our gateway vs miniupnpd: external address", peers.run),
    (
        "reliability",
        "6. reliability: a flood, and mapping under loss",
        reliability.run,
    ),
    ("pcp", "7. PCP with its window vs NAT-PMP: map then delete", pcp.run),
    (
        "pcpgateway",
        "8. our gateway over PCP: MAP/delete requests/s by table size",
        pcpgateway.run,
    ),
    (
        "nftables",
        "9. our gateway with nftables vs miniupnpd: map+delete by table size",
        nftables.run,
    ),
]


class Options(usage.Options):
    synopsis = "[--quick] [--json FILE] [--only SECTION,...]"
    longdesc = (
        "Measure twisted-natpmp against its peers; print every figure with"
        " its target, met or missed. Sections: "
        + ", ".join(key for key, _, _ in SECTIONS)
        + "."
    )
    optFlags = [["quick", "q", "Smallest sizes: proves the benchmarks work."]]
    optParameters = [
        ["json", "j", None, "Also write the figures to FILE as JSON."],
        ["only", None, None, "Run only these sections (comma-separated)."],
    ]

    def postOptions(self) -> None:
        known = [key for key, _, _ in SECTIONS]
        if self["only"] is None:
            self["sections"] = known
            return
        chosen = [s.strip() for s in self["only"].split(",") if s.strip()]
        for key in chosen:
            if key not in known:
                raise usage.UsageError(
                    f"--only: unknown section {key!r} (known: {', '.join(known)})"
                )
        self["sections"] = chosen


async def _run(reactor: Any, options: Options, argv: Sequence[str]) -> None:
    sizes = QUICK if options["quick"] else FULL
    report = Report()
    _cpus.pinClients()
    print(
        "twisted-natpmp benchmarks"
        + (
            " (--quick: smallest sizes; the numbers mean little)"
            if sizes is QUICK
            else ""
        )
        + f"; {_cpus.describe()}"
    )
    directory = Path(tempfile.mkdtemp(prefix="natpmp-bench-"))
    context = Context(reactor, sizes, directory)
    try:
        for key, title, section in SECTIONS:
            if key not in options["sections"]:
                continue
            report.section(title)
            try:
                figures = await section(context)
            except Exception as e:
                if os.environ.get("BENCHMARKS_TRACEBACK"):
                    traceback.print_exc()
                figures = [
                    notMeasured(
                        f"{key}.error",
                        "-",
                        f"section {key}",
                        f"failed: {type(e).__name__}: {e}",
                    )
                ]
            report.add(figures)
    finally:
        context.close()
        shutil.rmtree(directory, ignore_errors=True)
    if options["json"]:
        report.write(options["json"], bool(options["quick"]), argv)
        print(f"\nfigures written to {options['json']}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(argv)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        print(f"python -m benchmarks: {e}", file=sys.stderr)
        return 2
    react(lambda reactor: Deferred.fromCoroutine(_run(reactor, options, argv)))
    return 0
