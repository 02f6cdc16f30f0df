# -*- test-case-name: tests.test_epoch -*-
"""
The rules by which a client notices that its gateway has lost its mapping
state: RFC 6886 s3.6 for NAT-PMP (L{EpochTracker}) and RFC 6887 s8.5 for PCP
(L{PCPEpochTracker}).  Pure code: the caller supplies the time, which
should come from a monotonic clock so that a step of the wall clock is not
read as a reboot.

Both trackers have the same interface: C{lastEpoch}, C{reset()} and
C{update(epoch, now)}, which judges a packet and stores its pair.
"""

from __future__ import annotations

__all__ = ["EpochTracker", "PCPEpochTracker"]


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


class PCPEpochTracker:
    """
    Remember the last epoch time received from one PCP server and the local
    time it arrived, and judge each new one by RFC 6887 s8.5.

    The first response is always valid.  A later one is invalid (the server
    lost its state) when its epoch is more than 1 s below the previous one,
    or when the server's and the client's elapsed times disagree by more
    than 2 s plus 1/16 of the elapsed time, in either direction::

        client + 2 < server - server / 16  or  server + 2 < client - client / 16

    Unlike NAT-PMP's one-sided rule, a server clock that runs fast is caught
    too.  The pair is stored after every response, valid or not (libplum
    0.5.3 never stored it, so never judged; libpcpnatpmp kept its first pair
    as the baseline, so its tolerance grew with uptime).
    """

    def __init__(self) -> None:
        self._previous: tuple[int, float] | None = None

    @property
    def lastEpoch(self) -> int | None:
        """
        The epoch time of the last response judged, or L{None} before the
        first.
        """
        return None if self._previous is None else self._previous[0]

    def reset(self) -> None:
        """
        Forget the stored pair, as for a new server.
        """
        self._previous = None

    def update(self, epoch: int, now: float) -> bool:
        """
        Judge a newly received epoch time.

        @param epoch: the epoch time in the response or ANNOUNCE.
        @param now: the local time, in seconds, when it arrived.  Should the
            local clock go backwards, no time is taken to have passed.
        @return: C{True} if the server lost its state since the previous
            response; C{False} for the first and for a consistent one.
        """
        previous = self._previous
        self._previous = (epoch, now)
        if previous is None:
            return False
        previousEpoch, previousTime = previous
        if epoch < previousEpoch - 1:
            return True
        client = max(0.0, now - previousTime)
        server = epoch - previousEpoch
        # x + 2 < y - y/16, kept exact by multiplying by 16: 16x + 32 < 15y.
        return 16 * client + 32 < 15 * server or 16 * server + 32 < 15 * client
