# -*- test-case-name: tests.pcp.test_wire -*-
"""
PCP result codes (RFC 6887 s7.4), what they mean, the errors-by-meaning
classes they stand for, and the exception the codec raises for a packet it
cannot decode.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import (
    AddressMismatchError,
    CannotProvideExternalError,
    ExcessiveRemotePeersError,
    GatewayError,
    MalformedOptionError,
    MalformedRequestError,
    NetworkFailureError,
    NotAuthorizedError,
    OutOfResourcesError,
    UnknownResultError,
    UnsupportedOpcodeError,
    UnsupportedOptionError,
    UnsupportedProtocolError,
    UnsupportedVersionError,
    UserExceededQuotaError,
)

__all__ = [
    "RESULT_FOR_ERROR",
    "MalformedPacket",
    "ResultCode",
    "describeResult",
    "errorForResult",
    "isShortLived",
    "resultForError",
]

#: The protocol name an error carries when PCP said it.
PROTOCOL = "pcp"


class ResultCode(IntEnum):
    """
    The result codes of RFC 6887 s7.4.  The numbers differ from NAT-PMP's
    from 3 upwards (RFC 6886 s3.5): never mix the two enums.
    """

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


_ERRORS: dict[ResultCode, type[GatewayError]] = {
    ResultCode.UNSUPP_VERSION: UnsupportedVersionError,
    ResultCode.NOT_AUTHORIZED: NotAuthorizedError,
    ResultCode.MALFORMED_REQUEST: MalformedRequestError,
    ResultCode.UNSUPP_OPCODE: UnsupportedOpcodeError,
    ResultCode.UNSUPP_OPTION: UnsupportedOptionError,
    ResultCode.MALFORMED_OPTION: MalformedOptionError,
    ResultCode.NETWORK_FAILURE: NetworkFailureError,
    ResultCode.NO_RESOURCES: OutOfResourcesError,
    ResultCode.UNSUPP_PROTOCOL: UnsupportedProtocolError,
    ResultCode.USER_EX_QUOTA: UserExceededQuotaError,
    ResultCode.CANNOT_PROVIDE_EXTERNAL: CannotProvideExternalError,
    ResultCode.ADDRESS_MISMATCH: AddressMismatchError,
    ResultCode.EXCESSIVE_REMOTE_PEERS: ExcessiveRemotePeersError,
}

#: The PCP result code for each error class, for a gateway answering a
#: refusal (see L{resultForError}, which also handles subclasses and the
#: base class).
RESULT_FOR_ERROR: dict[type[GatewayError], ResultCode] = {
    error: code for code, error in _ERRORS.items()
}


def describeResult(code: int) -> str:
    """
    Say what a PCP result code means, including codes RFC 6887 does not
    define.

    @param code: an 8-bit result code as found on the wire.
    @return: e.g. C{"address mismatch"} or C{"unknown result code 99"}.
    """
    if code == ResultCode.SUCCESS:
        return "success"
    try:
        return _ERRORS[ResultCode(code)].defaultMeaning
    except ValueError:
        return f"unknown result code {code}"


def errorForResult(code: int, lifetime: int | None = None) -> GatewayError:
    """
    The error a PCP gateway means by a non-zero result code (RFC 6887 s7.4).

    @param code: the result code received.
    @param lifetime: the response's lifetime field: how long the error is
        expected to last (RFC 6887 s7.2).  miniupnpd sends 0 for long-lived
        errors: read it as "not soon", never as "retry now".
    @return: the L{GatewayError} subclass for the code, carrying C{code},
        C{protocol="pcp"} and C{lifetime}; L{UnknownResultError} for a code
        RFC 6887 does not define.
    @raise ValueError: C{code} is SUCCESS, which is no error.
    """
    if code == ResultCode.SUCCESS:
        raise ValueError("result code 0 (success) is not an error")
    try:
        errorClass = _ERRORS[ResultCode(code)]
    except ValueError:
        return UnknownResultError(
            code, describeResult(code), protocol=PROTOCOL, lifetime=lifetime
        )
    return errorClass(code, protocol=PROTOCOL, lifetime=lifetime)


def isShortLived(code: int) -> bool:
    """
    Whether RFC 6887 s7.4 counts an error as short-lived (worth retrying
    soon: NETWORK_FAILURE, NO_RESOURCES, USER_EX_QUOTA, and here
    CANNOT_PROVIDE_EXTERNAL, which the RFC leaves unclassed and miniupnpd
    treats as long), as the error classes'
    L{shortLived<twisted_natpmp.errors.GatewayError.shortLived>} says.  A
    gateway picks the error lifetime it sends by this.

    @param code: a non-zero result code.
    @return: C{True} if short-lived; C{False} if long-lived or unknown.
    """
    try:
        return _ERRORS[ResultCode(code)].shortLived
    except (ValueError, KeyError):
        return False


def resultForError(error: GatewayError) -> ResultCode:
    """
    The PCP result code with which a gateway answers a refusal.

    @param error: the refusal, typically raised by a mapping backend.
    @return: the code C{error} carries if PCP numbered it, else the code of
        the nearest class in L{RESULT_FOR_ERROR} along its method resolution
        order; NOT_AUTHORIZED for a plain L{GatewayError} (a refusal with no
        more precise meaning) and for L{UnknownResultError}.
    """
    if error.protocol == PROTOCOL and error.resultCode is not None:
        try:
            return ResultCode(error.resultCode)
        except ValueError:
            pass
    for cls in type(error).__mro__:
        code = RESULT_FOR_ERROR.get(cls)
        if code is not None:
            return code
    return ResultCode.NOT_AUTHORIZED


class MalformedPacket(ValueError):
    """
    A packet could not be decoded as a PCP message.

    A gateway answers a rejected request with L{resultCode} (see
    L{twisted_natpmp.pcp._wire.errorResponse}), or drops it silently when
    that is L{None} (RFC 6887 s8.2: packets shorter than 2 bytes and
    packets with the R bit set).  A client drops a rejected response.

    @ivar reason: what was wrong, for a person.
    @ivar packet: the bytes that were rejected.
    @ivar resultCode: the result code a gateway answers a rejected request
        with, or L{None} when it must not answer.
    """

    def __init__(
        self,
        reason: str,
        packet: bytes,
        resultCode: ResultCode | None = ResultCode.MALFORMED_REQUEST,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.packet = packet
        self.resultCode = resultCode
