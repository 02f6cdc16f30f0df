"""
Tests for L{MappedListeningPort}'s life: a mapping that cannot be started
leaves nothing listening; stopping waits for both halves even when the
wrapped port fails to stop; the reactor's shutdown trigger is added while
listening and removed when stopped.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_natpmp._types import Transport
from twisted_natpmp.endpoint import MappedListeningPort
from twisted_natpmp.service.policy import STOP_DEADLINE

from ._helpers import FACTORY, EndpointMixin

TCP8080 = (Transport.TCP, 8080)


@implementer(IListeningPort)
class FakePort:
    """
    A wrapped port on TCP 8080 that records its starts and stops, and stops
    with C{stopResult()}.
    """

    def __init__(self) -> None:
        self.listening = True
        self.stops = 0
        self.starts = 0
        self.stopResult: Any = lambda: succeed(None)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "0.0.0.0", 8080)

    def startListening(self) -> None:
        self.starts += 1
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.stops += 1
        self.listening = False
        result: Deferred[None] = self.stopResult()
        return result


@implementer(IStreamServerEndpoint)
class FakeEndpoint:
    def __init__(self) -> None:
        self.port = FakePort()

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return succeed(self.port)  # type: ignore[arg-type]


class TriggerReactor(MemoryReactorClock):
    """
    A memory reactor whose system event triggers have handles: it records
    each trigger added and each handle removed.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.added: list[tuple[str, str, object]] = []
        self.removed: list[object] = []

    def addSystemEventTrigger(  # type: ignore[override]
        self, phase: str, eventType: str, callable: Any, *args: Any, **kwargs: Any
    ) -> object:
        handle = ("trigger", len(self.added))
        self.added.append((phase, eventType, handle))
        return handle

    def removeSystemEventTrigger(self, triggerID: object) -> None:
        self.removed.append(triggerID)


class BrokenService:
    """
    A service that cannot start.
    """

    def addObserver(self, observer: object) -> None:
        pass

    def startService(self) -> None:
        raise RuntimeError("cannot start")


class StartFailsTests(EndpointMixin, SynchronousTestCase):
    """
    If the mapping cannot be made, the wrapped port does not stay listening.
    """

    def test_serviceNotMade(self) -> None:
        wrapped = FakeEndpoint()
        endpoint = self.endpoint(wrapped)

        def broken(port: int) -> Any:
            raise RuntimeError("cannot make")

        endpoint._serviceFor = broken  # type: ignore[assignment,method-assign]
        failure = self.failureResultOf(endpoint.listen(FACTORY), RuntimeError)
        self.assertEqual(failure.getErrorMessage(), "cannot make")
        self.assertEqual((wrapped.port.listening, wrapped.port.stops), (False, 1))

    def test_serviceNotStarted(self) -> None:
        """
        A service that fails to start: the wrapped port is stopped, and no
        shutdown trigger is left behind.
        """
        reactor = self.reactor = TriggerReactor()
        wrapped = FakeEndpoint()
        endpoint = self.endpoint(wrapped)
        endpoint._serviceFor = lambda port: BrokenService()  # type: ignore[assignment,method-assign,return-value]
        self.failureResultOf(endpoint.listen(FACTORY), RuntimeError)
        self.assertEqual((wrapped.port.listening, wrapped.port.stops), (False, 1))
        self.assertEqual(reactor.added, [])

    def test_startListeningAgainFails(self) -> None:
        """
        C{startListening()} after a stop whose mapping cannot start raises,
        with the wrapped port stopped again.
        """
        wrapped = FakeEndpoint()
        endpoint = self.endpoint(wrapped)
        self.autoAnswer = True
        port = self.successResultOf(endpoint.listen(FACTORY))
        self.mapper.autoAnswer = True
        self.successResultOf(port.stopListening())
        port._makeService = lambda port: BrokenService()  # type: ignore[assignment,return-value]
        self.assertRaises(RuntimeError, port.startListening)
        self.assertEqual((wrapped.port.starts, wrapped.port.stops), (1, 2))
        self.assertFalse(wrapped.port.listening)


class StopFailsTests(EndpointMixin, SynchronousTestCase):
    def test_waitsForTheDeletion(self) -> None:
        """
        A wrapped port that fails to stop: C{stopListening()} still waits
        for the deletion (or its deadline), then fails with the wrapped
        port's error.
        """
        wrapped = FakeEndpoint()
        wrapped.port.stopResult = lambda: fail(RuntimeError("will not stop"))
        port = self.successResultOf(self.endpoint(wrapped).listen(FACTORY))
        self.grant()
        d = port.stopListening()
        [deletion] = self.mapper.pending("deleteMappings")
        self.assertNoResult(d)
        self.assertIn("(stopping)", repr(port))
        deletion.succeed({TCP8080: None})
        failure = self.failureResultOf(d, RuntimeError)
        self.assertEqual(failure.getErrorMessage(), "will not stop")
        self.assertIn("(stopped)", repr(port))

    def test_deadline(self) -> None:
        wrapped = FakeEndpoint()
        wrapped.port.stopResult = lambda: fail(RuntimeError("will not stop"))
        port = self.successResultOf(self.endpoint(wrapped).listen(FACTORY))
        self.grant()
        d = port.stopListening()
        self.reactor.advance(STOP_DEADLINE - 0.1)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.failureResultOf(d, RuntimeError)


class ShutdownTriggerTests(EndpointMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.reactor = self.triggers = TriggerReactor()

    def test_addedAndRemoved(self) -> None:
        """
        Listening adds one trigger before shutdown; stopping removes it;
        listening again adds another, which the next stop removes.
        """
        self.autoAnswer = True
        port: MappedListeningPort = self.listening()
        self.mapper.autoAnswer = True
        [(phase, event, first)] = self.triggers.added
        self.assertEqual((phase, event), ("before", "shutdown"))
        self.successResultOf(port.stopListening())
        self.assertEqual(self.triggers.removed, [first])
        port.startListening()
        self.mapper.autoAnswer = True
        [_, (_, _, second)] = self.triggers.added
        self.assertNotEqual(second, first)
        self.successResultOf(port.stopListening())
        self.assertEqual(self.triggers.removed, [first, second])
