"""
The backends moved to L{twisted_natpmp.server.backends}; L{MemoryBackend}
stays importable from here.
"""

from .server.backends.memory import MemoryBackend

__all__ = ["MemoryBackend"]
