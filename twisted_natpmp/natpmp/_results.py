# -*- test-case-name: tests.natpmp.test_wire -*-
"""
NAT-PMP's result codes (RFC 6886 s3.5) and what each means, and the errors
of a packet that cannot be decoded (two of which a gateway answers with a
result code); L{twisted_natpmp.natpmp._wire} re-exports them: import from
there.

Pure code: no I/O, no reactor, no logging.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "MalformedPacket",
    "ResultCode",
    "UnsupportedOpcode",
    "UnsupportedVersion",
    "describeResult",
]


class ResultCode(IntEnum):
    """
    The result codes of RFC 6886 s3.5.
    """

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


_MEANINGS = {
    ResultCode.SUCCESS: "success",
    ResultCode.UNSUPPORTED_VERSION: "unsupported version",
    ResultCode.NOT_AUTHORIZED: "not authorized/refused",
    ResultCode.NETWORK_FAILURE: "network failure",
    ResultCode.OUT_OF_RESOURCES: "out of resources",
    ResultCode.UNSUPPORTED_OPCODE: "unsupported opcode",
}


def describeResult(code: int) -> str:
    """
    Say what a result code means, including codes RFC 6886 does not define.

    @param code: a 16-bit result code as found on the wire.
    @return: e.g. C{"out of resources"} or C{"unknown result code 9"}.
    """
    try:
        return _MEANINGS[ResultCode(code)]
    except ValueError:
        return f"unknown result code {code}"


class MalformedPacket(ValueError):
    """
    A packet could not be decoded as a NAT-PMP message.

    @ivar reason: what was wrong, for a person.
    @ivar packet: the bytes that were rejected.
    """

    def __init__(self, reason: str, packet: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.packet = packet


class UnsupportedVersion(MalformedPacket):
    """
    A request carried a version other than 0; a gateway answers it with
    result 1 (RFC 6886 s3.5).

    @ivar version: the version byte received.
    """

    def __init__(self, version: int, packet: bytes) -> None:
        super().__init__(f"unsupported version {version}", packet)
        self.version = version


class UnsupportedOpcode(MalformedPacket):
    """
    A request carried an opcode below 128 that is not 0, 1 or 2; a gateway
    answers it with result 5 (RFC 6886 s3.5).

    @ivar opcode: the opcode received.
    """

    def __init__(self, opcode: int, packet: bytes) -> None:
        super().__init__(f"unsupported opcode {opcode}", packet)
        self.opcode = opcode
