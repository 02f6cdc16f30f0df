# -*- test-case-name: tests.pcp.test_nonces -*-
"""
What a PCP client keeps its mapping nonces by (RFC 6887 s11.1): the key of
a mapping's nonce (L{NonceKey}), a fresh nonce (L{newNonce}), what a nonce
keeper must do (L{NonceKeeper}), and the keeper that holds them in this
process only (L{MemoryNonceStore}).  The file that keeps them across
processes is L{twisted_natpmp.pcp._nonces}'s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Protocol

from .._types import IPAddress, Transport
from ._fields import MAX_PORT, NONCE_SIZE, checkRange

__all__ = ["MemoryNonceStore", "NonceKeeper", "NonceKey", "newNonce"]


def newNonce() -> bytes:
    """
    @return: 96 fresh random bits (RFC 6887 s11.1), from C{secrets}.
    """
    return secrets.token_bytes(NONCE_SIZE)


@dataclass(frozen=True, slots=True)
class NonceKey:
    """
    Which mapping a nonce belongs to.

    @ivar gateway: the PCP server's address.
    @ivar transport: the transport mapped.
    @ivar internalPort: the internal port mapped.
    @ivar internalAddress: the internal address, when the mapping is made
        for another host (THIRD_PARTY) or from one of several addresses;
        L{None} for this host's usual one.
    """

    gateway: IPAddress
    transport: Transport
    internalPort: int
    internalAddress: IPAddress | None = None

    def __post_init__(self) -> None:
        checkRange("internal port", self.internalPort, MAX_PORT)

    def _toJSON(self) -> dict[str, Any]:
        return {
            "gateway": str(self.gateway),
            "transport": self.transport.value,
            "internalPort": self.internalPort,
            "internalAddress": (
                None if self.internalAddress is None else str(self.internalAddress)
            ),
        }

    @classmethod
    def _fromJSON(cls, entry: dict[str, Any]) -> NonceKey:
        internal = entry["internalAddress"]
        port = entry["internalPort"]
        if type(port) is not int:
            raise ValueError(f"port {port!r}")
        return cls(
            ip_address(entry["gateway"]),
            Transport(entry["transport"]),
            port,
            None if internal is None else ip_address(internal),
        )


class NonceKeeper(Protocol):
    """
    What a PCP client needs of a nonce store: L{NonceStore}, or
    L{MemoryNonceStore} where nothing should outlive the process.
    """

    def get(self, key: NonceKey) -> bytes | None: ...

    def nonceFor(self, key: NonceKey) -> bytes: ...

    def remember(self, key: NonceKey, nonce: bytes) -> None: ...

    def forget(self, key: NonceKey) -> None: ...


class MemoryNonceStore:
    """
    Nonces kept by this process only (for tests, benchmarks, and callers
    that never hand a mapping to another process).

    @ivar nonces: the nonce of each mapping.
    """

    def __init__(self) -> None:
        self.nonces: dict[NonceKey, bytes] = {}

    def get(self, key: NonceKey) -> bytes | None:
        """
        @return: the nonce kept for C{key}, or L{None}.
        """
        return self.nonces.get(key)

    def nonceFor(self, key: NonceKey) -> bytes:
        """
        @return: the nonce kept for C{key}, or a new one, kept from now on.
        """
        nonce = self.nonces.get(key)
        if nonce is None:
            nonce = self.nonces[key] = newNonce()
        return nonce

    def remember(self, key: NonceKey, nonce: bytes) -> None:
        """
        Keep C{nonce} for C{key}.

        @raise ValueError: C{nonce} is not 12 bytes.
        """
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce of {len(nonce)} bytes, not {NONCE_SIZE}")
        self.nonces[key] = nonce

    def forget(self, key: NonceKey) -> None:
        """
        Stop keeping C{key}'s nonce.
        """
        self.nonces.pop(key, None)
