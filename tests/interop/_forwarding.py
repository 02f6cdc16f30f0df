"""
The interop suite's side of the forwarding lab (L{tools.netlab.forwarding}):
L{buildForwardingLab} builds one for a trial test case and turns
L{LabUnavailable} into a skip; L{Forwarding} says what reaches the LAN
hosts from the WAN host.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tools.netlab import WAN_HOST
from tools.netlab import forwarding as _forwarding
from tools.netlab.echo import CLOSED, REFUSED, SILENT, Outcome, probe
from tools.netlab.forwarding import ForwardingLab

from ._lab import ROUTER_WAN, buildLabWith

__all__ = [
    "CLOSED",
    "REFUSED",
    "SILENT",
    "WAN_HOST",
    "ForwardingLab",
    "Outcome",
    "buildForwardingLab",
    "fromWAN",
]


def buildForwardingLab(testCase: TestCase) -> ForwardingLab:
    """
    Skip C{testCase}, saying what is missing, if the forwarding lab cannot
    run here; otherwise build one in the test's directory, destroyed by a
    cleanup of C{testCase} (every program and echo server ended, every
    namespace deleted, even when the test fails), as
    L{tests.interop._lab.buildLab} does.

    @raise tools.netlab.LabError: the lab cannot run here and
        C{NATPMP_INTEROP_REQUIRED} is set, or building it failed.
    """
    return buildLabWith(testCase, _forwarding.buildForwardingLab)


async def fromWAN(
    lab: ForwardingLab,
    transport: str,
    port: int,
    timeout: float = 2.0,
    address: str = ROUTER_WAN,
    source: str = "",
) -> Outcome:
    """
    A new C{transport} connection from the WAN host (from its address
    C{source}, if given) to C{port} of the router's external address (or
    C{address}): the LAN host that echoed, or L{REFUSED} or L{SILENT}.
    """
    return await probe(lab.wan, transport, address, port, timeout, source)
