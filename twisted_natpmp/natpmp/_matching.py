# -*- test-case-name: tests.natpmp.test_client -*-
"""
What the NAT-PMP client needs besides the codec and the request engine:
which reply answers which request (RFC 6886 s3.3, s3.5), how a request is
named for a person, and the aggregated log of the gateway's losses of state
(RFC 6886 s3.6).
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._wire import (
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Request,
    Response,
    ResultCode,
)

__all__ = [
    "LATE_REPLY_SECONDS",
    "STATE_LOSS_INTERVAL",
    "StateLossLog",
    "describeRequest",
    "matches",
]

#: How long after a deletion was last sent a success with lifetime 0 for the
#: same port is taken for that deletion's late duplicate reply rather than an
#: invalid answer to a mapping request (RFC 6886 s3.3, s3.4).
LATE_REPLY_SECONDS = 30.0

#: Seconds between two summaries of the gateway's losses of state: the
#: first loss of a quiet period is warned of at once, further ones (a flood
#: of forged replies or announcements with lower epochs, or a gateway
#: restarting again and again) in one line per interval.
STATE_LOSS_INTERVAL = 60.0

_UNSUPPORTED_VERSION = int(ResultCode.UNSUPPORTED_VERSION)
_SUCCESS = int(ResultCode.SUCCESS)


def matches(request: Request, response: Response, lateDeletion: bool) -> bool:
    """
    Is C{response} the answer to C{request}?  The opcode must be the
    request's plus 128, and a mapping reply must echo the transport and
    internal port (RFC 6886 s3.3, s3.5; old routers garbled ports).  The
    unsupported version reply may carry opcode 0 or 128 whatever was asked
    (Errata 3618).

    @param lateDeletion: a deletion of the same port was sent lately, so a
        success with lifetime 0 may be its late duplicate reply.
    """
    if isinstance(response, ErrorResponse):
        if response.opcode == RESPONSE_BIT | request.opcode:
            return True
        return (
            response.opcode in (0, RESPONSE_BIT)
            and response.resultCode == _UNSUPPORTED_VERSION
        )
    if isinstance(request, ExternalAddressRequest):
        return isinstance(response, ExternalAddressResponse)
    if not (
        isinstance(response, MapResponse)
        and response.transport == request.transport
        and response.internalPort == request.internalPort
    ):
        return False
    # A late duplicate reply to a mapping request must not confirm a
    # deletion of the same port, nor the reverse: a successful reply grants
    # a lifetime exactly when one was asked for (s3.3, s3.4).  Error replies
    # carry lifetime 0 whatever was asked (s3.5).  A success with lifetime 0
    # to a mapping request when no deletion of the port was sent lately is
    # an invalid answer, which fails the request at once (s3.3).
    if response.resultCode != _SUCCESS:
        return True
    if request.lifetime == 0:
        return response.lifetime == 0
    return response.lifetime != 0 or not lateDeletion


def describeRequest(request: Request) -> str:
    """
    Say what C{request} asks, for a log line or an error message.

    @return: e.g. C{"the TCP mapping request for port 8080"}.
    """
    if isinstance(request, ExternalAddressRequest):
        return "the external address request"
    assert isinstance(request, MapRequest)
    label = request.transport.name
    if request.lifetime:
        return f"the {label} mapping request for port {request.internalPort}"
    if request.internalPort:
        return f"the {label} deletion of port {request.internalPort}"
    return f"the deletion of every {label} mapping"


class StateLossLog:
    """
    Log a gateway's losses of state: the first of a quiet period at once,
    further ones summarised every L{STATE_LOSS_INTERVAL} seconds, so that a
    flood of forged packets with lower epochs (RFC 6886 s3.6) costs a line a
    minute, not a line a packet.  (The lines are tested word for word, so
    this keeps its own texts rather than L{twisted_natpmp._droplog.DropLog}'s.)
    """

    def __init__(self, log: Logger, clock: IReactorTime, gateway: str) -> None:
        self._log = log
        self._clock = clock
        self._gateway = gateway
        #: Losses of state not yet told, the last one's epoch, and the
        #: summary that tells them (None: the next loss is told at once).
        self._untold = 0
        self._lastEpoch = 0
        self._summary: IDelayedCall | None = None

    def lost(self, epoch: int) -> None:
        """
        The gateway lost its state, by a packet with C{epoch}.
        """
        if self._summary is None:
            self._log.warn(
                "gateway {gateway} lost its mapping state (epoch {epoch});"
                " further losses are summarised every {interval:.0f} s",
                gateway=self._gateway,
                epoch=epoch,
                interval=STATE_LOSS_INTERVAL,
            )
            self._summary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._intervalOver
            )
            return
        # Not even a debug line each: a log that records debug (twistd's)
        # would grow by a line a packet.
        self._untold += 1
        self._lastEpoch = epoch

    def stop(self) -> None:
        """
        Say what is not yet said, and stop the summaries.
        """
        summary, self._summary = self._summary, None
        if summary is not None and summary.active():
            summary.cancel()
        self._summarise()

    def _intervalOver(self) -> None:
        self._summary = None
        if self._summarise():
            self._summary = self._clock.callLater(
                STATE_LOSS_INTERVAL, self._intervalOver
            )

    def _summarise(self) -> bool:
        """
        Say how many losses of state came since the last line, if any.

        @return: whether there were any.
        """
        count, self._untold = self._untold, 0
        if not count:
            return False
        self._log.warn(
            "gateway {gateway} lost its mapping state {count} more {times} in"
            " the last {interval:.0f} s (last epoch {epoch}): it restarts"
            " often, or someone forges its packets",
            gateway=self._gateway,
            count=count,
            times="time" if count == 1 else "times",
            interval=STATE_LOSS_INTERVAL,
            epoch=self._lastEpoch,
        )
        return True
