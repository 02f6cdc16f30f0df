"""
The in-memory UDP network's old home: it ships now as
L{twisted_natpmp.testing} (L{twisted_natpmp.testing._udp}).
"""

from twisted_natpmp.testing._udp import (
    Datagram,
    Endpoint,
    HostReactor,
    MemoryUDPNetwork,
    MemoryUDPPort,
)

__all__ = ["Datagram", "Endpoint", "HostReactor", "MemoryUDPNetwork", "MemoryUDPPort"]
