"""
Figure 5: our gateway against miniupnpd, the same loop of external-address
requests from a LAN host in the interop lab's namespaces: one at a time
(the target: at least 0.5x miniupnpd's rate), and with a window in flight.

Both run at once in the router's namespace, miniupnpd (as a daemon,
L{Miniupnpd}) on 10.77.0.1:5351 and our gateway (C{twistd -n
natpmp-gateway}) on L{OURS}:5351, a second address of the LAN bridge, so
that their loops take turns round after round and a burst of other load on
the machine falls on both.  The load generator is a bare Python loop: with
a window in flight it may be the limit rather than the server.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack

from . import _udp
from ._context import Context
from ._netlab import Lab, LabUnavailable, Miniupnpd, OurGateway, lanSocket, netLab
from ._report import Figure, Target, notMeasured, ratio
from ._timing import interleaved

UNIT = "requests/s"
TARGET = Target(">=", 0.5)
#: Our gateway's address on the router's LAN bridge.
OURS = "10.77.0.254"


Loop = Callable[[socket.socket, int], None]


async def _measure(
    lab: Lab, loops: dict[str, Loop], count: int
) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """
    Start both gateways, run each loop against each, in turns; return
    their names and their rates by (gateway, loop).
    """
    routers: dict[str, OurGateway | Miniupnpd] = {
        "ours": OurGateway(lab, OURS),
        "miniupnpd": Miniupnpd(lab),
    }
    async with AsyncExitStack() as running:
        for router in reversed(routers.values()):
            await router.start()
            running.push_async_callback(router.stop)
        with ExitStack() as opened:
            sockets = {
                key: opened.enter_context(lanSocket(lab, router.address))
                for key, router in routers.items()
            }
            keys: list[tuple[str, str]] = []
            bound: list[Callable[[int], None]] = []
            for mode, loop in loops.items():
                for key, sock in sockets.items():
                    keys.append((key, mode))
                    bound.append(functools.partial(loop, sock))
            rates = dict(zip(keys, interleaved(bound, count), strict=True))
    return {key: router.name for key, router in routers.items()}, rates


async def run(context: Context) -> list[Figure]:
    window = context.sizes.window
    packets = [_udp.EXTERNAL_ADDRESS]
    modes = {
        "one_at_a_time": "one at a time",
        f"window{window}": f"{window} in flight",
    }
    loops: dict[str, Loop] = {
        "one_at_a_time": lambda sock, n: _udp.oneAtATime(sock, packets, n),
        f"window{window}": lambda sock, n: _udp.windowed(sock, packets, n, window),
    }
    try:
        async with netLab(context.directory / "peers") as lab:
            names, rates = await _measure(lab, loops, context.sizes.peerRequests)
    except LabUnavailable as e:
        return [
            notMeasured(
                "peers.external.one_at_a_time.ours_vs_miniupnpd",
                "x",
                "our gateway / miniupnpd, external address",
                str(e),
            )
        ]
    figures = []
    for (key, mode), value in rates.items():
        figures.append(
            Figure(
                f"peers.{key}.external.{mode}",
                value,
                UNIT,
                f"{names[key]}: external address, {modes[mode]}",
            )
        )
    for mode, how in modes.items():
        figures.append(
            ratio(
                f"peers.external.{mode}.ours_vs_miniupnpd",
                ("our gateway's rate", rates[("ours", mode)]),
                ("miniupnpd's rate", rates[("miniupnpd", mode)]),
                f"our gateway / miniupnpd, external address, {how}",
                TARGET if mode == "one_at_a_time" else None,
            )
        )
    return figures
