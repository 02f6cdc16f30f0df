# -*- test-case-name: tests.test_exchange -*-
"""
The request engine under each protocol's client: it owns the UDP socket
that talks to one gateway, the requests pending on it and their timers.

An L{Exchange} knows no wire format.  A client hands it a request (the
client's own value, kept for matching), the bytes to send and a
retransmission schedule; the engine sends the bytes, resends them after
each wait of the schedule, and fires the request's L{Deferred
<twisted.internet.defer.Deferred>} with the decoded reply that answers it,
or fails it with L{twisted_natpmp.errors.NoResponseError} once the schedule
(or the caller's overall time limit) runs out.  Replies are decoded by the client's
C{decode}, and matched to requests either by a predicate (C{matches},
which NAT-PMP needs: a reply answers every identical request in flight) or
by a key (C{keyOf}, as PCP's nonces allow).

Requests wait their turn in a queue: with C{window=1} (serial mode) one is
in flight at a time (RFC 6886 s3.1); a larger window lets that many be in
flight at once.  A request submitted with C{queued=False} goes out at once,
outside the queue and the window (a batch of deletions at stop).

Twisted's names resolver is the model (C{DNSDatagramProtocol}'s table of
pending requests, each a Deferred and a timer; the resolver's tuple of
timeouts consumed by the resend loop); unlike it, cancelling a request's
Deferred stops its retransmissions.

ICMP port unreachable fails the requests in flight with
L{twisted_natpmp.errors.NotSupportedError}, whether Twisted reports it as
C{connectionRefused} or (the epoll reactor, on a connected UDP port) by
closing the port; in the second case a fresh port is bound, so that later
requests can still be made.
"""

from __future__ import annotations

from ._engine import Exchange
from ._pending import (
    DEFAULT_TIMEOUTS,
    Pending,
    checkTimeouts,
    notifyObservers,
    settleAll,
)
from ._socket import ExchangeProtocol, GatewaySocket

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Exchange",
    "ExchangeProtocol",
    "GatewaySocket",
    "Pending",
    "checkTimeouts",
    "notifyObservers",
    "settleAll",
]
