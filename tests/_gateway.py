"""
The scripted gateway's old home: it ships now as
L{twisted_natpmp.testing.ScriptedGateway} (L{twisted_natpmp.testing._gateway}).
"""

from twisted_natpmp.testing._gateway import (
    EXTERNAL,
    GATEWAY,
    HOST,
    Reply,
    ScriptedGateway,
)

__all__ = ["EXTERNAL", "GATEWAY", "HOST", "Reply", "ScriptedGateway"]
