# -*- test-case-name: tests.natpmp.test_client -*-
"""
The NAT-PMP client: L{NATPMPClient}, the NAT-PMP codec and its matching
over the request engine (L{twisted_natpmp._exchange.Exchange}), whose calls
return L{Deferred}s.

Requests are queued and sent one at a time (RFC 6886 s3.1, s3.7), each
retransmitted on the RFC 6886 s3.1 schedule until a matching reply arrives.
Every reply from the gateway feeds the s3.6 epoch rule, judged on a
monotonic clock (C{monotonic=}, by default L{time.monotonic}) so that a step
of the wall clock is no gateway reboot; observers hear when the gateway has
lost its state.

Stopping: L{NATPMPClient.cancelPending} cancels every queued and in-flight
request without sending the next; L{NATPMPClient.deleteMappings} then sends
a batch of deletions together, outside the queue, each still unanswered
resent on the s3.1 doubling schedule within a stop deadline
(L{DELETION_TIMEOUTS}), and fires, never later than the sum of
its timeouts, with a C{dict} from each C{(transport, internalPort)} to
L{None} (deleted) or the L{Failure <twisted.python.failure.Failure>} saying
why not (L{NoResponseError}, L{GatewayError} with the result code, ...).
L{NATPMPClient.stop} cancels everything, batches included, and closes the
port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.logger import Logger
from zope.interface import implementer

from .._exchange import (
    DEFAULT_TIMEOUTS,
    Exchange,
    ExchangeProtocol,
)
from .._types import Mapping, ProtocolName, Transport
from ..interfaces import (
    IExternalAddressQuery,
    IForwardedPortMapper,
    IPortMapper,
    MappingKey,
    Probe,
)
from ._deletion import DELETION_TIMEOUTS, SentDeletions
from ._deletions import DeletionsMixin
from ._epochs import STATE_LOSS_INTERVAL, EpochWatch
from ._forwarded import FORWARDED_LIFETIME, ForwardedPortRequest, forwardedMapping
from ._matching import checkResult, describeRequest, mappingFrom
from ._observers import ObserversMixin
from ._wire import (
    RECOMMENDED_LIFETIME,
    SERVER_PORT,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    Request,
    Response,
    ResultCode,
    decodeResponse,
)

__all__ = [
    "DELETION_TIMEOUTS",
    "RETRANSMIT_TIMEOUTS",
    "STATE_LOSS_INTERVAL",
    "MappingKey",
    "NATPMPClient",
    "NATPMPClientProtocol",
    "describeRequest",
    "listenClient",
]

log = Logger()

#: RFC 6886 s3.1: wait 250 ms after the first request, doubling after each
#: retransmission; after the 9th attempt and its 64 s wait, give up.
RETRANSMIT_TIMEOUTS: tuple[float, ...] = DEFAULT_TIMEOUTS

#: The old name of the engine's datagram protocol, which a client's
#: C{protocol} attribute is.
NATPMPClientProtocol = ExchangeProtocol

_SUCCESS = int(ResultCode.SUCCESS)


@implementer(IPortMapper, IExternalAddressQuery, IForwardedPortMapper)
class NATPMPClient(DeletionsMixin, ObserversMixin):
    """
    Ask one NAT-PMP gateway for its external address and for port mappings.

    @ivar gateway: the gateway's address.
    @ivar gatewayPort: the gateway's port (5351; other values are for tests).
    @ivar exchange: the request engine that owns the socket.
    @ivar protocol: the datagram protocol to listen with, e.g.
        C{reactor.listenUDP(0, client.protocol)}; or use L{listenClient}.
    @ivar connectSocket: whether the socket is connected to the gateway (no
        extra sources).
    @ivar timeouts: the default retransmission schedule.
    @ivar drops: the aggregated log of the datagrams dropped: malformed, or
        from another source than the gateway.
    @ivar epochs: the watch on the gateway's epochs.
    @ivar lastExternalAddress: the external address the gateway last
        reported, or L{None}.
    @ivar epochTracker: the RFC 6886 s3.6 judge of the gateway's epochs.
    @ivar pcpEpochTracker: the RFC 6887 s8.5 judge of the epochs of the
        gateway's PCP announcements (the two epochs are not comparable).
    """

    protocolName = ProtocolName.NATPMP

    def __init__(
        self,
        clock: IReactorTime,
        gateway: IPv4Address | str,
        *,
        gatewayPort: int = SERVER_PORT,
        extraSources: Iterable[IPv4Address | str] = (),
        timeouts: Sequence[float] = RETRANSMIT_TIMEOUTS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param clock: schedules the retransmissions.
        @param gateway: the gateway to ask.
        @param gatewayPort: the gateway's UDP port.
        @param extraSources: other addresses the gateway may answer from (a
            CARP/VRRP pair answering from its real address); replies from any
            other address are ignored (RFC 6886 s3.1).
        @param timeouts: the default retransmission schedule: one wait, in
            seconds, after each send.
        @param monotonic: returns the seconds of a clock that never steps,
            for the RFC 6886 s3.6 judgement of the gateway's epochs (a wall
            clock set by NTP at boot would look like a gateway reboot);
            tests pass their L{twisted.internet.task.Clock}'s C{seconds}.
        """
        self._clock = clock
        self.gateway = IPv4Address(gateway)
        self.gatewayPort = gatewayPort
        self._deletions = SentDeletions(clock)
        self.exchange: Exchange[Request, Response] = Exchange(
            clock,
            self.gateway,
            gatewayPort,
            decode=decodeResponse,
            matches=self._deletions.answers,
            received=self._receivedResponse,
            sent=self._deletions.sent,
            timeouts=timeouts,
            extraSources=[IPv4Address(a) for a in extraSources],
            protocolName=self.protocolName.display,
            describe=describeRequest,
        )
        self.lastExternalAddress: IPv4Address | None = None
        self.protocol: ExchangeProtocol = self.exchange.protocol
        self.connectSocket = self.exchange.connectSocket
        self.timeouts = self.exchange.timeouts
        self.drops = self.exchange.drops
        self.epochs = EpochWatch(log, clock, str(self.gateway), monotonic)
        self.epochTracker = self.epochs.natpmp
        self.pcpEpochTracker = self.epochs.pcp
        self._monotonic = monotonic
        # The last reply judged by the epoch rule, and the verdict.
        self._judged: tuple[Response | None, bool] = (None, False)

    def __repr__(self) -> str:
        return f"<NATPMPClient gateway={self.gateway}:{self.gatewayPort}>"

    # IPortMapper, IExternalAddressQuery

    def externalAddress(  # type: ignore[override]
        self, timeouts: Sequence[float] | None = None
    ) -> Deferred[IPv4Address]:
        """
        Ask the gateway for its external address (RFC 6886 s3.2).
        """
        d = self._submit(ExternalAddressRequest(), timeouts)
        return d.addCallback(self._gotExternalAddress)

    def probe(self, timeouts: Sequence[float] | None = None) -> Deferred[Probe]:
        """
        Ask the gateway for its external address (RFC 6886 s3.2), as the
        health check: fires with a L{Probe} of its epoch, address and
        whether that epoch shows a loss of state (s3.6).
        """
        d = self._submit(ExternalAddressRequest(), timeouts)
        return d.addCallback(self._gotProbe)

    def addMapping(
        self,
        transport: Transport,
        internalPort: int,
        externalPort: int | None = None,
        lifetime: int = RECOMMENDED_LIFETIME,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Create or renew a mapping (RFC 6886 s3.3).

        @param externalPort: the external port to suggest; by default the
            internal port (some routers fail on 0).
        @param lifetime: the requested lifetime, 1 s or more; the granted
            one, in the result, may differ.
        @return: fires with the L{Mapping}; its C{renewAfter} is half the
            lifetime granted, or half the one asked for if that is shorter
            (RFC 6886 s3.3).
        """
        if lifetime == 0:
            return fail(ValueError("lifetime 0 deletes a mapping; use deleteMapping"))
        if internalPort == 0:
            return fail(ValueError("internal port 0 cannot be mapped"))
        suggested = internalPort if externalPort is None else externalPort
        try:
            request = MapRequest(
                Transport(transport), internalPort, suggested, lifetime
            )
        except ValueError as e:
            return fail(e)
        d = self._submit(request, timeouts)
        return d.addCallback(self._gotMapping, request)

    def forwardedPort(
        self,
        transport: Transport,
        lifetime: int = FORWARDED_LIFETIME,
        externalPort: int = 0,
        timeouts: Sequence[float] | None = None,
    ) -> Deferred[Mapping]:
        """
        Ask a VPN gateway for its forwarded public port: internal port 0
        with a lifetime, whose reply is matched whatever internal port it
        echoes (a departure from RFC 6886 s3.4 on purpose, see
        L{twisted_natpmp.natpmp._forwarded}).

        @param externalPort: the public port to suggest (0: any).
        @return: fires with the L{Mapping} granted; its C{internalPort} is
            the public port when the reply echoes 0.
        """
        try:
            request = ForwardedPortRequest(Transport(transport), externalPort, lifetime)
        except ValueError as e:
            return fail(e)
        d = self._submit(request, timeouts)
        return d.addCallback(
            lambda response: forwardedMapping(
                mappingFrom(response, request, self.lastExternalAddress)
            )
        )

    def cancelPending(self) -> None:
        """
        Cancel every request that is queued or waiting for its reply,
        batches of L{NATPMPClient.deleteMappings} included, sending nothing more: the
        queued ones go first, so that cancelling the one in flight does not
        send the next.  The client stays usable.
        """
        self.exchange.cancelPending()

    def sourceAddress(self) -> IPv4Address | None:
        """
        The local address the socket reaches the gateway from, or L{None}
        if it is not bound (or bound to no address yet).
        """
        address = self.exchange.sourceAddress()
        return address if isinstance(address, IPv4Address) else None

    # Lifecycle

    def listen(self, reactor: IReactorUDP, interface: str = "") -> IListeningPort:
        """
        Bind an ephemeral UDP port for this client.  Should the port be
        closed under it (ICMP port unreachable, on the epoll reactor), the
        client binds a new one the same way.
        """
        return self.exchange.listen(reactor, interface)

    def stop(self) -> Deferred[None]:
        """
        Cancel every pending request (L{cancelPending}) and stop listening;
        later requests fail at once.
        """
        d = self.exchange.stop()
        self.epochs.stop()
        return d

    # Internals

    def _submit(
        self, request: Request, timeouts: Sequence[float] | None
    ) -> Deferred[Response]:
        d = self.exchange.submit(request, request.encode(), timeouts=timeouts)
        return d.addCallback(checkResult)

    def _receivedResponse(self, response: Response) -> None:
        self._judged = (response, self.epochs.judge(response.epoch))

    def _gotExternalAddress(self, response: Response) -> IPv4Address:
        assert isinstance(response, ExternalAddressResponse)
        self.lastExternalAddress = response.externalAddress
        return response.externalAddress

    def _gotProbe(self, response: Response) -> Probe:
        judged, lost = self._judged
        address = self._gotExternalAddress(response)
        return Probe(
            ProtocolName.NATPMP,
            response.epoch,
            address,
            stateLost=lost and judged is response,
        )

    def _gotMapping(self, response: Response, request: MapRequest) -> Mapping:
        return mappingFrom(response, request, self.lastExternalAddress)


def listenClient(
    reactor: Any,
    gateway: IPv4Address | str,
    *,
    interface: str = "",
    **kwargs: Any,
) -> NATPMPClient:
    """
    Make a L{NATPMPClient} for C{gateway} and bind it to an ephemeral UDP
    port.

    @param reactor: provides L{IReactorUDP} and L{IReactorTime}.
    @param interface: the local address to bind.
    @param kwargs: passed to L{NATPMPClient}.
    """
    client = NATPMPClient(reactor, gateway, **kwargs)
    client.listen(reactor, interface)
    return client
