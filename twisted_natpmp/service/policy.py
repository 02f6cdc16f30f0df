# -*- test-case-name: tests.service -*-
"""
The numbers the mapper service and its keepers live by: retransmission
schedules, intervals, the renewal floor and the default backoff, each with
the RFC 6886 section it follows.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.application.internet import backoffPolicy

from .._types import DELETION_TIMEOUTS, ProtocolName
from ..errors import GatewayError
from ..pcp._retransmit import errorRetryDelay, renewalPoint

__all__ = [
    "ADDRESS_TIMEOUTS",
    "CONFIRM_SPACING",
    "COPY_SLACK",
    "GATEWAY_CHECK_INTERVAL",
    "HEALTH_INTERVAL",
    "HEALTH_TIMEOUTS",
    "MAP_TIMEOUTS",
    "MAX_HOLD_OFF",
    "MIN_RENEWAL_INTERVAL",
    "SILENCE_REMINDER",
    "SILENCE_WARNING",
    "STOP_DEADLINE",
    "STOP_TIMEOUTS",
    "RENEWAL_SPACING",
    "defaultBackoff",
    "errorWait",
    "mapTimeoutsFor",
    "randomHoldOff",
    "renewalRetryPoint",
]

#: RFC 6886 s3.7: wait a random time, uniform in 0-5 s, before re-mapping.
MAX_HOLD_OFF = 5.0
#: An announcement that brings no news (no loss of state by the s3.6 rule,
#: no new address) still leads to the mappings being confirmed, but a
#: confirmation starts at least this many seconds after the one before: the
#: s3.7 hold-off window, so that copies of announcements (s3.2.1 has the
#: gateway send ten) or forged ones cannot make the service re-map faster.
CONFIRM_SPACING = 5.0
#: How far, in seconds, two estimates of when the gateway's epoch began (the
#: local time of a packet less the epoch it carries, whole seconds) may
#: differ and still mean the same run of the gateway, without a restart in
#: between.  A grant made in the first COPY_SLACK seconds of a run proves
#: nothing: a restart just after it would look the same.
COPY_SLACK = 2.0
#: The default interval of the external-address health check, in seconds.
HEALTH_INTERVAL = 60.0
#: The default interval between default-gateway checks, in seconds.
GATEWAY_CHECK_INTERVAL = 60.0
#: A gateway's short grant never makes renewals come sooner than this many
#: seconds apart (one granting 1 s would otherwise be asked 121 times a
#: minute per mapping); such a gateway is warned about once, and its
#: mappings may lapse between renewals.  A lifetime asked for that is
#: shorter than twice this is renewed at half of it, as asked.
MIN_RENEWAL_INTERVAL = 10.0
#: Retransmission schedule of the deletions sent when stopping or removing:
#: the RFC 6886 s3.1 doubling schedule (sends at 0, 0.25, 0.75, 1.75 and
#: 3.75 s, each until answered), given up at 4.75 s, within
#: L{STOP_DEADLINE}: s3.1 lets a client give up on a deletion sooner than on
#: other requests, after sending it at least once.
STOP_TIMEOUTS = DELETION_TIMEOUTS
#: Retransmission schedule of the health check: short, so that it does not
#: hold up the request queue (RFC 6886 s3.1) for two minutes when the gateway
#: is away; a missed check is only logged.
HEALTH_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Retransmission schedule of the external-address request made before the
#: mapping requests (at start and when re-mapping): short, so that the
#: mappings do not wait behind it (RFC 6886 s3.1 sends one request at a
#: time) when the gateway is silent; the address is asked again later.
ADDRESS_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0)
#: Retransmission schedule of one mapping attempt: RFC 6886 s3.1's 250 ms,
#: doubling (sends at 0, 0.25, 0.75 and 1.75 s), given up at 3.75 s rather
#: than after 127.75 s, and retried after the backoff behind the other
#: requests.  Requests still go one at a time (s3.1), so one unlucky request
#: on a lossy link no longer holds up every other mapping for minutes.
MAP_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: RFC 6887 s11.2.1: two renewals of one mapping are never sent less than
#: this many seconds apart.
RENEWAL_SPACING = 4.0
#: However many mappings remain, stopping gives up on them after this long.
STOP_DEADLINE = 5.0
#: Seconds without an answer from the gateway, while asking, before a person
#: is told.
SILENCE_WARNING = 3.0
#: Seconds between the reminders while the gateway stays silent.
SILENCE_REMINDER = 300.0


def randomHoldOff() -> float:
    """
    RFC 6886 s3.7: a random wait, uniform in 0-L{MAX_HOLD_OFF} seconds,
    before re-mapping.
    """
    return random.uniform(0.0, MAX_HOLD_OFF)


def defaultBackoff(
    jitter: Callable[[], float] = random.random,
) -> Callable[[int], float]:
    """
    The default retry policy: 1 s after the first failure, doubling up to 5
    minutes, plus C{jitter()} seconds (0 to 1 by default).  (Each failed
    mapping attempt already took 3.75 s of retransmissions,
    L{MAP_TIMEOUTS}; against a silent gateway the waits grow, so it is not
    flooded.)
    """
    return backoffPolicy(initialDelay=1.0, maxDelay=300.0, factor=2.0, jitter=jitter)


def mapTimeoutsFor(protocol: ProtocolName) -> tuple[float, ...] | None:
    """
    The retransmission schedule the keeper gives one mapping attempt in
    C{protocol}: NAT-PMP's short L{MAP_TIMEOUTS}, retried after the backoff;
    for PCP L{None}, so that the client's own RFC 6887 s8.1.1 schedule (and
    its overall limit) applies.
    """
    return MAP_TIMEOUTS if protocol is ProtocolName.NATPMP else None


def renewalRetryPoint(
    protocol: ProtocolName,
    lifetime: float,
    attempt: int,
    random: Callable[[], float] = random.random,
) -> float | None:
    """
    When to try again to renew a mapping held in C{protocol} after
    C{attempt} renewals of it failed, in seconds after its grant: RFC 6887
    s11.2.1's points for PCP (in [3/4, 3/4 + 1/16] of the lifetime after
    the first failure, [7/8, 7/8 + 1/32] after the second, and so on);
    L{None} for NAT-PMP, whose failed renewals are retried after the
    backoff (RFC 6886 s3.3 says no more).

    @param lifetime: the effective lifetime of the grant.
    @param attempt: the failed renewals so far, at least 1.
    """
    if protocol is not ProtocolName.PCP:
        return None
    return renewalPoint(lifetime, attempt, random)


def errorWait(error: BaseException | None) -> float | None:
    """
    How long to wait after a gateway's error that says how long it holds
    (PCP's error lifetime, RFC 6887 s7.4): a short-lived one for its
    lifetime, a long-lived one for at least half an hour (miniupnpd puts 0
    in those: "not soon", never "now"), by
    L{errorRetryDelay <twisted_natpmp.pcp._retransmit.errorRetryDelay>}.

    @return: the seconds, or L{None} for an error that carries no lifetime
        (NAT-PMP's, the transport's, no answer): the backoff applies.
    """
    if isinstance(error, GatewayError) and error.lifetime is not None:
        return errorRetryDelay(error)
    return None
