"""
The interop suite's side of the network-namespace lab (L{tools.netlab}):
its names, and L{buildLab}, which builds a lab for one trial test case and
turns L{LabUnavailable} into a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tools.netlab import (
    LAN_HOSTS,
    NOBODY,
    ROUTER_LAN,
    ROUTER_WAN,
    SECOND_GATEWAY,
    WAN_HOST,
    Completed,
    Daemon,
    Inbox,
    Lab,
    LabError,
    LabUnavailable,
    NamespacedReactor,
    RunningRelay,
    insideNamespace,
    sleep,
    waitUntil,
)

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
    "LabError",
    "LabUnavailable",
    "NamespacedReactor",
    "RunningRelay",
    "buildLab",
    "buildLabWith",
    "insideNamespace",
    "privateState",
    "sleep",
    "waitUntil",
]


_SomeLab = TypeVar("_SomeLab", bound=Lab)


def buildLab(testCase: SynchronousTestCase) -> Lab:
    """
    Skip C{testCase}, saying what is missing, if the lab cannot run here;
    otherwise build a lab (without miniupnpd running) in the test's own
    directory, destroyed by a cleanup of C{testCase} (so its namespaces go
    and every program it started is ended, by pid, even when the test
    fails).

    Everything the test runs (programs the lab starts, which inherit this
    environment, and services in this process that keep the default nonce
    store) keeps its PCP state under a fresh C{XDG_STATE_HOME} in the
    test's directory, never in the user's own state directory.

    @raise LabError: the lab cannot run here and C{NATPMP_INTEROP_REQUIRED}
        is set, or building it failed.
    """
    return buildLabWith(testCase, Lab.build)


def buildLabWith(
    testCase: SynchronousTestCase, build: Callable[[Path], _SomeLab]
) -> _SomeLab:
    """
    L{buildLab}, with the lab built by C{build(directory)} (e.g. a lab
    with more in it, which may raise L{LabUnavailable} for what it needs
    besides).
    """
    privateState(testCase)
    try:
        lab = build(Path(testCase.mktemp()))
    except LabUnavailable as e:
        raise SkipTest(str(e)) from None
    testCase.addCleanup(lambda: Deferred.fromCoroutine(lab.destroy()))
    return lab


def privateState(testCase: SynchronousTestCase) -> None:
    """
    Give everything C{testCase} runs a fresh C{XDG_STATE_HOME} in the
    test's directory (so PCP nonce files never land in the user's own),
    restored by a cleanup.
    """
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
