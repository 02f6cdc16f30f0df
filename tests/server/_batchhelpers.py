"""
What the tests of a gateway over a batching backend share: a L{Gateway}
over an L{NftablesBackend} whose programs are L{RecordingRunner}s, on a
L{Clock}, and requests answered through L{Gateway.answer}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.server.backends.nftables import NftablesBackend, Ruleset
from twisted_natpmp.server.backends.nftables.testing import RecordingRunner
from twisted_natpmp.server.gateway import Gateway

from ._helpers import CLIENT, EXTERNAL, captureLogs

__all__ = ["BatchingGatewayMixin"]


class BatchingGatewayMixin(SynchronousTestCase):
    """
    A gateway with PCP on, serving 10.77.0.0/24 and 2001:db8:77::/64,
    external address 192.0.3.77, over nftables forwarding from C{wan0};
    its table made.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(5000)
        self.nft = RecordingRunner("nft")
        self.conntrack = RecordingRunner("conntrack", automatic=b"")
        self.backend = NftablesBackend(Ruleset("wan0"), self.nft, self.conntrack)
        self.logged: list[dict[str, Any]] = []
        captureLogs(self, self.logged.append)  # type: ignore[arg-type]
        self.gateway = self.makeGateway()
        self.successResultOf(self.startBackend())
        self.replies: dict[str, list[bytes]] = {}

    def startBackend(self) -> Any:
        started = self.backend.start()
        self.nft.succeed()
        return started

    def makeGateway(self, **kwargs: Any) -> Gateway:
        kwargs.setdefault("pcp", True)
        return Gateway(
            self.clock,
            EXTERNAL,
            ["10.77.0.0/24", "2001:db8:77::/64"],
            backend=self.backend,
            **kwargs,
        )

    def send(self, packet: bytes, source: str = CLIENT) -> None:
        """
        Have C{packet} arrive from C{source}; its replies go to
        C{self.replies[source]}.
        """
        self.gateway.answer(
            packet, (source, 5350), self.replies.setdefault(source, []).append
        )

    def batches(self) -> list[str]:
        """
        Every batch given to nft after the table was made.
        """
        return [run.stdin for run in self.nft.runs[1:]]

    def turn(self) -> None:
        """
        Let the reactor turn once: the open batch goes out.
        """
        self.clock.advance(0)
