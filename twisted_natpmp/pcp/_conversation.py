# -*- test-case-name: tests.pcp.test_client -*-
"""
The PCP conversation with one server, under L{twisted_natpmp.pcp.client}:
the request engine in windowed predicate mode, the client's own address
(RFC 6887 s8.2), the s8.1.1 retransmission schedule of each request, and the
s8.5 judgement of every epoch the server sends, with its state-loss
observers.  It knows requests and replies, not mappings or nonces.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.logger import Logger

from .._droplog import DropLog
from .._epoch import EpochTracker, PCPEpochTracker
from .._exchange import Exchange, notifyObservers
from .._types import Announcement, AnnouncementKind, IPAddress
from ..errors import PortMappingError, UnsupportedVersionError
from ._fields import VERSION, Opcode
from ._matching import (
    NATPMPUnsupportedVersion,
    Reply,
    decodeReply,
    describeRequest,
    matches,
)
from ._retransmit import CALL_LIMIT, retransmissionSchedule
from ._wire import Request, Response, ResultCode, errorForResult

__all__ = ["WINDOW", "Conversation", "checkResult"]

log = Logger()

#: How many queued requests may be in flight at once.  No
#: one-request-at-a-time rule like RFC 6886 s3.1 is known for PCP (the
#: RFC 6887 s8 text was read only as implementations quote it, PROTOCOL.md
#: A2): each request is retransmitted on its own s8.1.1 schedule, and each
#: reply names the mapping it answers (nonce, protocol, internal port:
#: s11.1), so replies to requests in flight together are not confused.
#: Small, so that a server just rebooted, when every mapping is made again,
#: sees a bounded burst; miniupnpd answers 8 in flight several times faster
#: than one at a time.
WINDOW = 8


class Conversation:
    """
    Requests to one PCP server over one socket, each retransmitted by RFC
    6887 s8.1.1 (or a caller's schedule), each reply's epoch judged by s8.5.

    @ivar gateway: the server's address.
    @ivar internalAddress: the address bound to, if given.
    @ivar exchange: the request engine.
    @ivar epochTracker: the RFC 6887 s8.5 judge of the server's epochs.
    @ivar natpmpEpochTracker: the RFC 6886 s3.6 judge of the gateway's
        NAT-PMP announcements (that epoch is not comparable).
    """

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPAddress,
        gatewayPort: int,
        *,
        internalAddress: IPAddress | None,
        window: int = WINDOW,
        timeouts: Sequence[float] | None = None,
        limit: float = CALL_LIMIT,
        extraSources: Iterable[IPAddress | str] = (),
        random: Callable[[], float] = _random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.internalAddress = internalAddress
        self._timeouts = None if timeouts is None else tuple(timeouts)
        self._limit = limit
        self._random = random
        self._monotonic = monotonic
        self.exchange: Exchange[Request, Reply] = Exchange(
            clock,
            gateway,
            gatewayPort,
            decode=decodeReply,
            matches=matches,
            received=self._received,
            unanswered=self._unanswered,
            window=window,
            timeouts=self._timeouts or (limit,),
            describe=describeRequest,
            extraSources=[ip_address(str(a)) for a in extraSources],
            protocolName="PCP",
        )
        self.epochTracker = PCPEpochTracker()
        self.natpmpEpochTracker = EpochTracker()
        self._judged: tuple[Reply | None, bool] = (None, False)
        # The first loss of a quiet period is warned of at once, further
        # ones (a flood of forged responses, a gateway restarting again and
        # again) summarised.
        self._losses = DropLog(
            log,
            clock,
            f"PCP client of {gateway}",
            verb="saw a loss of the gateway's mapping state in",
        )
        self._observers: list[Callable[[], object]] = []

    def clientAddress(self) -> IPAddress:
        """
        The address the server will see as the source (RFC 6887 s8.2): the
        one bound to, or the connected socket's own (the kernel's choice of
        route), so that a multi-homed host earns no ADDRESS_MISMATCH.

        @raise PortMappingError: there is none yet, or it is of the wrong
            family.
        """
        address = self.internalAddress or self.exchange.sourceAddress()
        if address is None:
            raise PortMappingError(
                f"the PCP client of {self.gateway} has no source address"
                " (not listening, or its socket is not connected)"
            )
        if isinstance(address, IPv4Address) != isinstance(self.gateway, IPv4Address):
            raise PortMappingError(
                f"source address {address} is not of the family of {self.gateway}"
            )
        return address

    def submit(
        self, request: Request, timeouts: Sequence[float] | None
    ) -> Deferred[Reply]:
        """
        Send C{request} until answered: on C{timeouts} if given, else the
        client's fixed schedule, else a fresh s8.1.1 schedule within the
        overall limit.

        @return: fires with the reply, which may report an error; see
            L{checkResult}.
        """
        limit: float | None = None
        if timeouts is not None:
            schedule: tuple[float, ...] = tuple(timeouts)
        elif self._timeouts is not None:
            schedule = self._timeouts
        else:
            schedule = retransmissionSchedule(self._random, self._limit)
            limit = self._limit
        return self.exchange.submit(
            request, request.encode(), timeouts=schedule, limit=limit
        )

    def judged(self, reply: Reply) -> bool:
        """
        Whether C{reply}, the last reply received, showed a loss of state.
        """
        last, lost = self._judged
        return lost and last is reply

    def announced(self, announcement: Announcement) -> bool:
        """
        Judge an announcement: a PCP ANNOUNCE by RFC 6887 s8.5 against every
        earlier epoch of the server (one clock); a NAT-PMP one by RFC 6886
        s3.6 against earlier NAT-PMP announcements only.

        @return: whether the gateway lost its state.
        """
        now = self._monotonic()
        if announcement.kind is AnnouncementKind.PCP:
            lost = self.epochTracker.update(announcement.epoch, now)
        else:
            lost = self.natpmpEpochTracker.update(announcement.epoch, now)
        if lost:
            self._stateLost(announcement.epoch)
        return lost

    def addStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Call C{observer()} whenever the server is seen to have lost its
        state.
        """
        self._observers.append(observer)

    def removeStateLossObserver(self, observer: Callable[[], object]) -> None:
        """
        Stop calling C{observer}.
        """
        self._observers.remove(observer)

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port: at L{internalAddress} if given, else at
        C{interface}, else the wildcard of the server's family.
        """
        if self.internalAddress is not None:
            interface = str(self.internalAddress)
        elif not interface and isinstance(self.gateway, IPv6Address):
            interface = "::"
        return self.exchange.listen(reactor, interface)

    def stop(self) -> Deferred[None]:
        """
        Cancel everything pending, stop the logs and the socket.
        """
        d = self.exchange.stop()
        self._losses.stop()
        return d

    def _received(self, reply: Reply) -> None:
        if isinstance(reply, NATPMPUnsupportedVersion) or reply.version != VERSION:
            self._judged = (reply, False)
            return
        lost = self.epochTracker.update(reply.epoch, self._monotonic())
        self._judged = (reply, lost)
        if lost:
            self._stateLost(reply.epoch)

    def _unanswered(self, reply: Reply, source: str) -> bool:
        # An ANNOUNCE response nobody asked for (RFC 6887 s14.1), unicast to
        # this socket: its epoch was judged in _received.
        return isinstance(reply, Response) and reply.opcode is Opcode.ANNOUNCE

    def _stateLost(self, epoch: int) -> None:
        self._losses.drop(str(self.gateway), "epoch", f"epoch {epoch}")
        notifyObservers(self._observers, "state-loss")


def checkResult(reply: Reply) -> Response:
    """
    The successful response, or the error it reports.

    @raise UnsupportedVersionError: with C{protocol="natpmp"}, for a
        NAT-PMP-only gateway's answer (RFC 6887 s9).
    @raise twisted_natpmp.errors.GatewayError: the server's error, carrying
        its code and lifetime (s7.4).
    """
    if isinstance(reply, NATPMPUnsupportedVersion):
        raise UnsupportedVersionError(
            1, "the gateway speaks only NAT-PMP", protocol="natpmp"
        )
    if reply.resultCode != ResultCode.SUCCESS:
        raise errorForResult(reply.resultCode, reply.lifetime)
    return reply
