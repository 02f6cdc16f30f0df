"""
Timing helpers: bounded loops, best of a few rounds.

Absolute times on a shared machine are noise; the figures that matter are
ratios of rates measured the same way in the same run.  Each rate is the
best of a few rounds (as C{timeit} advises: slower rounds measure other
load on the machine, not the code), and contenders are measured in
alternating rounds so that a burst of load hits both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

#: How many rounds each rate is the best of.
ROUNDS = 3


def rate(loop: Callable[[int], object], count: int, rounds: int = ROUNDS) -> float:
    """
    Run C{loop(count)} C{rounds} times; return the best rate, in iterations
    per second.
    """
    return interleaved([loop], count, rounds)[0]


def interleaved(
    loops: Sequence[Callable[[int], object]], count: int, rounds: int = ROUNDS
) -> list[float]:
    """
    Run each of C{loops} with C{count} iterations, C{rounds} times in
    alternation; return each one's best rate, in iterations per second.
    """
    best = [0.0] * len(loops)
    for _ in range(rounds):
        for i, loop in enumerate(loops):
            start = time.perf_counter()
            loop(count)
            elapsed = time.perf_counter() - start
            best[i] = max(best[i], count / max(elapsed, 1e-9))
    return best
