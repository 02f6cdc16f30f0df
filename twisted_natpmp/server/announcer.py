# -*- test-case-name: tests.server.test_announcer -*-
"""
A gateway's announcements of its external address (RFC 6886 s3.2.1), and
of its new epoch in PCP's unsolicited ANNOUNCE (RFC 6887 s14.1), sent on
the same schedule beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime, IUDPTransport
from twisted.logger import Logger

from ..natpmp._wire import ANNOUNCE_GROUP, CLIENT_PORT

__all__ = ["ANNOUNCE_INTERVALS", "AnnouncementSource", "Announcer", "PCPAnnouncements"]

log = Logger()

#: The waits between the 10 copies of an announcement: the first two 250 ms
#: apart, then doubling (RFC 6886 s3.2.1).
ANNOUNCE_INTERVALS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

Endpoint = tuple[str, int]


class AnnouncementSource(Protocol):
    """
    What makes the packet to announce: the gateway (NAT-PMP's op-128
    packet), or L{PCPAnnouncements} (PCP's ANNOUNCE).
    """

    def announcement(self) -> bytes | None:
        """
        The packet to send now, with the epoch of this moment, or L{None}
        to send nothing (no external address).
        """


class PCPGateway(Protocol):
    """
    A gateway that can make PCP's unsolicited ANNOUNCE.
    """

    def pcpAnnouncement(self) -> bytes | None:
        """
        The ANNOUNCE response to multicast now, or L{None}.
        """


class PCPAnnouncements:
    """
    The L{AnnouncementSource} of a gateway's unsolicited PCP ANNOUNCE
    (RFC 6887 s14.1): a 24-byte ANNOUNCE success response with the epoch of
    its moment.  It goes to the same group and port as NAT-PMP's
    announcements (224.0.0.1:5350, RFC 6887 s14.1.3), which clients tell
    apart by the version byte.
    """

    def __init__(self, gateway: PCPGateway) -> None:
        self._gateway = gateway

    def announcement(self) -> bytes | None:
        return self._gateway.pcpAnnouncement()


class Announcer:
    """
    Sends the gateway's external address to the announcement group: 10
    copies, the first two 250 ms apart and then doubling, each with the
    epoch of its own moment (RFC 6886 s3.2.1).  Starting again cancels a
    schedule in progress.
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: AnnouncementSource,
        transports: Sequence[IUDPTransport],
        destination: Endpoint = (ANNOUNCE_GROUP, CLIENT_PORT),
        intervals: Sequence[float] = ANNOUNCE_INTERVALS,
    ) -> None:
        self._clock = clock
        self._gateway = gateway
        self._transports = transports
        self._destination = destination
        self._intervals = intervals
        self._call: IDelayedCall | None = None
        self._started = clock.seconds()

    def start(self) -> None:
        """
        Send the first copy now and schedule the rest.
        """
        self.stop()
        self._started = self._clock.seconds()
        self._send(0)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _send(self, sent: int) -> None:
        self._call = None
        packet = self._gateway.announcement()
        if packet is None:
            return
        for transport in self._transports:
            try:
                transport.write(packet, self._destination)
            except OSError as e:
                log.warn(
                    "could not announce to {destination}: {error}",
                    destination="{}:{}".format(*self._destination),
                    error=str(e),
                )
        if sent < len(self._intervals):
            # Each copy at its own time after the start, so that a late
            # timer does not push the rest of the schedule back.
            due = self._started + sum(self._intervals[: sent + 1])
            self._call = self._clock.callLater(
                max(due - self._clock.seconds(), 0.0), self._send, sent + 1
            )
