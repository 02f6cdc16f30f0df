"""
The reliability suite's packet tools, run as C{python -m tools.impair
relay ...} or C{python -m tools.impair flood ...}; see L{tools.impair}.
"""

from __future__ import annotations

import argparse
import sys

from .flood import Target, floodMain, parseAddress
from .relay import PERFECT, RELAY_MARK, RELAY_PORT, Impairment, relayMain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The reliability suite's packet tools: a relay, a flooder."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="relay with impairments")
    relay.add_argument("--listen", type=parseAddress, default=("127.0.0.1", RELAY_PORT))
    relay.add_argument("--upstream", type=parseAddress, required=True)
    relay.add_argument("--up", type=Impairment.parse, default=PERFECT)
    relay.add_argument("--down", type=Impairment.parse, default=PERFECT)
    relay.add_argument("--seed", type=int, default=0)
    relay.add_argument("--mark", type=int, default=RELAY_MARK)
    relay.add_argument("--max-seconds", type=float, default=600.0)
    relay.add_argument("--max-packets", type=int, default=1_000_000)
    relay.set_defaults(run=relayMain)
    flooder = commands.add_parser("flood", help="send mutated NAT-PMP packets")
    flooder.add_argument("--to", type=Target.parse, action="append", required=True)
    flooder.add_argument("--responses", action="store_true")
    flooder.add_argument("--no-map-requests", action="store_true")
    flooder.add_argument("--count", type=int, required=True)
    flooder.add_argument("--rate", type=float, required=True)
    flooder.add_argument("--seed", type=int, default=0)
    flooder.add_argument("--max-seconds", type=float, default=60.0)
    flooder.set_defaults(run=floodMain)
    options = parser.parse_args(argv)
    code: int = options.run(options)
    return code


if __name__ == "__main__":
    sys.exit(main())
