# -*- test-case-name: tests.pcp.test_client -*-
"""
How L{PCPClient <twisted_natpmp.pcp.client.PCPClient>} learns the external
address, which PCP tells only in a MAP response (RFC 6887 s11): a
short-lived mapping of the client's own UDP port, deleted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress, Transport
from ..errors import PortMappingError
from ._build import deleteRequest, mapRequest
from ._nonces import newNonce
from ._wire import Response

if TYPE_CHECKING:
    from .client import PCPClient

# What is logged here is the client's.
log = Logger(namespace="twisted_natpmp.pcp.client")

#: The lifetime of the short-lived MAP by which L{PCPClient.externalAddress}
#: learns the address (miniupnpd's least).
EXTERNAL_QUERY_LIFETIME = 120


def queryExternalAddress(
    pcp: PCPClient, timeouts: Sequence[float] | None
) -> Deferred[IPAddress]:
    """
    Map C{pcp}'s own UDP port for L{EXTERNAL_QUERY_LIFETIME} seconds under a
    nonce kept nowhere else, read the address granted, and delete that
    mapping again (a failed deletion is logged; the mapping then expires by
    itself).
    """
    port = pcp.exchange.port
    try:
        if port is None:
            raise PortMappingError("the PCP client is not listening")
        client = pcp.conversation.clientAddress()
    except PortMappingError as e:
        return fail(e)
    internalPort: int = port.getHost().port  # type: ignore[attr-defined]
    nonce = newNonce()
    request = mapRequest(
        client, nonce, Transport.UDP, internalPort, EXTERNAL_QUERY_LIFETIME
    )

    def deleted(result: object, address: IPAddress) -> IPAddress:
        if isinstance(result, Failure):
            log.info(
                "could not delete the PCP mapping made to learn the"
                " external address: {error}",
                error=result.getErrorMessage(),
            )
        return address

    def granted(response: Response) -> Deferred[IPAddress]:
        address = pcp._gotMapping(response, EXTERNAL_QUERY_LIFETIME)
        assert address.externalAddress is not None
        deletion = deleteRequest(client, nonce, Transport.UDP, internalPort)
        d = pcp._submit(deletion, timeouts)
        return d.addBoth(deleted, address.externalAddress)

    return pcp._submit(request, timeouts).addCallback(granted)
