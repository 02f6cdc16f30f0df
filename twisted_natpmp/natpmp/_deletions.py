# -*- test-case-name: tests.natpmp.test_deletions -*-
"""
The deletions a NAT-PMP client asks for (RFC 6886 s3.4): one mapping, all
of a transport's, and a batch of them at once as a client stops.  A mixin
of L{NATPMPClient <twisted_natpmp.natpmp.client.NATPMPClient>}.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from .._exchange import Exchange
from .._types import Transport
from ..interfaces import MappingKey
from ._deletion import DELETION_TIMEOUTS, deleteBatch
from ._wire import MapRequest, Request, Response

__all__ = ["DeletionsMixin"]


class DeletionsMixin:
    """
    The deletions of a NAT-PMP client.

    @ivar exchange: the request engine that owns the socket.
    """

    exchange: Exchange[Request, Response]

    def deleteMapping(
        self,
        transport: Transport,
        internalPort: int,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[None]:
        """
        Delete this host's mapping of C{internalPort}: lifetime 0 and
        suggested external port 0 (RFC 6886 s3.4).  Deleting a mapping that
        does not exist succeeds.
        """
        if internalPort == 0:
            return fail(
                ValueError("internal port 0 deletes all; use deleteAllMappings")
            )
        return self._delete(transport, internalPort, timeouts)

    def deleteAllMappings(
        self, transport: Transport, timeouts: Sequence[float] | None = None
    ) -> Deferred[None]:
        """
        Delete all of this host's mappings of C{transport}: internal port 0,
        external port 0, lifetime 0 (RFC 6886 s3.4).
        """
        return self._delete(transport, 0, timeouts)

    def deleteMappings(
        self,
        keys: Iterable[MappingKey],
        timeouts: Sequence[float] = DELETION_TIMEOUTS,
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several of this host's mappings at once, as a client does
        when it stops (RFC 6886 s3.4): every deletion request is sent at
        once, outside the queue of
        L{addMapping <twisted_natpmp.natpmp.client.NATPMPClient.addMapping>}
        and the others, and each is
        resent after the waits of C{timeouts} until its reply comes.  Each
        reply is matched by opcode, transport and internal port.

        Sending the deletions together departs from the one request at a
        time of s3.1 and s3.7 on purpose, and within bounds: see
        L{twisted_natpmp.natpmp._deletion}.

        @param keys: the mappings, as C{(transport, internalPort)}; internal
            port 0 (delete all) is refused, use L{deleteAllMappings}.
        @param timeouts: the wait, in seconds, after each send; by default
            L{DELETION_TIMEOUTS}.  N waits mean each deletion is sent at
            most N times; the result comes at the latest after their sum.
        @return: fires with a C{dict} from each key to L{None} (deleted: the
            gateway answered success) or a L{Failure}: L{NoResponseError}
            (no answer in time), a L{GatewayError} (refused with a result
            code), L{NotSupportedError} (ICMP port unreachable),
            L{twisted.internet.defer.CancelledError} (cancelled, or the
            client stopped).  It fails only with C{ValueError} for a bad key
            or schedule, sending nothing.  Cancelling it cancels every
            deletion still waiting.
        """
        return deleteBatch(self.exchange, keys, timeouts)

    # Internals

    def _delete(
        self, transport: Transport, internalPort: int, timeouts: Sequence[float] | None
    ) -> Deferred[None]:
        try:
            request = MapRequest(Transport(transport), internalPort, 0, 0)
        except ValueError as e:
            return fail(e)
        return self._submit(request, timeouts).addCallback(lambda _: None)

    def _submit(
        self, request: Request, timeouts: Sequence[float] | None
    ) -> Deferred[Response]:
        raise NotImplementedError()  # pragma: no cover (the client's)
