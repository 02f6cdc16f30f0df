# -*- test-case-name: tests.natpmp.test_deletions -*-
"""
How the NAT-PMP client deletes mappings (RFC 6886 s3.4): the batch sent at
stop (L{deleteBatch}, for L{NATPMPClient.deleteMappings
<twisted_natpmp.natpmp.client.NATPMPClient.deleteMappings>}) and its
schedule (L{DELETION_TIMEOUTS}); and the memory of the deletions sent
lately (L{SentDeletions}), by which a late duplicate reply to one is told
from an invalid answer to a mapping request.

Sending the deletions together departs from the one request at a time of
s3.1 and s3.7 on purpose.  At stop, time is short (a service manager waits
a few seconds), and a deletion left unsent holds a port on the gateway
until its lifetime runs out, up to hours; one at a time, twenty deletions
over a 600 ms round trip do not fit in 5 s.  The burst is small and
bounded: one 12-byte packet per mapping this host made, each resent on the
s3.1 doubling schedule only until answered (s3.1 lets a client give up on a
deletion sooner than on other requests), no more than the serial schedule
would send; and the one-at-a-time rule of s3.7 protects a gateway just
rebooted from every host re-mapping at once, which a host leaving does not
do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .._exchange import Exchange, settleAll
from .._types import DELETION_TIMEOUTS as _DELETION_TIMEOUTS
from .._types import Transport
from ..interfaces import MappingKey
from ._matching import LATE_REPLY_SECONDS, checkResult, matches
from ._wire import MapRequest, Request, Response

__all__ = ["DELETION_TIMEOUTS", "SentDeletions", "deleteBatch"]

#: The waits after each send of a batch of deletions (RFC 6886 s3.1, s3.4:
#: L{twisted_natpmp._types.DELETION_TIMEOUTS}, one schedule for both
#: protocols), kept importable here.
DELETION_TIMEOUTS = _DELETION_TIMEOUTS


class SentDeletions:
    """
    When each of a client's deletions was last sent, so that a success
    with lifetime 0 for the same port, arriving within
    L{LATE_REPLY_SECONDS <twisted_natpmp.natpmp._matching.LATE_REPLY_SECONDS>},
    is taken for that deletion's late duplicate reply.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: the time of the sends.
        """
        self._clock = clock
        self._sent: dict[MappingKey, float] = {}

    def sent(self, request: Request) -> None:
        """
        Note that C{request} was sent (the exchange's C{sent} hook).
        """
        if isinstance(request, MapRequest) and request.lifetime == 0:
            key = (request.transport, request.internalPort)
            self._sent[key] = self._clock.seconds()

    def answers(self, request: Request, response: Response) -> bool:
        """
        Whether C{response} answers C{request} (the exchange's C{matches}
        predicate), knowing the deletions sent lately.
        """
        lateDeletion = False
        if isinstance(request, MapRequest):
            key = (request.transport, request.internalPort)
            sent = self._sent.get(key)
            if sent is not None:
                lateDeletion = self._clock.seconds() - sent < LATE_REPLY_SECONDS
                if not lateDeletion:
                    del self._sent[key]
        return matches(request, response, lateDeletion)


def deleteBatch(
    exchange: Exchange[Request, Response],
    keys: Iterable[MappingKey],
    timeouts: Sequence[float],
) -> Deferred[dict[MappingKey, Failure | None]]:
    """
    Send a deletion for each of C{keys} at once, outside the queue, and
    wait for them all (see L{NATPMPClient.deleteMappings
    <twisted_natpmp.natpmp.client.NATPMPClient.deleteMappings>}).

    @param exchange: the client's request engine.
    @param keys: the mappings, as C{(transport, internalPort)}.
    @param timeouts: the wait, in seconds, after each send.
    @return: fires with a C{dict} from each key to L{None} or a L{Failure};
        fails only with C{ValueError} (a bad key or schedule), sending
        nothing.
    """
    try:
        requests: dict[MappingKey, MapRequest] = {}
        for transport, internalPort in keys:
            if internalPort == 0:
                raise ValueError("internal port 0 deletes all; use deleteAllMappings")
            key = (Transport(transport), internalPort)
            requests[key] = MapRequest(key[0], internalPort, 0, 0)
        deferreds = exchange.submitBatch(
            [(r, r.encode(), None) for r in requests.values()],
            timeouts,
        )
    except Exception as e:
        return fail(e)
    checked = [d.addCallback(checkResult) for d in deferreds]
    return settleAll(dict(zip(requests, checked, strict=True)))
