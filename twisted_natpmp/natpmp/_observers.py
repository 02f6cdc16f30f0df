# -*- test-case-name: tests.natpmp.test_epochs -*-
"""
What the observers of a NAT-PMP client hear: its retransmissions (from the
request engine) and the gateway's losses of state (from the epoch watch,
which also judges the gateway's announcements).  A mixin of
L{NATPMPClient <twisted_natpmp.natpmp.client.NATPMPClient>}.
"""

from __future__ import annotations

from collections.abc import Callable

from .._exchange import Exchange
from .._types import Announcement
from ._epochs import EpochWatch
from ._wire import Request, Response

__all__ = ["ObserversMixin"]


class ObserversMixin:
    """
    The observers and epoch judgements of a NAT-PMP client.

    @ivar exchange: the request engine that owns the socket.
    @ivar epochs: the watch on the gateway's epochs.
    """

    exchange: Exchange[Request, Response]
    epochs: EpochWatch

    def announced(self, announcement: Announcement) -> bool:
        """
        Judge an announcement from the gateway: a NAT-PMP one by the RFC
        6886 s3.6 rule, with the epochs of this client's replies (s3.2.1); a
        PCP ANNOUNCE by the RFC 6887 s8.5 rule, against the epochs of the
        gateway's earlier PCP announcements only.  The state-loss observers
        hear of a loss either way.

        @return: whether the gateway lost its state.
        """
        return self.epochs.judgeAnnouncement(announcement)

    def noteEpoch(self, epoch: int) -> bool:
        """
        Judge an epoch that arrived in a NAT-PMP announcement (RFC 6886
        s3.2.1, s3.6); observers hear of a loss of state.  The older name of
        L{announced} for NAT-PMP announcements.
        """
        return self.epochs.judge(epoch)

    def addRetryObserver(self, observer: Callable[[str, int, float], object]) -> None:
        """
        Hear of every retransmission: C{observer(request, attempt, elapsed)}
        is called when a request goes unanswered and is sent again, with
        what it asks (C{"the external address request"}), the number of
        the attempt now sent (2 or more) and the seconds since the first.
        For a person waiting: "no answer yet; still trying".
        """
        self.exchange.addRetryObserver(observer)

    def removeRetryObserver(
        self, observer: Callable[[str, int, float], object]
    ) -> None:
        """
        Stop calling an observer given to L{addRetryObserver}.
        """
        self.exchange.removeRetryObserver(observer)

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Call C{observer()} whenever the gateway is seen to have lost its
        state: by a reply's epoch, or an announcement's (L{announced}).
        """
        self.epochs.observers.append(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Stop calling an observer given to L{addStateLossObserver}.
        """
        self.epochs.observers.remove(observer)
