"""
The exceptions twisted-natpmp raises.  One base, L{NATPMPError}; a subclass
per RFC 6886 s3.5 result code, each carrying the code and its meaning.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ._wire import ResultCode, describeResult


class NATPMPError(Exception):
    """
    The base of every error twisted-natpmp raises on purpose.
    """


class GatewayError(NATPMPError):
    """
    The gateway answered a request with a non-zero result code.

    @ivar resultCode: the code as received (possibly one RFC 6886 does not
        define; such a code fails the request, s3.5).
    @ivar meaning: what the code means, for a person.
    """

    expectedCode: int | None = None

    def __init__(self, resultCode: int) -> None:
        self.resultCode = resultCode
        self.meaning = describeResult(resultCode)
        super().__init__(f"gateway answered result code {resultCode} ({self.meaning})")


class UnsupportedVersionError(GatewayError):
    expectedCode = ResultCode.UNSUPPORTED_VERSION


class NotAuthorizedError(GatewayError):
    expectedCode = ResultCode.NOT_AUTHORIZED


class NetworkFailureError(GatewayError):
    expectedCode = ResultCode.NETWORK_FAILURE


class OutOfResourcesError(GatewayError):
    expectedCode = ResultCode.OUT_OF_RESOURCES


class UnsupportedOpcodeError(GatewayError):
    expectedCode = ResultCode.UNSUPPORTED_OPCODE


class UnknownResultError(GatewayError):
    """
    A result code RFC 6886 does not define; fatal for that request (s3.5).
    """


_BY_CODE: dict[int, type[GatewayError]] = {
    cls.expectedCode: cls
    for cls in (
        UnsupportedVersionError,
        NotAuthorizedError,
        NetworkFailureError,
        OutOfResourcesError,
        UnsupportedOpcodeError,
    )
    if cls.expectedCode is not None
}


def errorForResult(resultCode: int) -> GatewayError:
    """
    The exception for a non-zero result code.
    """
    return _BY_CODE.get(resultCode, UnknownResultError)(resultCode)


class NoResponseError(NATPMPError):
    """
    The gateway never answered: every retransmission of RFC 6886 s3.1 went
    unanswered, or the caller's own time limit ran out.

    @ivar gateway: the gateway asked.
    @ivar attempts: how many times the request was sent.
    """

    def __init__(self, gateway: IPv4Address, attempts: int, seconds: float) -> None:
        self.gateway = gateway
        self.attempts = attempts
        self.seconds = seconds
        super().__init__(
            f"no response from gateway {gateway} after {attempts} attempt(s)"
            f" in {round(seconds, 2):g} s"
        )


class NoGatewayError(NATPMPError):
    """
    No default IPv4 gateway could be found; name one explicitly.
    """


class InvalidResponseError(NATPMPError):
    """
    The gateway answered with a response that claims success but cannot be
    used (for instance a mapping with no external port or no lifetime).
    """


class NotSupportedError(NATPMPError):
    """
    The gateway refused the packets outright (ICMP port unreachable): it
    does not run NAT-PMP (RFC 6886 s3.1).

    @ivar gateway: the gateway asked.
    """

    def __init__(self, gateway: IPv4Address) -> None:
        self.gateway = gateway
        super().__init__(
            f"gateway {gateway} does not speak NAT-PMP (ICMP port unreachable)"
        )
