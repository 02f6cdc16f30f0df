# -*- test-case-name: tests.server.test_vpn -*-
"""
L{VPNProfile}: our gateway behaving like a VPN gateway's port forwarding
(ProtonVPN's, PROTOCOL.md Part E1), so that the forwarded-port mode of the
client and of C{twistd natpmp --forwarded-port} can be tried without a VPN
(C{twistd natpmp-gateway --vpn-profile}).

A NAT-PMP map request with internal port 0 and a non-zero lifetime, which
RFC 6886 s3.4 leaves without meaning (internal port 0 means delete-all with
lifetime 0 only), is answered as such a gateway does:

  - the client's forwarded port of that transport is renewed if it holds
    one; otherwise it gets the port its forwarded port of the other
    transport has, if free for this one (so that UDP and TCP share a
    public port); otherwise a random free port of the pool.  The
    suggested external port is ignored, as the VPN gateway's own choice
    is.
  - the lease is fixed (60 s by default) whatever lifetime was asked.
  - the reply's internal port is 0, as ProtonVPN's replies say ("Mapped
    public port 38534 protocol UDP to local port 0 lifetime 60").
  - the mapping in the table forwards the public port to the same port on
    the client, where the application listens.

Internal port 0 with lifetime 0 keeps its RFC meaning, delete-all, and
every other request is served as without the profile.  The profile's
memory of the forwarded ports is pure; the table does the rest.
"""

from __future__ import annotations

import random as _random
from typing import TYPE_CHECKING

from .._types import IPAddress, Transport
from ..errors import OutOfResourcesError
from ._entries import GatewayMapping, Refused
from ._index import otherTransport

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["DEFAULT_VPN_LEASE", "VPNProfile"]

#: The lease ProtonVPN grants, whatever is asked.
DEFAULT_VPN_LEASE = 60


class VPNProfile:
    """
    Grants a VPN gateway's forwarded port for internal port 0 with a
    lifetime (see the module).

    @ivar lease: the lifetime granted, in seconds.
    """

    def __init__(
        self,
        gateway: Gateway,
        lease: int = DEFAULT_VPN_LEASE,
        random: _random.Random | None = None,
    ) -> None:
        """
        @param gateway: the gateway whose table holds the mappings.
        @param lease: the lifetime granted (clamped by the table's maximum).
        @param random: picks the public ports (tests pass a seeded one).
        """
        if lease < 1:
            raise ValueError(f"bad VPN lease {lease}")
        self._gateway = gateway
        self.lease = lease
        self._random = _random.Random() if random is None else random
        # Each client's forwarded port, by transport.
        self._forwarded: dict[tuple[IPAddress, Transport], int] = {}

    def forwardedPort(self, client: IPAddress, transport: Transport) -> int | None:
        """
        The public port C{client} holds forwarded for C{transport}, if live.
        """
        port = self._forwarded.get((client, transport))
        if port is None or self._gateway.table.get(client, transport, port) is None:
            return None
        return port

    def forward(self, client: IPAddress, transport: Transport) -> GatewayMapping:
        """
        Grant or renew C{client}'s forwarded port of C{transport} for the
        lease.

        @raise Refused: no port is free, or the table refused (its limits).
        """
        port = self.forwardedPort(client, transport)
        if port is None:
            port = self._choose(client, transport)
        mapping = self._gateway.map(client, transport, port, port, self.lease)
        self._forwarded[(client, transport)] = mapping.internalPort
        return mapping

    def _choose(self, client: IPAddress, transport: Transport) -> int:
        # A port the client already maps from (its own, normal mapping of
        # that internal port) is never chosen: the table keys mappings by
        # internal port, so mapping it would renew that mapping and cut its
        # lifetime to the lease instead of making the forwarded port.
        table = self._gateway.table
        companion = self.forwardedPort(client, otherTransport(transport))
        if (
            companion is not None
            and table.freePortFrom(client, transport, companion) == companion
            and table.get(client, transport, companion) is None
        ):
            return companion
        start = self._random.randint(table.minPort, table.maxPort)
        port = table.freePortFrom(client, transport, start)
        first = port
        while port is not None and table.get(client, transport, port) is not None:
            following = port + 1 if port < table.maxPort else table.minPort
            port = table.freePortFrom(client, transport, following)
            if port == first:
                port = None
        if port is None:
            raise Refused(OutOfResourcesError(), "no external port is free")
        return port
