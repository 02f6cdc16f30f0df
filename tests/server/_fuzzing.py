"""
What the gateway's fuzz tests (C{tests.server.test_fuzz}) have of their
own: a capturing transport and the sources they rotate over.  Packets,
the gateway's RFC 6886 oracle, the log watch and the memory measure are in
L{tests._fuzzing}, shared with the client side's and the service's fuzz
tests.
"""

from __future__ import annotations

from typing import Any


class Capture:
    """
    The transport of a protocol under test: keeps what it writes.
    """

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any = None) -> None:
        self.written.append((data, addr))


#: Sources inside the internal network that the gateway fuzz rotates over,
#: so that a per-source rate limit (a gateway's right) never applies.
SOURCES = [f"10.77.0.{n}" for n in range(2, 52)]
