# -*- test-case-name: tests.test_parse -*-
"""
Values typed on a command line: the one place where text becomes a port, a
lifetime, a count, a number of seconds or a gateway's address, for C{natpmp}
(L{twisted_natpmp._cli}), C{twistd natpmp} (L{twisted_natpmp._tap}) and
C{twistd natpmp-gateway} (L{twisted_natpmp._gatewaytap}), and where the
one-line messages saying what is wrong with a value are written.

Each parser raises a L{ParseError}, which knows what was wrong but not how
the command names the value; the front end words it with the style its
users know: L{commandMessage} for C{natpmp} (C{port 70000 is out of range
1-65535}), L{optionMessage} for the twistd plugins (C{--lifetime '0' is not
a whole number from 1 to 4294967295}).

This module is imported by the twistd plugins' options, so it imports
nothing heavy (the gateway check's module is imported when first used).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from twisted.python.usage import UsageError

__all__ = [
    "MAPPING_PROTOCOLS",
    "MAX_PORT",
    "MAX_UINT32",
    "ParseError",
    "commandMessage",
    "optionMessage",
    "optionValue",
    "parseGateway",
    "parseGateway46",
    "parseMappingProtocol",
    "parseInteger",
    "parseLifetime",
    "parseNumber",
    "parsePort",
    "parseSeconds",
]

_T = TypeVar("_T")

#: The highest port number (ports are 16 bits, RFC 6886 s3.3).
MAX_PORT = 0xFFFF

#: The highest 32-bit unsigned number: the longest lifetime a request can
#: carry (RFC 6886 s3.3), and the limit of the gateway's counts.
MAX_UINT32 = 0xFFFFFFFF


class ParseError(ValueError):
    """
    A value that cannot be used.

    @ivar text: the value as typed.
    @ivar value: the number it reads as, or L{None} when it is no number
        (of the kind asked for) at all.
    @ivar low: the lowest value allowed (where C{high} is L{None}, the
        value it must be above).
    @ivar high: the highest value allowed, or L{None} for no limit.
    @ivar whole: whether a whole number was asked for.
    """

    def __init__(
        self,
        text: str,
        value: float | None,
        low: float,
        high: float | None,
        *,
        whole: bool,
    ) -> None:
        self.text = text
        self.value = value
        self.low = low
        self.high = high
        self.whole = whole
        super().__init__(_sentence(self))

    @property
    def isNumber(self) -> bool:
        """
        Does the text read as a number of the kind asked for (so that only
        its range is wrong)?
        """
        return self.value is not None


def parseInteger(text: str, low: int, high: int) -> int:
    """
    A whole number from C{low} to C{high}, in decimal (C{int} syntax:
    surrounding blanks, a sign and underscores between digits allowed).

    @raise ParseError: C{text} is not such a number.
    """
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise ParseError(text, None, low, high, whole=True) from None
    if not low <= value <= high:
        raise ParseError(text, value, low, high, whole=True)
    return value


def parseNumber(text: str, low: float, high: float) -> float:
    """
    A number (C{float} syntax) from C{low} to C{high}; never NaN.

    @raise ParseError: C{text} is not such a number.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParseError(text, None, low, high, whole=False) from None
    if not low <= value <= high:
        raise ParseError(text, value, low, high, whole=False)
    return value


def parsePort(text: str, *, zero: bool = False) -> int:
    """
    A port, 1-65535; with C{zero}, 0 too (a suggested external port of 0
    lets the gateway choose, RFC 6886 s3.3).

    @raise ParseError: C{text} is not such a port.
    """
    return parseInteger(text, 0 if zero else 1, MAX_PORT)


def parseLifetime(text: str) -> int:
    """
    A lifetime to request, 1 to 2^32-1 seconds (RFC 6886 s3.3).  0 is
    refused: it would delete the mapping (RFC 6886 s3.4).

    @raise ParseError: C{text} is not such a lifetime; its C{value} is 0
        when it asked for deletion.
    """
    return parseInteger(text, 1, MAX_UINT32)


def parseSeconds(text: str) -> float:
    """
    A positive, finite number of seconds.

    @raise ParseError: C{text} is not one; its C{low} is 0, not allowed
        itself, and its C{high} L{None}.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParseError(text, None, 0, None, whole=False) from None
    if not (math.isfinite(value) and value > 0):
        raise ParseError(text, value, 0, None, whole=False)
    return value


def parseGateway(name: str, text: str) -> IPv4Address:
    """
    A gateway's IPv4 address: requests go to one host, the gateway (RFC
    6886 s3), never to the unspecified, a multicast or the broadcast
    address.

    @param name: how the command names the value, e.g. C{"gateway"} or
        C{"--gateway"}, to start the message with.
    @raise ValueError: the one-line message, naming the value.
    """
    return _gateway4(name, text, "an IPv4 address")


def _gateway4(name: str, text: str, kind: str) -> IPv4Address:
    """
    L{parseGateway}'s work, C{kind} saying what C{text} should have been.
    """
    try:
        address = IPv4Address(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not {kind}") from None
    from .discovery import unusableGateway

    why = unusableGateway(address)
    if why is not None:
        raise ValueError(f"{name} {text!r} cannot be a gateway's address ({why})")
    return address


def parseGateway46(name: str, text: str) -> IPv4Address | IPv6Address:
    """
    A gateway's IPv4 address (as L{parseGateway} takes it) or IPv6 address,
    for PCP (RFC 6887 s8.1), a link-local one with its scope
    (C{fe80::1%eth0}); never the unspecified or a multicast address.

    @param name: how the command names the value.
    @raise ValueError: the one-line message, naming the value.
    """
    if ":" not in text:
        return _gateway4(name, text, "an IPv4 or IPv6 address")
    try:
        address = IPv6Address(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an IPv4 or IPv6 address") from None
    if address.is_link_local and address.scope_id is None:
        raise ValueError(
            f"{name} {text!r} is link-local: name its interface too, as in {text}%eth0"
        )
    if address.is_unspecified or address.is_multicast:
        kind = "unspecified" if address.is_unspecified else "multicast"
        raise ValueError(
            f"{name} {text!r} cannot be a gateway's address (the {kind} address)"
        )
    return address


#: The names C{--protocol} takes: L{twisted_natpmp.negotiate.PROTOCOLS}.
MAPPING_PROTOCOLS = ("auto", "pcp", "natpmp")


def parseMappingProtocol(name: str, text: str) -> str:
    """
    A port-mapping protocol's name: C{auto} (PCP, falling back to NAT-PMP),
    C{pcp} or C{natpmp}, in any case.

    @param name: how the command names the value, e.g. C{"--protocol"}.
    @raise ValueError: the one-line message, naming the value.
    """
    if text.lower() not in MAPPING_PROTOCOLS:
        raise ValueError(f"{name} {text!r} is not auto, pcp or natpmp")
    return text.lower()


def _number(value: float) -> str:
    """
    A number as a message shows it.
    """
    return str(value) if isinstance(value, int) else f"{value:g}"


def _sentence(error: ParseError) -> str:
    """
    What is wrong with a value, e.g. C{'0' is not a whole number from 1 to
    65535}.
    """
    kind = "a whole number" if error.whole else "a number"
    if error.high is None:
        bounds = f"above {_number(error.low)}"
    else:
        bounds = f"from {_number(error.low)} to {_number(error.high)}"
    return f"{error.text!r} is not {kind} {bounds}"


def commandMessage(what: str, error: ParseError) -> str:
    """
    What C{natpmp} says of a bad value, e.g. C{port 'abc' is not a number}
    or C{port 70000 is out of range 1-65535}.

    @param what: the value's name, e.g. C{"external port"}.
    """
    if error.high is None:
        if not error.isNumber:
            return f"{what} {error.text!r} is not a number of seconds"
        return f"{what} {error.text!r} is not a positive number of seconds"
    if not error.isNumber:
        return f"{what} {error.text!r} is not a number"
    assert error.value is not None
    return (
        f"{what} {_number(error.value)} is out of range"
        f" {_number(error.low)}-{_number(error.high)}"
    )


def optionMessage(option: str, error: ParseError, separator: str = "") -> str:
    """
    What a twistd plugin says of a bad option value, e.g. C{--lifetime '0'
    is not a whole number from 1 to 4294967295}.

    @param option: the option's long name, without the dashes.
    @param separator: what follows the option's name: C{""} as C{twistd
        natpmp} words it, C{":"} as C{twistd natpmp-gateway} does.
    """
    return f"--{option}{separator} {_sentence(error)}"


def optionValue(
    option: str, text: str, parse: Callable[[str], _T], separator: str = ""
) -> _T:
    """
    A twistd plugin's option value, parsed by C{parse}.

    @param option: the option's long name, without the dashes.
    @param separator: as for L{optionMessage}.
    @raise UsageError: the value cannot be used; the message is
        L{optionMessage}'s.
    """
    try:
        return parse(text)
    except ParseError as e:
        raise UsageError(optionMessage(option, e, separator)) from None
