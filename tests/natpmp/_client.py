"""
What the NAT-PMP client's tests share: a client on the in-memory UDP network
talking to a scripted gateway, on a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import LogLevel, formatEvent

from twisted_natpmp.natpmp.client import listenClient
from twisted_natpmp.testing._gateway import GATEWAY, HOST, ScriptedGateway
from twisted_natpmp.testing._udp import MemoryUDPNetwork


class ClientTestMixin:
    def setUp(self) -> None:
        self.network = MemoryUDPNetwork()
        self.clock = self.network.clock
        self.gateway = ScriptedGateway()
        self.network.host(GATEWAY).listenUDP(5351, self.gateway)
        self.client = listenClient(
            self.network.host(HOST), GATEWAY, monotonic=self.clock.seconds
        )

    def sendTimes(self) -> list[float]:
        return [d.time for d in self.network.log if d.destination == (GATEWAY, 5351)]


def warnings(events: Sequence[Any]) -> list[str]:
    """
    The text of the warnings among C{events}.
    """
    return [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
