# -*- test-case-name: tests.natpmp.test_announce -*-
"""
The listener for gateway announcements on 224.0.0.1:5350.

A NAT-PMP gateway multicasts an unsolicited external-address response (the
12-byte opcode-128 packet) when it boots, loses its state or changes its
external address (RFC 6886 s3.2.1).  A PCP gateway multicasts a 24-byte
ANNOUNCE response (version 2, opcode 0x80) instead (RFC 6887 s14.1); real
routers send either: miniupnpd 2.3.1 sends only a PCP ANNOUNCE when it
starts, and one copy of each when its address changes, not the ten copies
RFC 6886 s3.2.1 asks for.

Only packets from the configured gateway count (RFC 6886 s3.2.1); anything
else, from anywhere else or of any other shape, is dropped, counted and
logged in aggregate (any LAN host can send to the group).

Parsing is the codecs' business: NAT-PMP's announcement is decoded by
L{twisted_natpmp.natpmp._wire}.  The PCP ANNOUNCE header is still read here,
liberally (trailing bytes of any length ignored); once the PCP codec
(L{twisted_natpmp.pcp._wire}) decodes an ANNOUNCE as liberally, this should
call it instead.  The values, L{Announcement} and L{AnnouncementKind}, live
in L{twisted_natpmp._types} and are re-exported here for existing imports.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, cast

from twisted.internet.interfaces import (
    IListeningPort,
    IMulticastTransport,
    IReactorMulticast,
    IReactorTime,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ._droplog import DropLog
from ._types import Announcement, AnnouncementKind
from .natpmp._wire import (
    ANNOUNCE_GROUP,
    CLIENT_PORT,
    ExternalAddressResponse,
    MalformedPacket,
    ResultCode,
    decodeResponse,
)

__all__ = [
    "Announcement",
    "AnnouncementKind",
    "AnnouncementProtocol",
    "listenAnnouncements",
    "parseAnnouncement",
]

log = Logger()

#: RFC 6887 s7.2: version, R bit and opcode, reserved, result code,
#: lifetime, epoch time, then 12 reserved bytes.
_PCP_RESPONSE_HEADER = struct.Struct("!BBBBII12x")
_PCP_VERSION = 2
#: A response (R bit set) to the ANNOUNCE opcode 0 (RFC 6887 s14.1).
_PCP_ANNOUNCE_RESPONSE = 0x80


_NO_ADDRESS = IPv4Address(0)


def parseAnnouncement(packet: bytes, source: tuple[str, int]) -> Announcement:
    """
    Parse an announcement.

    Trailing bytes are ignored (RFC 6886 is silent on them; PCP packets are
    padded to multiples of 4).

    @raise MalformedPacket: the packet is neither a successful NAT-PMP
        external-address response nor a successful PCP ANNOUNCE response.
    """
    if packet[:1] == bytes((_PCP_VERSION,)):
        if len(packet) < _PCP_RESPONSE_HEADER.size:
            raise MalformedPacket(
                f"PCP packet of {len(packet)} bytes is too short for an ANNOUNCE"
                f" (needs {_PCP_RESPONSE_HEADER.size})",
                packet,
            )
        _, opcode, _, result, _, epoch = _PCP_RESPONSE_HEADER.unpack_from(packet)
        if opcode != _PCP_ANNOUNCE_RESPONSE:
            raise MalformedPacket(f"PCP opcode {opcode:#x} is no ANNOUNCE", packet)
        if result != ResultCode.SUCCESS:
            raise MalformedPacket(f"PCP ANNOUNCE with result code {result}", packet)
        return Announcement(AnnouncementKind.PCP, epoch, None, source)
    response = decodeResponse(packet)
    if not isinstance(response, ExternalAddressResponse):
        raise MalformedPacket(f"{response} is no external-address response", packet)
    if response.resultCode != ResultCode.SUCCESS:
        raise MalformedPacket(
            f"announcement with result code {response.resultCode}", packet
        )
    # 0.0.0.0 is no address: a gateway that has none yet answers result 3
    # (RFC 6886 s3.2), so an announcement of 0.0.0.0 still counts for its
    # epoch but tells no external address.
    address = response.externalAddress
    return Announcement(
        AnnouncementKind.NATPMP,
        response.epoch,
        None if address == _NO_ADDRESS else address,
        source,
    )


class AnnouncementProtocol(DatagramProtocol):
    """
    Receive announcements on the multicast group and pass those from the
    gateway to a callback.

    @ivar gateway: the gateway whose announcements count (L{None}: none
        yet, so none count); the owner may change it, for instance when the
        default gateway changes.
    @ivar drops: counts and logs, in aggregate, the packets dropped: from
        another host than the gateway, or not an announcement.
    @ivar heard: the announcements from the gateway passed to the callback
        (not logged one by one: the callback logs what it acts on).
    """

    def __init__(
        self,
        gateway: IPv4Address | str | None,
        received: Callable[[Announcement], object],
        *,
        group: str = ANNOUNCE_GROUP,
        interface: str = "",
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param gateway: the gateway whose announcements count.
        @param received: called with each accepted L{Announcement}.
        @param group: the multicast group to join.
        @param interface: the local address of the interface to join the
            group on; C{""} lets the kernel choose.
        @param clock: schedules the summaries of dropped packets; by default
            the global reactor.
        """
        self.gateway = None if gateway is None else IPv4Address(gateway)
        self._received = received
        self._group = group
        self._interface = interface
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        assert clock is not None
        self.drops = DropLog(log, clock, "announcement listener")
        self.heard = 0

    def stopProtocol(self) -> None:
        self.drops.stop()

    def startProtocol(self) -> None:
        transport = cast(IMulticastTransport, self.transport)
        d = transport.joinGroup(self._group, self._interface)
        d.addErrback(self._joinFailed)

    def _joinFailed(self, failure: Failure) -> None:
        # Linux puts every interface in 224.0.0.1 anyway, and a socket bound
        # to it hears the group, so this is worth a warning, not a failure;
        # and not even a warning for ENODEV, which only says that no route
        # picks an interface for the group (a host without a default route).
        noDevice = errno.ENODEV in getattr(failure.value, "args", ())
        log.emit(
            LogLevel.info if noDevice else LogLevel.warn,
            "could not join {group}: {error}; listening anyway",
            group=self._group,
            error=failure.getErrorMessage(),
        )

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        if self.gateway is None or host != str(self.gateway):
            # RFC 6886 s3.2.1: only the configured gateway's announcements.
            self.drops.drop(f"{host}:{port}", "not the gateway", datagram.hex())
            return
        try:
            announcement = parseAnnouncement(datagram, (host, port))
        except MalformedPacket as e:
            self.drops.drop(
                f"{host}:{port}", "no announcement", f"{e.reason} ({datagram.hex()})"
            )
            return
        # No line per announcement: they can be forged by the thousand from
        # the gateway's address; the callback logs what it acts on.
        self.heard += 1
        try:
            self._received(announcement)
        except Exception:
            log.failure("announcement callback failed")


def listenAnnouncements(
    reactor: IReactorMulticast,
    protocol: AnnouncementProtocol,
    *,
    group: str = ANNOUNCE_GROUP,
    port: int = CLIENT_PORT,
) -> IListeningPort:
    """
    Bind C{protocol} to the announcement group and port.

    RFC 6886 s3.2.1: bind to 224.0.0.1:5350, not 0.0.0.0:5350 (so unicast
    to port 5350 is not taken for an announcement), with address reuse so
    that several clients on one host all hear announcements.

    @raise twisted.internet.error.CannotListenError: the port cannot be
        bound.
    """
    listening = reactor.listenMulticast(
        port, protocol, interface=group, listenMultiple=True
    )
    # The multicast port is a listening port too.
    return cast(IListeningPort, listening)
