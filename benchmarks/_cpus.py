"""
Keep clients and servers on CPUs of their own.

A request answered one at a time over loopback costs twice as much when
the client and the server happen to share a CPU as when they do not, and
the scheduler's choice changes from one run to the next.  So the benchmark
process (the clients and load generators) runs on the first CPU it may use
and every server it starts on the last, when there are two or more.
"""

from __future__ import annotations

import os

_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def describe() -> str:
    """
    Where clients and servers run, for a person.
    """
    if len(_CPUS) < 2:
        return "clients and servers share the only CPU"
    return f"clients on CPU {_CPUS[0]}, servers on CPU {_CPUS[-1]}"


def pinClients() -> None:
    """
    Keep this process (and the processes it starts, until they are pinned
    elsewhere) on the clients' CPU.
    """
    if len(_CPUS) >= 2:
        os.sched_setaffinity(0, {_CPUS[0]})


def pinServer(pid: int) -> None:
    """
    Move process C{pid} to the servers' CPU (ignored if it has gone).
    """
    if len(_CPUS) >= 2:
        try:
            os.sched_setaffinity(pid, {_CPUS[-1]})
        except (ProcessLookupError, PermissionError):
            pass
