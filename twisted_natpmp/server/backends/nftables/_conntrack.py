# -*- test-case-name: tests.server.nftables.test_backend -*-
"""
Ending the flows through a mapping that has gone: removing its map element
stops new flows only, and established conntrack entries outlive it
(observed), so the backend deletes them with C{conntrack}, one process for
all the mappings of a batch (C{conntrack -R /dev/stdin}, a line per
deletion).

A flow through a mapping is one whose original destination port is the
external port and whose reply comes from the internal address and port:
what the DNAT made, and nothing the LAN host opened itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..._entries import GatewayMapping

__all__ = ["CONNTRACK_ARGUMENTS", "flushLines"]

#: The C{conntrack} arguments that read deletions from standard input.
CONNTRACK_ARGUMENTS = ("-R", "/dev/stdin")


def flushLines(mappings: Iterable[GatewayMapping]) -> bytes:
    """
    The C{conntrack -R} input that deletes the flows through C{mappings}.
    """
    return "".join(
        f"-D -p {m.transport.label} --orig-port-dst {m.externalPort}"
        f" --reply-src {m.client} --reply-port-src {m.internalPort}\n"
        for m in mappings
    ).encode("ascii")
