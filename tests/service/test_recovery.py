"""
Tests for L{twisted_natpmp.service._recovery}: every transition of the
re-mapping machine (RFC 6886 s3.7), on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.service._recovery import Recovery
from twisted_natpmp.service.declarations import MappingDeclaration
from twisted_natpmp.service.policy import (
    CONFIRM_SPACING,
)

UDP5000 = MappingDeclaration(Transport.UDP, 5000)
TCP8080 = MappingDeclaration(Transport.TCP, 8080)


class RecoveryMachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.steps: list[str] = []
        self.address: Deferred[None] = Deferred()
        self.remapping: Deferred[None] = Deferred()
        self.finished: list[int] = []
        self.recovery = Recovery(
            self.clock,
            lambda: 1.0,
            self.clock.seconds,
            self.askAddress,
            self.remapEach,
            self.finished.append,
        )

    def askAddress(self) -> Deferred[None]:
        self.steps.append("address")
        return self.address

    def remapEach(self) -> Deferred[None]:
        self.steps.append("remap")
        return self.remapping

    def test_states(self) -> None:
        """
        idle -> due -> asking -> mapping -> idle.
        """
        self.recovery.schedule("lost")
        self.clock.advance(1)
        self.assertEqual(self.steps, ["address"])
        self.address.callback(None)
        self.assertEqual(self.steps, ["address", "remap"])
        self.remapping.callback(None)
        self.assertEqual(self.finished, [0])
        self.assertEqual(self.recovery.lastRemap, 1.0)

    def test_cancelEachState(self) -> None:
        """
        Cancelling leaves each state, cancelling what it owns.
        """
        self.recovery.schedule("lost")
        self.recovery.cancel()
        self.clock.advance(10)
        self.assertEqual(self.steps, [])
        self.address = Deferred(lambda d: self.steps.append("address cancelled"))
        self.recovery.schedule("lost")
        self.clock.advance(1)
        self.recovery.cancel()
        self.address = succeed(None)
        self.remapping = Deferred(lambda d: self.steps.append("remap cancelled"))
        self.recovery.schedule("lost")
        self.clock.advance(1)
        self.recovery.cancel()
        self.assertEqual(
            self.steps,
            ["address", "address cancelled", "address", "remap", "remap cancelled"],
        )
        self.assertEqual(self.finished, [])

    def test_confirmSpaced(self) -> None:
        """
        A confirmation starts no sooner than CONFIRM_SPACING after the last
        re-mapping started; one asked while mapping runs once done.
        """
        self.address = succeed(None)
        self.recovery.schedule("lost")
        self.clock.advance(1)
        self.recovery.schedule("again", confirm=True)
        self.remapping.callback(None)
        self.remapping = Deferred()
        self.clock.advance(CONFIRM_SPACING - 0.1)
        self.assertEqual(self.steps, ["address", "remap"])
        self.clock.advance(0.1)
        self.assertEqual(self.steps, ["address", "remap", "address", "remap"])
