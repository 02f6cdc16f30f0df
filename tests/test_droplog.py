"""
Tests for L{twisted_natpmp._droplog}.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._droplog import DropLog


class DropLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, object]] = []
        self.clock = Clock()
        self.drops = DropLog(
            Logger(observer=cast(ILogObserver, self.events.append)),
            self.clock,
            "test listener",
            interval=60,
            maxSources=3,
            debugDetails=2,
        )

    def lines(self, level: LogLevel = LogLevel.warn) -> list[str]:
        return [formatEvent(e) for e in self.events if e["log_level"] == level]

    def test_firstDropAtOnce(self) -> None:
        """
        The first drop of a quiet period is logged at once, as a warning.
        """
        self.drops.drop("10.0.0.3:5351", "malformed", "0001")
        self.assertEqual(
            self.lines(),
            [
                "test listener: dropped a packet from 10.0.0.3:5351 (malformed);"
                " further ones are summarised every 60 s"
            ],
        )

    def test_aggregated(self) -> None:
        """
        Many drops make one summary line per source and interval, with the
        count of each reason; nothing is logged at warn level before the
        interval ends.
        """
        self.drops.drop("a", "malformed")
        for _ in range(4812):
            self.drops.drop("b", "malformed")
        for _ in range(12):
            self.drops.drop("b", "not the gateway")
        self.assertEqual(len(self.lines()), 1)
        self.clock.advance(60)
        # "a" dropped only the packet already said; "b"'s count is whole.
        self.assertEqual(
            self.lines()[1:],
            [
                "test listener: dropped 4824 packets from b in the last 60 s:"
                " malformed (4812), not the gateway (12)"
            ],
        )
        self.assertEqual(self.drops.total, 4825)
        self.assertEqual(self.drops.reasons["malformed"], 4813)

    def test_quietAgain(self) -> None:
        """
        An interval without drops ends the summaries; the next drop is said
        at once again.
        """
        self.drops.drop("a", "malformed")
        self.clock.advance(60)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.drops.drop("a", "malformed")
        self.assertEqual(len(self.lines()), 2)

    def test_debugDetailsBounded(self) -> None:
        """
        Only the first few drops of an interval are logged one by one, at
        debug level, with their details.
        """
        for _ in range(100):
            self.drops.drop("a", "malformed", "00ff")
        debug = self.lines(LogLevel.debug)
        self.assertEqual(len(debug), 2)
        self.assertIn("00ff", debug[0])
        self.clock.advance(60)
        self.drops.drop("a", "malformed", "00ff")
        self.assertEqual(len(self.lines(LogLevel.debug)), 3)

    def test_sourcesBounded(self) -> None:
        """
        Past C{maxSources} sources, drops are counted together, so that
        forged sources cannot grow memory or the summary.
        """
        self.drops.drop("first", "malformed")
        for i in range(1000):
            self.drops.drop(f"10.0.{i // 256}.{i % 256}", "malformed")
        self.clock.advance(60)
        summary = self.lines()[1:]
        # "first" and two more by name (only "first"'s lone drop, said at
        # once, is not repeated), the rest together.
        self.assertEqual(len(summary), 3)
        self.assertIn(
            "test listener: dropped 998 packets from other sources in the last"
            " 60 s: malformed (998)",
            summary,
        )

    def test_summaryCountsTheFirst(self) -> None:
        """
        The summary's count is the interval's whole count, the drop said at
        once included; a lone drop already said is not summarised again.
        """
        for _ in range(4):
            self.drops.drop("a", "malformed")
        self.clock.advance(60)
        self.assertEqual(
            self.lines()[1:],
            ["test listener: dropped 4 packets from a in the last 60 s: malformed (4)"],
        )

    def test_noEmptyDetail(self) -> None:
        """
        A drop without details logs no dangling colon at debug level.
        """
        self.drops.drop("a", "outside the internal networks")
        self.assertEqual(
            self.lines(LogLevel.debug),
            ["test listener: dropped a packet from a (outside the internal networks)"],
        )

    def test_stopFlushes(self) -> None:
        """
        Stopping says what was counted and not yet said, and leaves no timer.
        """
        self.drops.drop("a", "malformed")
        self.drops.drop("a", "malformed")
        self.drops.stop()
        self.assertEqual(len(self.lines()), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_jsonSafe(self) -> None:
        """
        Every field is a string or a number, so events survive
        C{jsonFileLogObserver}.
        """
        self.drops.drop("a", "malformed", "00")
        self.drops.drop("a", "malformed", "00")
        self.clock.advance(60)
        for event in self.events:
            for key, value in event.items():
                if not key.startswith("log_"):
                    self.assertIsInstance(value, (str, int, float), key)

    def test_verbAndLevel(self) -> None:
        """
        The verb and the level are the caller's: requests answered with an
        error are "refused", and expected trouble may be logged at info.
        """
        refusals = DropLog(
            Logger(observer=cast(ILogObserver, self.events.append)),
            self.clock,
            "gateway",
            verb="refused",
            level=LogLevel.info,
        )
        refusals.drop("a", "no port free")
        refusals.drop("a", "no port free")
        refusals.stop()
        refusals.drop("b", "no port free")
        refusals.stop()
        self.assertEqual(self.lines(), [])
        self.assertEqual(
            self.lines(LogLevel.info),
            [
                "gateway: refused a packet from a (no port free); further ones"
                " are summarised every 60 s",
                "gateway: refused 2 packets from a in the last 60 s: no port free (2)",
                "gateway: refused a packet from b (no port free); further ones"
                " are summarised every 60 s",
            ],
        )
