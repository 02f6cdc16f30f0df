"""
The RFC 6886 s3.6 rule by which a client notices that its gateway has lost
its mapping state.  Pure code: the caller supplies the time.
"""

from __future__ import annotations


class EpochTracker:
    """
    Remember the last seconds-since-start-of-epoch (SSSoE) value received
    from one gateway and the local time it arrived, and judge each new value.

    RFC 6886 s3.6: the expected value is the previous SSSoE plus 7/8 of the
    local seconds elapsed since it arrived; a new value more than 2 below
    that means the gateway lost its state.  Every packet is judged against
    the one before it (not against its own value, the mistake libplum 0.5.3
    made), and the stored pair is updated whatever the outcome.
    """

    def __init__(self) -> None:
        self._previous: tuple[int, float] | None = None

    @property
    def lastEpoch(self) -> int | None:
        """
        The SSSoE of the last packet judged, or L{None} before the first.
        """
        return None if self._previous is None else self._previous[0]

    def reset(self) -> None:
        """
        Forget the stored value, as for a new gateway.
        """
        self._previous = None

    def update(self, epoch: int, now: float) -> bool:
        """
        Judge a newly received SSSoE.

        @param epoch: the SSSoE the gateway sent.
        @param now: the local time, in seconds, when it arrived.
        @return: C{True} if the gateway lost its state since the previous
            packet; C{False} for the first packet and for a consistent one.
        """
        previous = self._previous
        self._previous = (epoch, now)
        if previous is None:
            return False
        previousEpoch, previousTime = previous
        elapsed = max(0.0, now - previousTime)
        # epoch < previousEpoch + 7/8 * elapsed - 2, kept in exact steps of 1/8.
        return epoch * 8 < previousEpoch * 8 + 7 * elapsed - 16
