# -*- test-case-name: tests.service.test_forwarded -*-
"""
L{ForwardedPortKeeper}: keep a VPN gateway's forwarded public port alive
for UDP and TCP, and say when it changes.

Each round asks the UDP forwarded port (internal port 0 with the lifetime,
suggesting the port held, or the one last held, RFC 6886 s3.7, or 0 at
first), then the TCP one suggesting the port UDP got, so that both end on
the same public port where the gateway allows it, then the gateway's
external address (short schedule, a failure tolerated; asked last, so that
it never delays the port).  A gateway that grants TCP another port is
reported as is: L{ForwardedPort} carries both, and L{ForwardedPort.port}
(the one published by the service) is UDP's; asking again would bring the
same answer.

Timing (RFC 6886 s3.3): the next round comes at half the lease granted (of
the one asked for if more was granted), 30 s of ProtonVPN's 60 s, never
sooner than L{MIN_ROUND_INTERVAL}.  The lease is counted from when the UDP
request was first sent, so that it is never overestimated.  Each request
is sent on the short s3.1 schedule of one mapping attempt (L{MAP_TIMEOUTS},
3.75 s), and a failed round is retried L{RETRY_WHILE_HELD} seconds after
it ended while the port is held: a renewal lost at 30 s of a 60 s lease is
tried again at 38.75, 47.5 and 56.25 s, three more rounds; once the lease
has run out the port is reported lost and rounds are retried with the
capped backoff (never longer apart than the lease): the port is never
given up.  A gateway that answers result 2 (not authorized: port
forwarding is off for this connection) is not asked again for
L{NOT_AUTHORIZED_WAIT} seconds, a long-lived error as RFC 6887 s7.4 counts
it.  A gateway that restarted grants a port at the next round, the same or
a new one (the keeper does not listen for announcements: a VPN gateway
sends none through the tunnel).

Logging: the first failure of a run of failures is a warning, and so is a
reminder at most every L{SILENCE_REMINDER} seconds while it lasts; the
other failures are logged at info, so that a lasting outage does not flood
the log.

The states, each owning its timer or L{Deferred}: idle (not started),
asking (a round in flight), waiting (the timer of the next round) and
stopped; L{KeeperState} names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .._types import IPAddress, Transport
from ..errors import NATPMPError, NotAuthorizedError
from ..interfaces import IForwardedPortMapper
from ..pcp._retransmit import LONG_ERROR_BACKOFF
from .policy import ADDRESS_TIMEOUTS, MAP_TIMEOUTS, SILENCE_REMINDER, defaultBackoff

__all__ = [
    "MIN_ROUND_INTERVAL",
    "NOT_AUTHORIZED_WAIT",
    "RETRY_WHILE_HELD",
    "ForwardedPort",
    "ForwardedPortKeeper",
    "KeeperState",
]

log = Logger()

#: Seconds between rounds after a failed renewal, while the lease lasts.
RETRY_WHILE_HELD = 5.0
#: A gateway's very short lease never makes rounds come sooner than this
#: many seconds apart (one granting 1 s would otherwise be asked twice a
#: second); unlike the mapper service's 10 s floor it lets the short leases
#: of a test gateway (C{--vpn-lease 4}) be kept.
MIN_ROUND_INTERVAL = 1.0
#: Seconds before asking again a gateway that answered result 2 (not
#: authorized): the mapper service's wait after a long-lived error.
NOT_AUTHORIZED_WAIT = LONG_ERROR_BACKOFF


@dataclass(frozen=True, slots=True)
class ForwardedPort:
    """
    The public port a VPN gateway forwards, as last granted.

    @ivar udpPort: the public UDP port.
    @ivar tcpPort: the public TCP port (the same, unless the gateway chose
        another).
    @ivar lifetime: the lease, in seconds: the one granted, or the one asked
        for if more was granted (RFC 6886 s3.3).
    @ivar expires: when the lease runs out, in the clock's seconds.
    @ivar externalAddress: the gateway's public address, if known.
    """

    udpPort: int
    tcpPort: int
    lifetime: int
    expires: float
    externalAddress: IPAddress | None = None

    @property
    def port(self) -> int:
        """
        The port to publish: UDP's.
        """
        return self.udpPort

    @property
    def samePort(self) -> bool:
        """
        Did UDP and TCP get the same public port?
        """
        return self.udpPort == self.tcpPort

    def movedFrom(self, before: ForwardedPort | None) -> bool:
        """
        Are these public ports other than C{before}'s (a UDP or a TCP port
        that changed), or is there none before?
        """
        return before is None or (before.udpPort, before.tcpPort) != (
            self.udpPort,
            self.tcpPort,
        )


class KeeperState(Enum):
    """
    Where a L{ForwardedPortKeeper} is.
    """

    IDLE = "idle"
    ASKING = "asking"
    WAITING = "waiting"
    STOPPED = "stopped"


#: What the keeper reports: the port held now (L{None}: lost) and the one
#: held before (L{None}: none), and the error of a failed round that lost it.
Report = Callable[
    ["ForwardedPort | None", "ForwardedPort | None", "Exception | None"], object
]


class ForwardedPortKeeper:
    """
    Keeps one forwarded public port, for UDP and TCP, through an
    L{IForwardedPortMapper}.

    @ivar state: the L{KeeperState}.
    @ivar held: the port held, or L{None}.
    @ivar error: why the last round failed, or L{None} after a success.
    @ivar failures: rounds failed in a row.
    """

    def __init__(
        self,
        clock: IReactorTime,
        mapper: IForwardedPortMapper,
        report: Report,
        *,
        lifetime: int = 60,
        timeouts: Sequence[float] = MAP_TIMEOUTS,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        """
        @param report: C{report(new, old, error)} after every round that
            changed what is held (a new port, a renewal that moved it, a
            loss), once the keeper is in its next state.
        @param lifetime: the lease to ask for, in seconds.
        @param timeouts: the retransmission schedule of each request.
        @param backoff: the wait after the Nth failed round with no port
            held (by default L{defaultBackoff}), capped at the lease.
        """
        self._clock = clock
        self._mapper = mapper
        self._report = report
        self.lifetime = lifetime
        self._timeouts = tuple(timeouts)
        self._backoff = defaultBackoff() if backoff is None else backoff
        self.state = KeeperState.IDLE
        self.held: ForwardedPort | None = None
        self.error: Exception | None = None
        self.failures = 0
        self._timer: IDelayedCall | None = None
        self._round: Deferred[None] | None = None
        self._address: IPAddress | None = None
        #: The UDP port last held, suggested again after a loss (s3.7).
        self._lastPort = 0
        #: When the current run of failures was last warned about.
        self._warnedAt: float | None = None

    def start(self) -> None:
        """
        Ask for the port now, and keep it from then on.
        """
        if self.state is not KeeperState.IDLE:
            raise RuntimeError(f"keeper already {self.state.value}")
        self._ask()

    def stop(self) -> None:
        """
        Stop asking: cancel the round in flight or the timer.  The gateway's
        lease runs out by itself (the mapping is not deleted: internal port 0
        with lifetime 0 would delete all of this host's mappings, s3.4).
        """
        previous, self.state = self.state, KeeperState.STOPPED
        if previous is KeeperState.WAITING and self._timer is not None:
            self._timer.cancel()
        elif previous is KeeperState.ASKING and self._round is not None:
            self._round.cancel()
        self._timer = self._round = None

    # Transitions

    def _ask(self) -> None:
        self.state = KeeperState.ASKING
        self._timer = None
        self._round = Deferred.fromCoroutine(self._oneRound())

    def _wait(self, delay: float) -> None:
        self.state = KeeperState.WAITING
        self._round = None
        self._timer = self._clock.callLater(delay, self._ask)

    async def _oneRound(self) -> None:
        try:
            port = await self._askPorts()
        except CancelledError:
            return
        except (NATPMPError, OSError, ValueError) as e:
            self._failed(e)
        else:
            self._granted(port)

    async def _askPorts(self) -> ForwardedPort:
        mapper = self._mapper
        # RFC 6886 s3.7: suggest the port held, or the one last held.
        suggest = self._lastPort if self.held is None else self.held.udpPort
        # The lease runs from the first transmission, not from the reply.
        sent = self._clock.seconds()
        udp = await mapper.forwardedPort(
            Transport.UDP, self.lifetime, suggest, timeouts=self._timeouts
        )
        tcp = await mapper.forwardedPort(
            Transport.TCP, self.lifetime, udp.externalPort, timeouts=self._timeouts
        )
        try:
            self._address = await mapper.externalAddress(timeouts=ADDRESS_TIMEOUTS)
        except (NATPMPError, OSError) as e:
            log.debug("external address unknown: {error}", error=str(e))
        lifetime = min(udp.lifetime, tcp.lifetime, self.lifetime)
        return ForwardedPort(
            udp.externalPort,
            tcp.externalPort,
            lifetime,
            sent + lifetime,
            self._address,
        )

    def _granted(self, port: ForwardedPort) -> None:
        old, self.held = self.held, port
        self._lastPort = port.udpPort
        self.error = None
        self.failures = 0
        self._warnedAt = None
        # RFC 6886 s3.3: renew at half the lease.
        self._wait(max(port.lifetime / 2, MIN_ROUND_INTERVAL))
        if port.movedFrom(old):
            self._tell(port, old, None)

    def _logFailure(self, text: str, **fields: Any) -> None:
        # The first failure of a run, then a reminder every
        # SILENCE_REMINDER seconds, are warnings; the rest are info.
        now = self._clock.seconds()
        if self._warnedAt is None or now - self._warnedAt >= SILENCE_REMINDER:
            self._warnedAt = now
            log.warn(text, failures=self.failures, **fields)
        else:
            log.info(text, failures=self.failures, **fields)

    def _failed(self, error: Exception) -> None:
        self.error = error
        self.failures += 1
        held = self.held
        now = self._clock.seconds()
        refused = isinstance(error, NotAuthorizedError)
        if held is not None and now < held.expires and not refused:
            left = held.expires - now
            delay = min(RETRY_WHILE_HELD, left)
            self._logFailure(
                "renewing forwarded port {port} failed ({error}); trying again"
                " in {delay:g} s, {left:g} s before the lease runs out",
                port=held.port,
                error=str(error),
                delay=round(delay, 2),
                left=round(left, 2),
            )
            self._wait(delay)
            return
        if refused:
            # Result 2: port forwarding is off; it stays off for a while.
            delay = NOT_AUTHORIZED_WAIT
            self._logFailure(
                "the VPN gateway refuses to forward a port ({error}): is port"
                " forwarding on for this VPN connection? Not asking again for"
                " {delay:g} s (restarting asks at once)",
                error=str(error),
                delay=delay,
            )
        else:
            delay = min(self._backoff(self.failures), float(self.lifetime))
            self._logFailure(
                "no forwarded port from the VPN gateway: {error}; trying again in"
                " {delay:g} s",
                error=str(error),
                delay=round(delay, 2),
            )
        self._wait(delay)
        if held is not None:
            self.held = None
            self._tell(None, held, error)

    def _tell(
        self,
        new: ForwardedPort | None,
        old: ForwardedPort | None,
        error: Exception | None,
    ) -> None:
        try:
            self._report(new, old, error)
        except Exception:
            log.failure("reporting the forwarded port failed")


def describe(port: ForwardedPort) -> dict[str, Any]:
    """
    The JSON-safe fields of C{port}, for a log event.
    """
    return {
        "udpPort": port.udpPort,
        "tcpPort": port.tcpPort,
        "lifetime": port.lifetime,
        "externalAddress": None
        if port.externalAddress is None
        else str(port.externalAddress),
    }
