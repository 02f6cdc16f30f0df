"""
Figure 4: the mapper service after a gateway restart.  How long from the
gateway's restart announcement to every one of N declared mappings being
granted again, with the RFC 6886 s3.7 random hold-off set to 0.

Measured in real time with real UDP, in the interop lab's namespaces (the
announcements are multicast, which must stay inside them): the service
runs in a process of its own on a LAN host (L{_servicerun}), the gateway in
the router's namespace; the gateway is stopped and started again, and the
clock runs from the first packet the LAN host hears on 224.0.0.1:5350 to
the last mapping granted.  Against our gateway (C{twistd natpmp-gateway},
which announces by RFC 6886 s3.2.1) and against miniupnpd (which sends one
PCP ANNOUNCE when it starts, and writes a firewall rule per mapping).

Target: under 0.5 s with 100 mappings, against our gateway.
"""

from __future__ import annotations

import signal
import time

from tools.netlab import ROUTER_LAN, LabError, sleep, waitUntil
from twisted_natpmp import Transport

from ._context import Context
from ._netlab import Lab, LabUnavailable, Miniupnpd, OurGateway, netLab
from ._report import Figure, Target, ratio

TARGET = Target("<=", 0.5)
FIRST_PORT = 30000
#: How long the gateway runs before it is restarted, in seconds.
UPTIME = 4.0
#: The longest each phase (mapping, then restoring) may take, in seconds.
PHASE_TIMEOUT = 60.0


class ServiceFailed(Exception):
    pass


async def _restore(lab: Lab, router: OurGateway | Miniupnpd, count: int) -> float:
    """
    Start the service with C{count} declarations, wait until they are
    mapped, restart the gateway and return the seconds the service took to
    map them all again, from the announcement.
    """
    started = time.monotonic()
    helper = lab.spawn(
        lab.lans[0],
        lab.python(
            "-m",
            "benchmarks._servicerun",
            ROUTER_LAN,
            str(count),
            str(FIRST_PORT),
            str(2 * PHASE_TIMEOUT),
        ),
        "service",
    )

    async def phase(word: str) -> str:
        await waitUntil(
            lambda: f"BENCH {word}" in helper.output() or helper.ended,
            f"the service: {word}",
            PHASE_TIMEOUT,
            0.01,
        )
        output: str = helper.output()
        for line in output.splitlines():
            if line.startswith(f"BENCH {word}"):
                return line
        raise ServiceFailed(f"the service did not say {word!r}: {helper.output()}")

    try:
        await phase("mapped")
        # RFC 6886 s3.6: a client sees a loss of state when the new epoch is
        # over 2 s below what it expected; a gateway restarted sooner than
        # that after it started is indistinguishable from one that was not.
        await sleep(max(0.0, started + UPTIME - time.monotonic()))
        helper.signal(signal.SIGUSR1)
        await router.stop()
        await router.start()
        seconds = float((await phase("restored")).split()[2])
    finally:
        await helper.stop()
    if isinstance(router, Miniupnpd):
        rules = len(lab.rules(Transport.UDP))
        if rules != count:
            raise ServiceFailed(f"miniupnpd holds {rules} rules, not {count}")
    return seconds


async def run(context: Context) -> list[Figure]:
    count = context.sizes.serviceMappings
    label = f"restart announcement to all {count} mappings back"
    seconds: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    try:
        async with netLab(context.directory / "service") as lab:
            routers: list[tuple[str, OurGateway | Miniupnpd]] = [
                ("ours", OurGateway(lab)),
                ("miniupnpd", Miniupnpd(lab)),
            ]
            for key, router in routers:
                await router.start()
                try:
                    seconds[key] = await _restore(lab, router, count)
                except (ServiceFailed, LabError) as e:
                    reasons[key] = f"failed: {e}"
                finally:
                    await router.stop()
    except LabUnavailable as e:
        reasons = {"ours": str(e), "miniupnpd": str(e)}
    names = {"ours": "our gateway", "miniupnpd": "miniupnpd 2.3.1"}
    figures = []
    for key, name in names.items():
        value = seconds.get(key)
        figure = Figure(
            f"service.{key}.restore_time",
            value,
            "s",
            f"{name}: {label}",
            target=TARGET if key == "ours" else None,
            reason=reasons.get(key) if value is None else None,
            note="real time, real UDP in namespaces, hold-off 0"
            if value is not None
            else None,
        )
        figures.append(figure)
    figures.append(
        ratio(
            "service.restore_time.ours_vs_miniupnpd",
            ("the time to restore against our gateway", seconds.get("ours")),
            ("the time to restore against miniupnpd", seconds.get("miniupnpd")),
            "restore time: our gateway / miniupnpd",
        )
    )
    return figures
