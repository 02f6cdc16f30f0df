"""
The interop suite's side of the forwarding lab (L{tools.netlab.forwarding}):
L{buildForwardingLab} builds one for a trial test case and turns
L{LabUnavailable} into a skip; L{Forwarding} says what reaches the LAN
hosts from the WAN host.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase

from tools.netlab import WAN_HOST, LabUnavailable
from tools.netlab import forwarding as _forwarding
from tools.netlab.echo import CLOSED, REFUSED, SILENT, Outcome, probe
from tools.netlab.forwarding import ForwardingLab

from ._lab import ROUTER_WAN

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


def _privateState(testCase: TestCase) -> None:
    # As buildLab does: PCP nonces under the test's own directory.
    state = Path(testCase.mktemp())
    state.mkdir(parents=True)
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(state.resolve())

    def restore() -> None:
        if previous is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = previous

    testCase.addCleanup(restore)


def buildForwardingLab(testCase: TestCase) -> ForwardingLab:
    """
    Skip C{testCase}, saying what is missing, if the forwarding lab cannot
    run here; otherwise build one in the test's directory, destroyed by a
    cleanup of C{testCase} (every program and echo server ended, every
    namespace deleted, even when the test fails).  Programs it starts keep
    their PCP state in the test's directory, as with
    L{tests.interop._lab.buildLab}.

    @raise tools.netlab.LabError: the lab cannot run here and
        C{NATPMP_INTEROP_REQUIRED} is set, or building it failed.
    """
    _privateState(testCase)
    try:
        lab = _forwarding.buildForwardingLab(Path(testCase.mktemp()))
    except LabUnavailable as e:
        raise SkipTest(str(e)) from None
    testCase.addCleanup(lambda: Deferred.fromCoroutine(lab.destroy()))
    return lab


async def fromWAN(
    lab: ForwardingLab, transport: str, port: int, timeout: float = 2.0
) -> Outcome:
    """
    A new C{transport} connection from the WAN host to the router's external
    address and C{port}: the LAN host that echoed, or L{REFUSED} or
    L{SILENT}.
    """
    return await probe(lab.wan, transport, ROUTER_WAN, port, timeout)
