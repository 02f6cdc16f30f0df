# -*- test-case-name: tests.cli.test_run -*-
"""
What each C{natpmp} command asks of the gateway, and what it found: one
function per command, each returning an L{Outcome}.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger

from .._types import IPAddress, Mapping, ProtocolName, Transport
from ..errors import NATPMPError
from ..interfaces import IPortMapper
from ..natpmp.client import RETRANSMIT_TIMEOUTS
from ._forwarded import forwardedPort
from ._options import Options
from ._output import Outcome
from ._protocols import (
    addMapping,
    cappedSchedule,
    deleteAll,
    externalAddress,
    lastEpoch,
    pcpSchedule,
)

log = Logger()

#: How long to wait for the external address that C{map} shows after the
#: mapping succeeded (the gateway just answered, so a short wait will do).
FOLLOW_UP_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)


def describeMapping(
    mapping: Mapping,
    options: Options,
    external: IPAddress | None,
) -> Outcome:
    """
    What C{map} found: the mapping granted, and how it differs from the
    one asked for (RFC 6886 s3.3: the gateway may grant another lifetime
    or port).
    """
    where = f"{external}:" if external is not None else "external port "
    asked = (
        options.internalPort if options.externalPort is None else options.externalPort
    )
    differences = []
    if mapping.lifetime != options.lifetime:
        differences.append(
            f"{mapping.lifetime} s, not the {options.lifetime} s asked for"
        )
    if asked != 0 and mapping.externalPort != asked:
        differences.append(
            f"external port {mapping.externalPort}, not the {asked} asked for"
        )
    granted = (
        "; the gateway granted " + " and ".join(differences) if differences else ""
    )
    return Outcome(
        f"mapped {mapping.transport.label} {where}{mapping.externalPort}"
        f" -> local port {mapping.internalPort} for {mapping.lifetime} s{granted}",
        {
            "protocol": mapping.transport.label,
            "internalPort": mapping.internalPort,
            "externalPort": mapping.externalPort,
            "lifetime": mapping.lifetime,
            "requestedExternalPort": asked,
            "requestedLifetime": options.lifetime,
            "epoch": mapping.epoch,
            "externalAddress": None if external is None else str(external),
        },
    )


def unmappedAll(transport: Transport) -> Outcome:
    """
    What C{unmap-all} did, and what some gateways do besides.
    """
    other = Transport.TCP if transport is Transport.UDP else Transport.UDP
    # RFC 6886 s3.4 deletes one protocol's mappings; miniupnpd deletes both.
    note = (
        f"some gateways, miniupnpd among them, delete this host's {other.label}"
        " mappings too"
    )
    return Outcome(
        f"unmapped every {transport.label} port of this host ({note})",
        {"protocol": transport.label, "note": note},
    )


async def external(
    client: IPortMapper, clock: Any, options: Options, schedule: tuple[float, ...]
) -> Outcome:
    """
    C{natpmp external}: the gateway's external address: NAT-PMP's
    external-address request (RFC 6886 s3.2); PCP, which has none, learns it
    from a short MAP of the client's own port, deleted again (RFC 6887 s11),
    and says so.
    """
    address, how = await externalAddress(client, schedule)
    text = f"external address {address}"
    if client.protocolName is ProtocolName.PCP:
        text += f" ({how})"
    return Outcome(
        text,
        {"externalAddress": str(address), "epoch": lastEpoch(client), "how": how},
    )


async def mapPort(
    client: IPortMapper, clock: Any, options: Options, schedule: tuple[float, ...]
) -> Outcome:
    """
    C{natpmp map}: map a port (RFC 6886 s3.3, RFC 6887 s11; with
    C{--exact}, PREFER_FAILURE, s13.2), then, if the grant did not say it
    (NAT-PMP's does not), ask for the external address to show it, within
    what is left of C{--timeout}.
    """
    started = clock.seconds()
    assert options.protocol is not None
    mapping = await addMapping(client, options, schedule)
    address = mapping.externalAddress
    left = math.inf if options.timeout is None else options.timeout
    left -= clock.seconds() - started
    if address is None and left > 0:
        # Worth showing, not worth failing for: the mapping exists.
        try:
            address, _ = await externalAddress(
                client, cappedSchedule(FOLLOW_UP_TIMEOUTS, left)
            )
        except (NATPMPError, TypeError) as e:
            log.info("external address unknown: {error}", error=str(e))
    return describeMapping(mapping, options, address)


async def unmap(
    client: IPortMapper, clock: Any, options: Options, schedule: tuple[float, ...]
) -> Outcome:
    """
    C{natpmp unmap}: delete one mapping (RFC 6886 s3.4).
    """
    assert options.protocol is not None
    await client.deleteMapping(
        options.protocol, options.internalPort, timeouts=schedule
    )
    return Outcome(
        f"unmapped {options.protocol.label} local port {options.internalPort}",
        {"protocol": options.protocol.label, "internalPort": options.internalPort},
    )


async def unmapAll(
    client: IPortMapper, clock: Any, options: Options, schedule: tuple[float, ...]
) -> Outcome:
    """
    C{natpmp unmap-all}: delete every mapping of a transport (RFC 6886
    s3.4); PCP has no such request, so over PCP the mappings whose nonces
    the nonce file keeps for the gateway are deleted one by one.
    """
    assert options.protocol is not None
    ports = await deleteAll(client, options.protocol, schedule)
    if ports is None:
        return unmappedAll(options.protocol)
    label = options.protocol.label
    listed = ", ".join(str(port) for port in ports) or "none"
    return Outcome(
        f"unmapped the {label} ports whose PCP nonces the nonce file kept: {listed}",
        {"protocol": label, "internalPorts": ports},
    )


#: Each command's function: (client, clock, options, schedule) to outcome.
Command = Callable[[IPortMapper, Any, Options, tuple[float, ...]], Awaitable[Outcome]]

COMMANDS: dict[str, Command] = {
    "external": external,
    "map": mapPort,
    "unmap": unmap,
    "unmap-all": unmapAll,
    "forwarded-port": forwardedPort,
}


async def perform(client: IPortMapper, clock: Any, options: Options) -> Outcome:
    """
    Do what C{options} asks of the gateway, within C{--timeout}: the
    protocol's retransmission schedule (RFC 6886 s3.1, RFC 6887 s8.1.1)
    cut there.
    """
    if client.protocolName is ProtocolName.PCP:
        schedule = pcpSchedule(options.timeout)
    else:
        schedule = cappedSchedule(RETRANSMIT_TIMEOUTS, options.timeout)
    return await COMMANDS[options.command](client, clock, options, schedule)
