"""
Figure 5: our gateway against miniupnpd, the same loop of external-address
requests from a LAN host in the interop lab's namespaces: one at a time
(the target: at least 0.5x miniupnpd's rate), and with a window in flight.

Our gateway runs as C{twistd -n natpmp-gateway}, miniupnpd as a daemon
(L{Miniupnpd}); both serve 10.77.0.1:5351 in the router's namespace, one
after the other.
"""

from __future__ import annotations

from . import _udp
from ._context import Context
from ._netlab import LabUnavailable, Miniupnpd, OurGateway, lanSocket, netLab
from ._report import Figure, Target, notMeasured, ratio
from ._timing import interleaved

UNIT = "requests/s"
TARGET = Target(">=", 0.5)


async def _measure(context: Context, router: OurGateway | Miniupnpd) -> list[float]:
    await router.start()
    try:
        with lanSocket(router.lab) as sock:
            packets = [_udp.EXTERNAL_ADDRESS]
            window = context.sizes.window
            return interleaved(
                [
                    lambda n: _udp.oneAtATime(sock, packets, n),
                    lambda n: _udp.windowed(sock, packets, n, window),
                ],
                context.sizes.peerRequests,
            )
    finally:
        await router.stop()


async def run(context: Context) -> list[Figure]:
    window = context.sizes.window
    modes = {"one_at_a_time": "one at a time", f"window{window}": f"{window} in flight"}
    names = {}
    rates = {}
    try:
        async with netLab(context.directory / "peers") as lab:
            routers: list[tuple[str, OurGateway | Miniupnpd]] = [
                ("ours", OurGateway(lab)),
                ("miniupnpd", Miniupnpd(lab)),
            ]
            for key, router in routers:
                names[key] = router.name
                rates[key] = await _measure(context, router)
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
    for key, values in rates.items():
        for (mode, how), value in zip(modes.items(), values, strict=True):
            figures.append(
                Figure(
                    f"peers.{key}.external.{mode}",
                    value,
                    UNIT,
                    f"{names[key]}: external address, {how}",
                )
            )
    for i, (mode, how) in enumerate(modes.items()):
        figures.append(
            ratio(
                f"peers.external.{mode}.ours_vs_miniupnpd",
                ("our gateway's rate", rates["ours"][i]),
                ("miniupnpd's rate", rates["miniupnpd"][i]),
                f"our gateway / miniupnpd, external address, {how}",
                TARGET if i == 0 else None,
            )
        )
    return figures
