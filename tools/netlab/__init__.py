"""
The network-namespace lab, shared by the interop suite (C{tests/interop})
and the benchmarks (C{benchmarks/_netlab.py}): network namespaces, veth
pairs, a bridge, Debian's miniupnpd as the router, and helpers to run
programs and open sockets inside the namespaces.  It has no trial
dependency.

Topology (every address exists only inside the lab's own namespaces)::

    lan1 (10.77.0.2) --+
                       +-- br0 (10.77.0.1) router wan0 (192.0.3.1) -- wan (192.0.3.2)
    lan2 (10.77.0.3) --+

A lab may add a second router on the bridge (L{Lab.addSecondGateway}, at
L{SECOND_GATEWAY}), and put the impairment relay (L{tools.impair.relay}) in
front of a LAN host (L{Lab.startRelay}).

Use::

    async with openLab(directory) as lab:
        await lab.startMiniupnpd()
        ...

or C{lab = Lab.build(directory)} and, whatever happens, C{await
lab.destroy()}.  Both raise L{LabUnavailable} when the machine cannot run
the lab (not root, a command missing): a test suite skips on it; with
C{NATPMP_INTEROP_REQUIRED=1} in the environment L{LabError} is raised
instead.

Namespace names carry the pid of the process and a sequence number, so
parallel runs never clash; namespaces left behind by a run that was killed
are swept when the next lab is built.  The lab never touches the root
namespace's network: links are created inside the namespaces, and every
command runs in one of them.

Every wait is bounded: processes are polled through the reactor a fixed
number of times, then killed by their pid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ._core import LabCore
from ._lab import Lab, RunningRelay, miniupnpdConfig
from ._namespaces import (
    LAN_HOSTS,
    NOBODY,
    ROUTER_LAN,
    ROUTER_WAN,
    SECOND_GATEWAY,
    WAN_HOST,
    LabError,
    LabUnavailable,
    NamespacedReactor,
    insideNamespace,
    missingPrerequisites,
    requirePrerequisites,
)
from ._process import Completed, Daemon, Inbox, sleep, waitUntil

__all__ = [
    "LAN_HOSTS",
    "NOBODY",
    "ROUTER_LAN",
    "ROUTER_WAN",
    "SECOND_GATEWAY",
    "WAN_HOST",
    "Completed",
    "Daemon",
    "Inbox",
    "Lab",
    "LabCore",
    "LabError",
    "LabUnavailable",
    "NamespacedReactor",
    "RunningRelay",
    "insideNamespace",
    "miniupnpdConfig",
    "missingPrerequisites",
    "openLab",
    "requirePrerequisites",
    "sleep",
    "waitUntil",
]


@asynccontextmanager
async def openLab(directory: Path) -> AsyncIterator[Lab]:
    """
    A lab (namespaces, no programs yet) with its files in C{directory},
    destroyed with everything it started when the block ends.

    @raise LabUnavailable: this machine cannot run the lab.
    """
    lab = Lab.build(directory)
    try:
        yield lab
    finally:
        await lab.destroy()
