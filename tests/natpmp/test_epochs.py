"""
Tests for the NAT-PMP client's judgement of the gateway's epochs (RFC 6886
s3.6) and its aggregated log of losses of state.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, eventAsJSON, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp import errors
from twisted_natpmp.natpmp._wire import (
    MapResponse,
    Protocol,
)
from twisted_natpmp.natpmp.client import (
    STATE_LOSS_INTERVAL,
    listenClient,
)
from twisted_natpmp.testing._gateway import GATEWAY

from ._client import ClientTestMixin
from ._client import warnings as _warnings


class EpochTests(ClientTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.losses: list[None] = []
        self.client.addStateLossObserver(lambda: self.losses.append(None))

    def test_rebootDetected(self) -> None:
        # RFC 6886 s3.6: every reply feeds the epoch rule; a gateway whose
        # epoch fell behind has lost its state and observers hear of it.
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(self.client.externalAddress()))
        self.clock.advance(10)
        self.gateway.epoch = 5008
        self.successResultOf(self.flushed(self.client.externalAddress()))
        self.assertEqual(self.losses, [])
        self.gateway.epoch = 2
        self.successResultOf(self.flushed(self.client.addMapping(Protocol.TCP, 80)))
        self.assertEqual(self.losses, [None])

    def test_errorRepliesCount(self) -> None:
        # RFC 6886 s3.6: the rule applies to every packet, errors included.
        self.gateway.epoch = 5000
        self.flushed(self.client.externalAddress())
        self.gateway.reply = lambda r: [
            MapResponse(Protocol.TCP, 3, 0, 80, 0, 0).encode()
        ]
        self.failureResultOf(self.flushed(self.client.addMapping(Protocol.TCP, 80)))
        self.assertEqual(self.losses, [None])

    def test_announcementEpoch(self) -> None:
        # RFC 6886 s3.2.1: the rule runs on announcements too.
        self.assertFalse(self.client.noteEpoch(1000))
        self.clock.advance(100)
        self.assertFalse(self.client.noteEpoch(1100))
        self.assertTrue(self.client.noteEpoch(0))
        self.assertEqual(self.losses, [None])

    def test_stateLossWarningsAggregated(self) -> None:
        # Issue 10 item 12: a flood of forged packets with lower epochs is a
        # loss of state each time by the RFC 6886 s3.6 rule; every one is
        # told to the observers (s3.6), but the log warns of the first at
        # once and summarises the others once per interval.
        with capturedLogs() as events:
            for _ in range(50):
                self.client.noteEpoch(100000)
                self.assertTrue(self.client.noteEpoch(0))
                self.clock.advance(0.1)
            self.assertEqual(len(self.losses), 50)
            self.assertEqual(
                _warnings(events),
                [
                    "gateway 10.0.0.1 lost its mapping state (epoch 0); further"
                    " losses are summarised every 60 s"
                ],
            )
            self.clock.advance(STATE_LOSS_INTERVAL)
            self.assertEqual(
                _warnings(events)[1:],
                [
                    "gateway 10.0.0.1 lost its mapping state 49 more times in the"
                    " last 60 s (last epoch 0): it restarts often, or someone"
                    " forges its packets"
                ],
            )
            # A quiet interval ends the summaries; the next loss is told at
            # once again.
            self.clock.advance(STATE_LOSS_INTERVAL)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.client.noteEpoch(100000)
            self.client.noteEpoch(7)
            self.assertEqual(len(_warnings(events)), 3)
            self.assertIn("(epoch 7)", _warnings(events)[2])
            # What is untold when the client stops is said then.
            self.client.noteEpoch(100000)
            self.client.noteEpoch(0)
            self.client.stop()
            self.assertIn("1 more time in", _warnings(events)[3])
        self.assertEqual(len(self.losses), 52)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_observerFailureLogged(self) -> None:
        def broken() -> None:
            raise RuntimeError("observer broke")

        self.client.addStateLossObserver(broken)
        self.client.noteEpoch(1000)
        self.assertTrue(self.client.noteEpoch(0))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.client.removeStateLossObserver(broken)
        self.assertEqual(self.losses, [None])

    def test_monotonicClock(self) -> None:
        # RFC 6886 s3.6 judges elapsed local time; a wall clock stepped an
        # hour ahead by NTP at boot is no gateway reboot, so the judgement
        # runs on the monotonic clock, not the reactor's.
        monotonic = [0.0]
        client = listenClient(
            self.network.host("10.0.0.3"), GATEWAY, monotonic=lambda: monotonic[0]
        )
        client.addStateLossObserver(lambda: self.losses.append(None))
        self.gateway.epoch = 5000
        self.successResultOf(self.flushed(client.externalAddress()))
        self.clock.advance(3600)
        monotonic[0] += 1
        self.gateway.epoch = 5001
        self.successResultOf(self.flushed(client.externalAddress()))
        self.assertEqual(self.losses, [])
        # And the monotonic clock's own elapsed time counts.
        monotonic[0] += 100
        self.successResultOf(self.flushed(client.externalAddress()))
        self.assertEqual(self.losses, [None])

    def test_logFieldsSurviveJSON(self) -> None:
        # Log events carry strings and numbers, which jsonFileLogObserver
        # keeps, not IPv4Address or message objects, which it cannot.
        with capturedLogs() as events:
            self.gateway.epoch = 5000
            self.flushed(self.client.externalAddress())
            self.gateway.epoch = 2
            self.flushed(self.client.externalAddress())
            self.gateway.reply = lambda r: [b"\x00"]
            d = self.client.addMapping(Protocol.TCP, 80, timeouts=(1, 1))
            self.flushed(d)
            self.clock.advance(1)
            self.clock.advance(1)
            self.failureResultOf(d, errors.NoResponseError)
            self.client.protocol.connectionRefused()
            self.flushed(self.client.externalAddress())
        self.assertGreater(len(events), 4)
        for event in events:
            fields = {
                k: v
                for k, v in json.loads(eventAsJSON(event)).items()
                if not k.startswith("log_")
            }
            self.assertNotIn("unpersistable", json.dumps(fields), formatEvent(event))

    def flushed(self, d: Deferred[Any]) -> Deferred[Any]:
        self.network.flush()
        return d
