# -*- test-case-name: tests.test_droplog -*-
"""
Aggregated logging of dropped packets.

A protocol that drops what it cannot use (malformed packets, stray
replies, forged sources, requests over a rate limit) must neither crash nor
flood its log: anyone on the LAN can send it packets by the thousand.
L{DropLog} counts each drop by source and reason, logs the first one of a
quiet period at once (so a person sees trouble start), and then at most one
summary line per source and interval ("dropped 4812 packets from 10.77.0.3
in the last 60 s: malformed (4800), not the gateway (12)"). A few drops per
interval are also logged one by one at debug level, with their details.

Memory is bounded too: at most C{maxSources} sources are counted by name,
the rest together as C{"other sources"}.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

#: Seconds between two summaries.
DEFAULT_INTERVAL = 60.0
#: Sources counted by name; beyond them, drops are counted together.
DEFAULT_MAX_SOURCES = 32
#: Drops per interval that are also logged one by one at debug level.
DEFAULT_DEBUG_DETAILS = 10

_OTHERS = "other sources"


class DropLog:
    """
    Count dropped packets and log them in aggregate.

    @ivar total: every drop counted since this log was made.
    @ivar reasons: every drop since this log was made, by reason.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime,
        what: str,
        interval: float = DEFAULT_INTERVAL,
        maxSources: int = DEFAULT_MAX_SOURCES,
        debugDetails: int = DEFAULT_DEBUG_DETAILS,
        verb: str = "dropped",
        level: LogLevel = LogLevel.warn,
    ) -> None:
        """
        @param log: where the lines go.
        @param clock: schedules the summaries.
        @param what: what drops, for the lines (C{"announcement listener"}).
        @param interval: seconds between two summaries.
        @param maxSources: sources counted by name.
        @param debugDetails: drops per interval logged one by one (debug).
        @param verb: what happened to each packet, for the lines
            (C{"dropped"}; C{"refused"} for requests answered with an error).
        @param level: the level of the first line and of the summaries.
        """
        self._log = log
        self._clock = clock
        self._what = what
        self._interval = interval
        self._maxSources = maxSources
        self._debugDetails = debugDetails
        self._verb = verb
        self._level = level
        self._counts: dict[str, Counter[str]] = {}
        self._detailed = 0
        self._timer: IDelayedCall | None = None
        # The source whose drop opened this interval and was said at once.
        self._said: str | None = None
        self.total = 0
        self.reasons: Counter[str] = Counter()

    def drop(self, source: str, reason: str, detail: str = "") -> None:
        """
        Count one dropped packet.

        @param source: where it came from (C{"10.77.0.3:5351"}).
        @param reason: why it was dropped, short and fixed (C{"malformed"}),
            so that drops add up by reason.
        @param detail: what a debugging reader wants (a hex dump, the
            decoder's complaint); logged at debug level for the first few
            drops of an interval only.
        """
        self.total += 1
        self.reasons[reason] += 1
        if self._timer is None:
            # The first drop of a quiet period is said at once.
            self._log.emit(
                self._level,
                "{what}: {verb} a packet from {source} ({reason}); further"
                " ones are summarised every {interval:.0f} s",
                what=self._what,
                verb=self._verb,
                source=source,
                reason=reason,
                interval=self._interval,
            )
            self._timer = self._clock.callLater(self._interval, self._summarise)
            self._said = source
        # Every drop counts in its interval's summary, the one said at once
        # too, so that the summary's count is the interval's whole count.
        if source not in self._counts and len(self._counts) >= self._maxSources:
            source = _OTHERS
        self._counts.setdefault(source, Counter())[reason] += 1
        if self._detailed < self._debugDetails:
            self._detailed += 1
            self._log.debug(
                "{what}: {verb} a packet from {source} ({reason})"
                + (": {detail}" if detail else ""),
                what=self._what,
                verb=self._verb,
                source=source,
                reason=reason,
                detail=detail,
            )

    def stop(self) -> None:
        """
        Say what is counted and not yet said, and stop the summaries.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()

    def _summarise(self) -> None:
        self._timer = None
        if self._flush():
            self._timer = self._clock.callLater(self._interval, self._summarise)

    def _flush(self) -> bool:
        """
        Log the summary of the interval now ending.

        @return: whether anything was summarised (beyond a lone drop that
            was already said at once).
        """
        counts, self._counts = self._counts, {}
        said, self._said = self._said, None
        self._detailed = 0
        summarised = False
        for source, reasons in sorted(counts.items()):
            if source == said and reasons.total() == 1:
                # The interval's only drop from there was said at once.
                continue
            summarised = True
            self._log.emit(
                self._level,
                "{what}: {verb} {count} {packets} from {source} in the last"
                " {interval:.0f} s: {reasons}",
                what=self._what,
                verb=self._verb,
                count=(count := sum(reasons.values())),
                packets="packet" if count == 1 else "packets",
                source=source,
                interval=self._interval,
                reasons=", ".join(
                    f"{reason} ({n})" for reason, n in reasons.most_common()
                ),
            )
        return summarised
