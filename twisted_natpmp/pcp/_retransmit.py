# -*- test-case-name: tests.pcp.test_retransmit -*-
"""
The times a PCP client lives by: the s8.1.1 retransmission schedule, the
s11.2.1 renewal points, and how long to wait after a gateway's error.

Pure code: no I/O, no reactor, no logging; randomness is an argument.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from ..errors import GatewayError

__all__ = [
    "CALL_LIMIT",
    "IRT",
    "LONG_ERROR_BACKOFF",
    "MRT",
    "RAND",
    "SHORT_ERROR_RETRY",
    "errorRetryDelay",
    "renewalPoint",
    "retransmissionSchedule",
]

#: RFC 6887 s8.1.1: the initial retransmission time, in seconds.
IRT = 3.0
#: RFC 6887 s8.1.1: the maximum retransmission time, in seconds.
MRT = 1024.0
#: RFC 6887 s8.1.1: each wait is multiplied by 1 + RAND, RAND uniform in
#: [-0.1, +0.1].
RAND = 0.1
#: RFC 6887 s8.1.1 sets no overall limit (MRC and MRD are 0); a call gives up
#: after this many seconds, as the NAT-PMP client does after its RFC 6886
#: s3.1 schedule (127.75 s).  Sends at about 0, 3, 9, 21, 45 and 93 s.
CALL_LIMIT = 128.0
#: How long to wait after a short-lived error (RFC 6887 s7.4) whose
#: lifetime field is 0: miniupnpd's own short error lifetime.
SHORT_ERROR_RETRY = 30.0
#: The least wait after a long-lived error (RFC 6887 s7.4): half an hour,
#: as bodgit's natpmpd announces them.  miniupnpd puts 0 in the lifetime of
#: long-lived errors: that is "not soon", never "now".
LONG_ERROR_BACKOFF = 1800.0


def _jitter(random: Callable[[], float]) -> float:
    return 1.0 + RAND * (2.0 * random() - 1.0)


def retransmissionSchedule(
    random: Callable[[], float] = _random.random, limit: float = CALL_LIMIT
) -> tuple[float, ...]:
    """
    The waits after each send of a request, by RFC 6887 s8.1.1: first
    C{RT = (1 + RAND) * IRT}, then C{RT = (1 + RAND) * 2 * RTprev}, and once
    that passes C{MRT}, C{RT = (1 + RAND) * MRT}; as many as it takes for
    their sum to reach C{limit} (the caller's overall limit ends the last).

    @param random: a source of floats in [0, 1).
    @param limit: the overall limit, in seconds, more than 0.
    @return: the waits, at least one.
    """
    waits: list[float] = []
    total = 0.0
    wait = 0.0
    while total < limit:
        if not waits:
            wait = _jitter(random) * IRT
        else:
            wait = _jitter(random) * 2 * wait
            if wait > MRT:
                wait = _jitter(random) * MRT
        waits.append(wait)
        total += wait
    return tuple(waits)


def renewalPoint(
    lifetime: float, attempt: int = 0, random: Callable[[], float] = _random.random
) -> float:
    """
    When to send a renewal, in seconds after the grant (RFC 6887 s11.2.1):
    the first at a random point in [1/2, 5/8] of the lifetime; if that goes
    unanswered, the next in [3/4, 3/4 + 1/16], then [7/8, 7/8 + 1/32], and
    so on.  The caller keeps two renewals at least 4 s apart.

    @param lifetime: the lifetime granted (or asked for, if less).
    @param attempt: 0 for the first renewal, 1 for the first retry, ...
    @param random: a source of floats in [0, 1).
    @return: seconds after the grant, below C{lifetime}.
    """
    if attempt < 0:
        raise ValueError(f"attempt {attempt} is negative")
    low = 1.0 - 2.0 ** -(attempt + 1)
    width = 2.0 ** -(attempt + 3)
    return lifetime * (low + width * random())


def errorRetryDelay(error: GatewayError) -> float:
    """
    How long to wait before asking again after the gateway answered
    C{error} (RFC 6887 s7.4, s8.3): a short-lived error after the lifetime
    it carries (L{SHORT_ERROR_RETRY} if that is 0); a long-lived one after
    its lifetime, but never sooner than L{LONG_ERROR_BACKOFF} (miniupnpd
    sends 0 for every long-lived error).

    @param error: the error, as the client raised it (its C{lifetime} is
        the response's lifetime field; L{None} if it had none).
    @return: seconds.
    """
    lifetime = float(error.lifetime or 0)
    if error.shortLived:
        return lifetime if lifetime > 0 else SHORT_ERROR_RETRY
    return max(lifetime, LONG_ERROR_BACKOFF)
