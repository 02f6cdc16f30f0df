# -*- test-case-name: tests.endpoint.test_parser -*-
"""
The C{natpmp:} description, as Twisted's tokeniser hands it to the plugin:
which options are the endpoint's own, and the description of the endpoint it
wraps, re-joined.  Pure string handling: nothing here listens or maps.

Twisted splits C{natpmp:gateway=10.77.0.1:tcp:8080:interface=0.0.0.0} into
positional arguments C{('tcp', '8080')} and keyword arguments C{{'gateway':
'10.77.0.1', 'interface': '0.0.0.0'}}, every value unescaped; where in the
string a keyword stood is lost.  So the rule is by name, not by place:

  - C{gateway}, C{protocol}, C{lifetime}, C{externalPort},
    C{waitForMapping} and C{nonceFile} are this endpoint's options wherever
    they stand; each may also be spelt with the C{natpmp} prefix
    (C{natpmpGateway}, C{natpmpLifetime} ...), and any other keyword that
    starts with C{natpmp} is an error;
  - an option given with the prefix leaves its short name to the wrapped
    endpoint: in C{natpmp:natpmpLifetime=600:myendpoint:8080:lifetime=5},
    C{lifetime=5} is the wrapped endpoint's;
  - every other argument belongs to the wrapped endpoint, re-joined in
    order (positional arguments first, then its keywords) with C{\\},
    C{:} and C{=} escaped again (L{quoteArgument});
  - a wrapped endpoint that has an option of one of those six names is
    given I{quoted}: its whole description as one argument, its C{:} and
    C{=} escaped (C{natpmp:lifetime=600:myendpoint\\:8080\\:lifetime\\=5}).
    It is recognised as one positional argument holding a C{:}, and passed
    on exactly as it arrives; every keyword outside it is then this
    endpoint's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from .._parse import (
    MAX_PORT,
    ParseError,
    parseGateway46,
    parseInteger,
    parseLifetime,
    parseMappingProtocol,
    parseNumber,
)
from ..service.declarations import RECOMMENDED_LIFETIME

__all__ = [
    "MAX_WAIT_FOR_MAPPING",
    "OPTION_NAMES",
    "PREFIX",
    "EndpointOptions",
    "checkGatewayProtocol",
    "quoteArgument",
    "splitDescription",
]

#: The endpoint's prefix, and the prefix of the long spelling of its options.
PREFIX = "natpmp"

#: The longest C{waitForMapping}, in seconds: C{listen()} never waits
#: longer for the first grant.
MAX_WAIT_FOR_MAPPING = 600.0

#: The endpoint's own options, by their short names.
OPTION_NAMES = (
    "gateway",
    "protocol",
    "lifetime",
    "externalPort",
    "waitForMapping",
    "nonceFile",
)


def longName(name: str) -> str:
    """
    The prefixed spelling of an option: C{gateway} is C{natpmpGateway}.
    """
    return PREFIX + name[0].upper() + name[1:]


_BY_NAME = {
    spelling: name for name in OPTION_NAMES for spelling in (name, longName(name))
}


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """
    The C{natpmp:} endpoint's own options, parsed.

    @ivar gateway: the gateway (IPv6 for PCP only), or L{None} for the
        default gateway.
    @ivar protocol: C{"auto"}, C{"pcp"} or C{"natpmp"}.
    @ivar lifetime: the lifetime to request, in seconds.
    @ivar externalPort: the external port to suggest (0: let the gateway
        choose), or L{None} for the port bound.
    @ivar waitForMapping: how long C{listen()} waits for the first grant
        (0: not at all).
    @ivar nonceFile: where PCP nonces are kept, or L{None} for the
        per-user file.
    """

    gateway: IPv4Address | IPv6Address | None = None
    protocol: str = "auto"
    lifetime: int = RECOMMENDED_LIFETIME
    externalPort: int | None = None
    waitForMapping: float = 0.0
    nonceFile: str | None = None


def quoteArgument(text: str) -> str:
    """
    Escape C{text} for an endpoint description: C{\\}, C{:} and C{=}.
    (Twisted's C{quoteStringArgument} leaves C{=} alone, so a positional
    argument holding one would come back as a keyword.)
    """
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def endpointType(description: str) -> str:
    """
    The type of an endpoint description (its first argument, unescaped).
    """
    text, escaped = [], False
    for character in description:
        if escaped:
            text.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == ":":
            break
        else:
            text.append(character)
    return "".join(text)


def _wait(text: str) -> float:
    return parseNumber(text, 0.0, MAX_WAIT_FOR_MAPPING)


def _nonceFile(text: str) -> str:
    if not text:
        raise ValueError("is empty: name a file")
    return text


_PARSERS: dict[str, Callable[[str], object]] = {
    "lifetime": parseLifetime,
    "externalPort": lambda text: parseInteger(text, 0, MAX_PORT),
    "waitForMapping": _wait,
    "nonceFile": _nonceFile,
}


def _option(spelling: str, name: str, text: str) -> object:
    """
    One option's value.

    @raise ValueError: naming the option and the value.
    """
    label = f"{PREFIX}: option {spelling}"
    if name == "gateway":
        return parseGateway46(label, text)
    if name == "protocol":
        return parseMappingProtocol(label, text)
    try:
        return _PARSERS[name](text)
    except ParseError as e:
        raise ValueError(f"{label} {e}") from None
    except ValueError as e:
        raise ValueError(f"{label} {text!r} {e}") from None


def checkGatewayProtocol(
    label: str, gateway: IPv4Address | IPv6Address | None, protocol: str
) -> None:
    """
    Refuse an IPv6 gateway for NAT-PMP, which speaks only IPv4.

    @param label: how the message names the gateway given, e.g.
        C{"gateway '2001:db8::1'"}.
    @raise ValueError: the one-line message.
    """
    if protocol == "natpmp" and isinstance(gateway, IPv6Address):
        raise ValueError(
            f"{label} is IPv6, which NAT-PMP does not speak: use protocol=pcp or auto"
        )


def splitDescription(
    args: tuple[str, ...] | list[str], kwargs: dict[str, str]
) -> tuple[EndpointOptions, str]:
    """
    Split what Twisted's tokeniser gives the plugin into the endpoint's own
    options and the description of the endpoint it wraps.

    @param args: the positional arguments after C{natpmp}.
    @param kwargs: every keyword argument.
    @return: the options, and the wrapped endpoint's description.
    @raise ValueError: naming the option and value that cannot be used, or
        saying what is wrong with the wrapped description.
    """
    values: dict[str, object] = {}
    spelt: dict[str, str] = {}
    rest: dict[str, str] = {}
    # An option given with the prefix leaves the short name to the wrapped
    # endpoint.
    prefixed = {
        _BY_NAME[key] for key in kwargs if key in _BY_NAME and key != _BY_NAME[key]
    }
    for key, text in kwargs.items():
        name = _BY_NAME.get(key)
        if name == key and name in prefixed:
            name = None
        if name is None:
            if key.startswith(PREFIX):
                known = ", ".join(longName(n) for n in OPTION_NAMES)
                raise ValueError(
                    f"{PREFIX}: unknown option {key}={text!r} (the {PREFIX}"
                    f" options are {known}, or without the prefix)"
                )
            rest[key] = text
            continue
        spelt[name] = key
        try:
            values[name] = _option(key, name, text)
        except ValueError as e:
            if key != name:
                raise
            # Perhaps the wrapped endpoint's own option of that name.
            raise ValueError(
                f"{e} (if {key}= is the wrapped endpoint's, give natpmp's as"
                f" {longName(name)}= or quote the wrapped endpoint)"
            ) from None
    if not args:
        raise ValueError(
            f"{PREFIX}: no endpoint to wrap; give one, as in {PREFIX}:tcp:8080"
        )
    if len(args) == 1 and ":" in args[0]:
        # The quoted form: the wrapped description, whole.
        inner = args[0]
        if rest:
            key, text = next(iter(rest.items()))
            raise ValueError(
                f"{PREFIX}: option {key}={text!r} is not a {PREFIX} option; with"
                f" the wrapped endpoint quoted ({inner!r}), its options go inside"
                " the quotes"
            )
    else:
        parts = [quoteArgument(arg) for arg in args]
        parts += [f"{quoteArgument(k)}={quoteArgument(v)}" for k, v in rest.items()]
        inner = ":".join(parts)
    kind = endpointType(inner).lower()
    if kind == "unix":
        raise ValueError(
            f"{PREFIX}: {inner!r} is a UNIX socket, which has no port to map;"
            " wrap a TCP endpoint (tcp:, tcp6:, ssl: ...)"
        )
    if kind == PREFIX:
        raise ValueError(f"{PREFIX}: {inner!r} would map the same port twice")
    if "gateway" in values:
        key = spelt["gateway"]
        checkGatewayProtocol(
            f"{PREFIX}: option {key}={kwargs[key]!r}",
            values["gateway"],  # type: ignore[arg-type]
            values.get("protocol", "auto"),  # type: ignore[arg-type]
        )
    return EndpointOptions(**values), inner  # type: ignore[arg-type]
