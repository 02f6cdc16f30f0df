# -*- test-case-name: tests.server.test_backends -*-
"""
Backends that make a gateway's mappings real
(L{twisted_natpmp.interfaces.IMappingBackend}).

  - L{MemoryBackend} (L{twisted_natpmp.server.backends.memory}) keeps them
    in a dictionary: the pure, fast default, for tests and for trying a
    client without a router.

A backend is called by the table with (internal address, transport,
internal port, external port); it raises a
L{twisted_natpmp.errors.GatewayError} subclass, without a code, to refuse
(the responder gives it its protocol's code).  A backend that also
provides L{IPinholeBackend} opens IPv6 pinholes (PCP MAP from an IPv6
host); without it, such requests are refused.  One that provides
L{IFilteringBackend} enforces PCP's FILTER option; without it, FILTER is
refused.
"""

from __future__ import annotations

from ._filters import IFilteringBackend, RemoteFilter
from ._pinhole import IPinholeBackend
from .memory import MemoryBackend

__all__ = ["IFilteringBackend", "IPinholeBackend", "MemoryBackend", "RemoteFilter"]
