# -*- test-case-name: tests.server.test_dispatch -*-
"""
Dispatch by version byte: which protocol's responder answers a packet.

Every NAT-PMP and PCP packet starts with a version byte, and has the top
bit of its second byte set when it is a response (NAT-PMP's opcode 128 +
x, RFC 6886 s3; PCP's R bit, RFC 6887 s7.1).  A response sent to a gateway
is dropped, whatever its version (RFC 6886 s3.3, RFC 6887 s8.2).  The rest
go to the responder registered for their version, or to the fallback, which
answers Unsupported Version.

With PCP on (L{twisted_natpmp.server.gateway.Gateway} arranges it), PCP's
responder is the fallback and is registered for version 2, and NAT-PMP's
for 0 and 1: 0 is NAT-PMP, 2 is PCP, any version above 2 gets PCP's
UNSUPP_VERSION naming 2 (RFC 6887 s9), and 1, which is never used (RFC 6886
s1.1), gets NAT-PMP's Unsupported Version: the highest version below 1 we
speak is 0.  With PCP off, NAT-PMP's responder is the fallback and answers
every other version with its Unsupported Version reply (RFC 6886 s1.1,
s3.5 with Errata 3618).

Packets too short to hold a version and an opcode go to the version-0
responder, which drops them and says why.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Protocol

from .._droplog import DropLog
from .._types import IPAddress, Transport
from ._entries import GatewayMapping, Refused
from .backends._filters import RemoteFilter

__all__ = ["GatewayCore", "Responder", "VersionDispatcher"]

_RESPONSE_BIT = 0x80


class GatewayCore(Protocol):
    """
    What a responder may use of the gateway
    (L{twisted_natpmp.server.gateway.Gateway} provides it): the table's
    operations, refusing by meaning, and the aggregated logs.

    @ivar drops: where a responder counts the packets it drops.
    """

    drops: DropLog

    @property
    def externalAddress(self) -> IPv4Address | None:
        """
        The external address, or L{None} while there is none.
        """

    def epoch(self) -> int:
        """
        Seconds since the table's epoch began (RFC 6886 s3.6, RFC 6887
        s8.5).
        """

    def isInternal(self, address: IPAddress) -> bool:
        """
        Whether C{address} is in the internal networks served.
        """

    def canFilter(self) -> bool:
        """
        Whether the backend can limit a mapping to some remote peers.
        """

    def setFilters(
        self, mapping: GatewayMapping, filters: tuple[RemoteFilter, ...]
    ) -> None:
        """
        Limit C{mapping} to the remote peers of C{filters} (none: all).

        @raise Refused: the backend could not.
        """

    def admit(self, host: str) -> bool:
        """
        Whether a mapping request from C{host} is within its rate limit (if
        not, it is counted as dropped).
        """

    def map(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        suggestedExternalPort: int,
        lifetime: int,
        *,
        owner: bytes | None = None,
        exact: bool = False,
    ) -> GatewayMapping:
        """
        Create or renew a mapping.

        @param owner: who may change or delete it (PCP's nonce), L{None} for
            a protocol without one (NAT-PMP).
        @param exact: refuse (L{twisted_natpmp.errors.CannotProvideExternalError})
            rather than grant another external port than the one suggested.
        @raise Refused: by meaning.
        """

    def delete(
        self,
        client: IPAddress,
        transport: Transport,
        internalPort: int,
        *,
        owner: bytes | None = None,
    ) -> GatewayMapping | None:
        """
        Delete a mapping; none to delete is success.

        @param owner: the requester's owner token (see L{map}).
        @raise Refused: by meaning (another owner's mapping: not
            authorized).
        """

    def deleteAll(
        self, client: IPAddress, transport: Transport, *, owner: bytes | None = None
    ) -> list[GatewayMapping]:
        """
        Delete every mapping of C{transport} that C{client} holds (those
        C{owner}, a PCP nonce, may delete; L{None}: a NAT-PMP request).

        @raise Refused: for the first that could not be deleted.
        """

    def refused(self, client: IPAddress, refusal: Refused, answer: str) -> None:
        """
        Count and log, in aggregate, a request refused with C{answer} (in
        the responder's protocol's words: C{"answered result 4"}).
        """


class Responder(Protocol):
    """
    One protocol's side of a gateway: request bytes in, response bytes out.
    """

    def respond(self, packet: bytes, client: IPAddress) -> bytes | None:
        """
        Answer C{packet} from C{client} (already known to be internal).

        @return: the response, or L{None} to send none (counted as a drop).
        """


class VersionDispatcher:
    """
    Hands each request to the responder for its version byte.

    @ivar fallback: the responder for versions nobody registered for.
    """

    def __init__(self, fallback: Responder, drops: DropLog) -> None:
        """
        @param fallback: answers versions without a responder of their own;
            it is also registered for version 0 (NAT-PMP) unless another
            responder is.
        @param drops: where dropped responses are counted.
        """
        self.fallback = fallback
        self._drops = drops
        self._responders: dict[int, Responder] = {0: fallback}

    def register(self, version: int, responder: Responder) -> None:
        """
        Have C{responder} answer the packets of C{version}.

        @raise ValueError: C{version} is not a byte.
        """
        if not 0 <= version <= 255:
            raise ValueError(f"version {version} is not a byte")
        self._responders[version] = responder

    def responderFor(self, version: int) -> Responder:
        """
        The responder for packets of C{version}.
        """
        return self._responders.get(version, self.fallback)

    def respond(self, packet: bytes, client: IPAddress) -> bytes | None:
        """
        Answer C{packet} from the internal C{client} with the responder for
        its version, or drop it if it is a response.
        """
        if len(packet) < 2:
            return self.responderFor(0).respond(packet, client)
        if packet[1] & _RESPONSE_BIT:
            # RFC 6886 s3.3, RFC 6887 s8.2: a response sent to the gateway is
            # ignored.
            self._drops.drop(
                str(client), "a response, not a request", f"opcode {packet[1]}"
            )
            return None
        return self._responders.get(packet[0], self.fallback).respond(packet, client)
