# -*- test-case-name: tests.server.test_ratelimit -*-
"""
Per-source request rate limits: a token bucket for each source address.

Pure code: time comes from an injected monotonic clock (anything with a
C{seconds()} method), so a step of the wall clock neither refills nor
drains the buckets.

Memory is bounded: at most C{maxSources} sources have a bucket of their
own.  A new source beyond them takes the place of the source heard from
least recently, if that one has been quiet long enough for its bucket to be
full again (forgetting it loses nothing); otherwise the new source shares
one bucket with every other such source, so that a flood from more
addresses than that is limited as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._entries import MonotonicClock

#: Requests per second one source may send (the refill rate).
DEFAULT_REQUEST_RATE = 20
#: Requests one source may send at once after a quiet spell (the bucket).
DEFAULT_REQUEST_BURST = 100
#: Sources with a bucket of their own.
DEFAULT_MAX_SOURCES = 4096


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """
    Token buckets, one per source: each holds up to C{burst} requests and
    refills at C{rate} requests per second.

    @ivar rate: requests per second, the refill rate.
    @ivar burst: the most requests allowed at once.
    @ivar maxSources: how many sources have a bucket of their own.
    """

    def __init__(
        self,
        clock: MonotonicClock,
        rate: float = DEFAULT_REQUEST_RATE,
        burst: int = DEFAULT_REQUEST_BURST,
        maxSources: int = DEFAULT_MAX_SOURCES,
    ) -> None:
        """
        @raise ValueError: C{rate} is not positive, or C{burst} or
            C{maxSources} is below 1.
        """
        checkRate(rate, burst)
        if maxSources < 1:
            raise ValueError(f"bad source limit {maxSources}")
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self.maxSources = maxSources
        # In order of last use, least recent first (re-inserted on use).
        self._buckets: dict[str, _Bucket] = {}
        self._shared = _Bucket(float(burst), clock.seconds())

    def __len__(self) -> int:
        """
        How many sources have a bucket of their own.
        """
        return len(self._buckets)

    def allow(self, source: str) -> bool:
        """
        Whether C{source} may send a request now; if so, it is counted.
        """
        now = self._clock.seconds()
        buckets = self._buckets
        bucket = buckets.pop(source, None)
        if bucket is None:
            if len(buckets) >= self.maxSources and not self._forgetOldest(now):
                return self._take(self._shared, now)
            bucket = _Bucket(float(self.burst), now)
        buckets[source] = bucket
        return self._take(bucket, now)

    def _take(self, bucket: _Bucket, now: float) -> bool:
        elapsed = max(now - bucket.updated, 0.0)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _forgetOldest(self, now: float) -> bool:
        """
        Forget the source heard from least recently if its bucket is full
        again by now.

        @return: whether a place was freed.
        """
        oldest = next(iter(self._buckets))
        bucket = self._buckets[oldest]
        if bucket.tokens + (now - bucket.updated) * self.rate < self.burst:
            return False
        del self._buckets[oldest]
        return True


def checkRate(rate: float, burst: int) -> None:
    """
    Check a rate limit's values.

    @raise ValueError: C{rate} is not positive or C{burst} is below 1.
    """
    if not rate > 0:
        raise ValueError(f"bad request rate {rate}")
    if burst < 1:
        raise ValueError(f"bad request burst {burst}")
