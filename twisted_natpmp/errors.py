"""
The exceptions twisted-natpmp raises, named by meaning.

One base, L{PortMappingError} (also known by its first name,
L{NATPMPError}).  A gateway's refusal is a L{GatewayError} subclass named
for what it means, whichever protocol said it; each carries the protocol's
own result code (NAT-PMP's 2 and PCP's 2 are both "not authorized", but
NAT-PMP's 3 is a network failure where PCP's 3 is a malformed request), so
each codec keeps its own table from codes to these classes.  A gateway's
backend raises them without a code, and the responder gives each its
protocol's code.

This module imports no codec.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "AddressMismatchError",
    "CannotProvideExternalError",
    "ExcessiveRemotePeersError",
    "GatewayError",
    "InvalidResponseError",
    "MalformedOptionError",
    "MalformedRequestError",
    "NATPMPError",
    "NetworkFailureError",
    "NoGatewayError",
    "NoResponseError",
    "NotAuthorizedError",
    "NotSupportedError",
    "OutOfResourcesError",
    "PortMappingError",
    "UnknownResultError",
    "UnsupportedOpcodeError",
    "UnsupportedOptionError",
    "UnsupportedProtocolError",
    "UnsupportedVersionError",
    "UserExceededQuotaError",
]


class PortMappingError(Exception):
    """
    The base of every error twisted-natpmp raises on purpose.
    """


#: The first name of L{PortMappingError}, kept for existing callers.
NATPMPError = PortMappingError


class GatewayError(PortMappingError):
    """
    The gateway answered a request with an error (or, on the gateway's
    side, a backend refused one).

    @ivar resultCode: the code as received, in the protocol's own numbering
        (L{None} when raised by a backend, before a protocol numbers it).
    @ivar meaning: what the error means, for a person.
    @ivar protocol: C{"natpmp"} or C{"pcp"}, the protocol that said it,
        where known.
    @ivar lifetime: how long the gateway said the error holds, in seconds
        (PCP's error lifetime, RFC 6887 s8.3), where it said so.
    @cvar defaultMeaning: the meaning when none is given.
    @cvar shortLived: whether the RFC counts the error as short-lived
        (RFC 6887 s8.3: worth retrying soon) rather than long-lived.
    """

    defaultMeaning = "refused"
    shortLived = False

    def __init__(
        self,
        resultCode: int | None = None,
        meaning: str | None = None,
        *,
        protocol: str | None = None,
        lifetime: int | None = None,
    ) -> None:
        self.resultCode = resultCode
        self.meaning = meaning or self.defaultMeaning
        self.protocol = protocol
        self.lifetime = lifetime
        if resultCode is None:
            text = self.meaning
        else:
            text = f"gateway answered result code {resultCode} ({self.meaning})"
        super().__init__(text)


class UnsupportedVersionError(GatewayError):
    """
    The gateway does not speak this version of the protocol.
    """

    defaultMeaning = "unsupported version"


class NotAuthorizedError(GatewayError):
    """
    The gateway refused: mapping is disabled, the port belongs to someone
    else, or (PCP) the request's nonce is not the mapping's.
    """

    defaultMeaning = "not authorized/refused"


class NetworkFailureError(GatewayError):
    """
    The gateway cannot map now, for instance because it has no external
    address yet.
    """

    defaultMeaning = "network failure"
    shortLived = True


class OutOfResourcesError(GatewayError):
    """
    The gateway has no room for another mapping.
    """

    defaultMeaning = "out of resources"
    shortLived = True


class UnsupportedOpcodeError(GatewayError):
    """
    The gateway does not know the request's opcode.
    """

    defaultMeaning = "unsupported opcode"


class MalformedRequestError(GatewayError):
    """
    The gateway could not parse the request (PCP).
    """

    defaultMeaning = "malformed request"


class UnsupportedOptionError(GatewayError):
    """
    The gateway does not support a mandatory option the request carried
    (PCP).
    """

    defaultMeaning = "unsupported option"


class MalformedOptionError(GatewayError):
    """
    An option in the request was malformed (PCP).
    """

    defaultMeaning = "malformed option"


class UnsupportedProtocolError(GatewayError):
    """
    The gateway cannot map the requested transport (PCP).
    """

    defaultMeaning = "unsupported protocol"


class AddressMismatchError(GatewayError):
    """
    The client address in the request is not the address the gateway saw it
    come from (PCP): a NAT between the host and the gateway, or the wrong
    source address chosen.
    """

    defaultMeaning = "address mismatch"


class CannotProvideExternalError(GatewayError):
    """
    The gateway cannot give the external address or port asked for, and the
    request insisted on it (PCP, PREFER_FAILURE).
    """

    defaultMeaning = "cannot provide external address or port"
    shortLived = True


class ExcessiveRemotePeersError(GatewayError):
    """
    Too many remote peers in a FILTER option (PCP).
    """

    defaultMeaning = "excessive remote peers"


class UserExceededQuotaError(GatewayError):
    """
    This host has as many mappings as the gateway allows it (PCP).
    """

    defaultMeaning = "user exceeded quota"
    shortLived = True


class UnknownResultError(GatewayError):
    """
    A result code the protocol does not define; fatal for that request
    (RFC 6886 s3.5).
    """

    defaultMeaning = "unknown result code"


class NoResponseError(PortMappingError):
    """
    The gateway never answered: every retransmission went unanswered, or
    the caller's own time limit ran out.

    @ivar gateway: the gateway asked.
    @ivar attempts: how many times the request was sent.
    @ivar seconds: how long it waited.
    """

    def __init__(
        self, gateway: IPv4Address | IPv6Address, attempts: int, seconds: float
    ) -> None:
        self.gateway = gateway
        self.attempts = attempts
        self.seconds = seconds
        super().__init__(
            f"no response from gateway {gateway} after {attempts} attempt(s)"
            f" in {round(seconds, 2):g} s"
        )


class NoGatewayError(PortMappingError):
    """
    No default gateway could be found; name one explicitly.
    """


class InvalidResponseError(PortMappingError):
    """
    The gateway answered with a response that claims success but cannot be
    used (for instance a mapping with no external port or no lifetime).
    """


class NotSupportedError(PortMappingError):
    """
    The gateway refused the packets outright (ICMP port unreachable): it
    runs no port-mapping server (RFC 6886 s3.1).

    @ivar gateway: the gateway asked.
    @ivar protocol: the protocol's name for a person, as in the message.
    """

    def __init__(
        self, gateway: IPv4Address | IPv6Address, protocol: str = "NAT-PMP"
    ) -> None:
        self.gateway = gateway
        self.protocol = protocol
        super().__init__(
            f"gateway {gateway} does not speak {protocol} (ICMP port unreachable)"
        )
