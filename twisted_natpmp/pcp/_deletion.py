# -*- test-case-name: tests.pcp.test_client -*-
"""
How the PCP client deletes mappings (RFC 6887 s15): a MAP of lifetime 0
under the mapping's kept nonce, one by one in the window or all at once at
stop; NO_RESOURCES in answer taken for "nothing left to delete"; and, for a
mapping whose nonce is lost, a take-over with a new nonce first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._exchange import settleAll
from .._types import Transport
from ..errors import NotAuthorizedError, PortMappingError
from ..interfaces import MappingKey
from ._build import deleteRequest, mapRequest
from ._conversation import Conversation, checkResult
from ._matching import Reply
from ._nonces import NonceKeeper, NonceKey, newNonce
from ._wire import Request, Response, ResultCode

__all__ = ["TAKEOVER_LIFETIME", "Deletions"]

log = Logger()

#: The lifetime asked for when taking over a mapping whose nonce is lost,
#: just before deleting it.
TAKEOVER_LIFETIME = 120


class Deletions:
    """
    The deletions of one PCP client.
    """

    def __init__(
        self,
        conversation: Conversation,
        nonces: NonceKeeper,
        key: Callable[[Transport, int], NonceKey],
        takeOver: Callable[[], bool],
    ) -> None:
        """
        @param conversation: the requests to the server.
        @param nonces: where the mappings' nonces are kept.
        @param key: the nonce key of a mapping.
        @param takeOver: whether to take over a mapping whose nonce is lost.
        """
        self._conversation = conversation
        self._nonces = nonces
        self._key = key
        self._takeOver = takeOver

    def delete(
        self, transport: Transport, internalPort: int, timeouts: Sequence[float] | None
    ) -> Deferred[None]:
        """
        Delete one mapping (see L{PCPClient.deleteMapping
        <twisted_natpmp.pcp.client.PCPClient.deleteMapping>}).
        """
        if internalPort == 0:
            return fail(ValueError("internal port 0 cannot be deleted by PCP MAP"))
        try:
            transport = Transport(transport)
            key = self._key(transport, internalPort)
            known = self._nonces.get(key)
            client = self._conversation.clientAddress()
        except (ValueError, PortMappingError) as e:
            return fail(e)
        nonce = newNonce() if known is None else known
        d = self._send(
            deleteRequest(client, nonce, transport, internalPort), key, timeouts
        )
        if known is None and self._takeOver():
            d.addErrback(self._takenOver, key, nonce, timeouts)
        return d

    def deleteAll(
        self, keys: Iterable[MappingKey], timeouts: Sequence[float]
    ) -> Deferred[dict[MappingKey, Failure | None]]:
        """
        Delete several mappings at once (see L{PCPClient.deleteMappings
        <twisted_natpmp.pcp.client.PCPClient.deleteMappings>}).
        """
        try:
            client = self._conversation.clientAddress()
            wanted = [(Transport(t), port) for t, port in keys]
            if any(port == 0 for _, port in wanted):
                raise ValueError("internal port 0 cannot be deleted by PCP MAP")
            known: dict[MappingKey, Request] = {}
            for transport, port in wanted:
                nonce = self._nonces.get(self._key(transport, port))
                if nonce is not None:
                    known[(transport, port)] = deleteRequest(
                        client, nonce, transport, port
                    )
            batch = self._conversation.exchange.submitBatch(
                [(r, r.encode(), None) for r in known.values()], timeouts
            )
        except (ValueError, PortMappingError) as e:
            return fail(e)
        deferreds: dict[MappingKey, Deferred[Any]] = {}
        for key, d in zip(known, batch, strict=True):
            deferreds[key] = d.addCallback(self._deleted, self._key(*key))
        for key in wanted:
            if key not in known:
                deferreds[key] = self.delete(key[0], key[1], timeouts)
        return settleAll(deferreds)

    def _send(
        self, request: Request, key: NonceKey, timeouts: Sequence[float] | None
    ) -> Deferred[None]:
        d = self._conversation.submit(request, timeouts)
        return d.addCallback(self._deleted, key)

    def _deleted(self, reply: Reply, key: NonceKey) -> None:
        if isinstance(reply, Response) and reply.resultCode in (
            ResultCode.SUCCESS,
            ResultCode.NO_RESOURCES,
        ):
            # miniupnpd answers NO_RESOURCES to a deletion of nothing (a
            # retransmitted deletion whose first copy was applied).
            self._nonces.forget(key)
            return
        checkResult(reply)

    def _takenOver(
        self,
        failure: Failure,
        key: NonceKey,
        nonce: bytes,
        timeouts: Sequence[float] | None,
    ) -> Deferred[None]:
        failure.trap(NotAuthorizedError)
        log.info(
            "no PCP nonce kept for {transport} port {port} on {gateway}:"
            " taking the mapping over with a new one to delete it",
            transport=key.transport.label,
            port=key.internalPort,
            gateway=str(key.gateway),
        )
        client = self._conversation.clientAddress()
        request = mapRequest(
            client, nonce, key.transport, key.internalPort, TAKEOVER_LIFETIME
        )
        deletion = deleteRequest(client, nonce, key.transport, key.internalPort)

        def delete(reply: Reply) -> Deferred[None]:
            checkResult(reply)
            return self._send(deletion, key, timeouts)

        return self._conversation.submit(request, timeouts).addCallback(delete)
