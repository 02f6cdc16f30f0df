"""
What every benchmark section gets: the reactor, the sizes, a scratch
directory, and the shared gateway process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._gateway import GatewayProcess
from ._sizes import Sizes


class Context:
    """
    @ivar reactor: the running reactor.
    @ivar sizes: how big each benchmark is.
    @ivar directory: scratch space (logs, configs), removed afterwards.
    """

    def __init__(self, reactor: Any, sizes: Sizes, directory: Path) -> None:
        self.reactor = reactor
        self.sizes = sizes
        self.directory = directory
        self._gateway: GatewayProcess | None = None

    def gateway(self) -> GatewayProcess:
        """
        Our gateway in its own process on a loopback address, started on
        first use and shared by the sections.
        """
        if self._gateway is None:
            self._gateway = GatewayProcess(self.directory)
        return self._gateway

    def close(self) -> None:
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
