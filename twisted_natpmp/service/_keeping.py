# -*- test-case-name: tests.service.test_keeper,tests.service.test_keeperretry -*-
"""
What a L{MappingKeeper <twisted_natpmp.service.keeper.MappingKeeper>} is
told and tells: its phases, why it asks, what it reports, the context the
keepers of one gateway share, and its log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import IPAddress, Mapping
from ..errors import NoResponseError, NotSupportedError
from .declarations import MappingDeclaration
from .policy import MIN_RENEWAL_INTERVAL

__all__ = [
    "KeeperChange",
    "KeeperContext",
    "KeeperPhase",
    "Why",
    "logGrant",
    "renewalFloor",
    "unanswered",
]

log = Logger(namespace="twisted_natpmp.service.keeper")


class KeeperPhase(Enum):
    """
    The keeper's states, as L{MappingKeeper.phase} names them.
    """

    IDLE = "idle"
    REQUESTING = "requesting"
    MAPPED = "mapped"
    RENEWING = "renewing"
    BACKING_OFF = "backingOff"
    DELETING = "deleting"
    STOPPED = "stopped"


class Why(Enum):
    """
    Why a mapping request is made, for the log line of its outcome.
    """

    MAP = "map"
    RENEW = "renew"
    RETRY = "retry"
    REMAP = "remap"


class KeeperChange(Enum):
    """
    What changed, as the keeper reports it.
    """

    #: A request was granted (a first mapping, a renewal or a move).
    GRANTED = "granted"
    #: A request failed; the keeper retries after its backoff.
    FAILED = "failed"
    #: The grant ran out before it was renewed.
    EXPIRED = "expired"


@dataclass
class KeeperContext:
    """
    What the keepers of one gateway share, for their log lines.

    @ivar gateway: the gateway, for a person.
    @ivar externalAddress: the gateway's external address, if known
        otherwise than from a mapping.
    @ivar gatewaySilent: whether a person was told already that the gateway
        does not answer (failures for want of an answer are then logged at
        info).
    @ivar tinyLifetimeWarned: whether a person was told that the gateway
        grants lifetimes shorter than the renewal floor (the grants' lines
        are then at debug).
    """

    gateway: str = "?"
    externalAddress: IPAddress | None = None
    gatewaySilent: Callable[[], bool] = lambda: False
    tinyLifetimeWarned: bool = False


def renewalFloor(declaration: MappingDeclaration) -> float:
    """
    The shortest wait before renewing C{declaration}'s mapping, however
    short the gateway's grant: L{MIN_RENEWAL_INTERVAL}, or half the
    lifetime asked for if that is shorter.
    """
    return min(MIN_RENEWAL_INTERVAL, declaration.lifetime / 2)


def unanswered(failure: Failure) -> bool:
    """
    Did a request fail for want of an answer from the gateway (rather than
    with the gateway's answer)?
    """
    return bool(failure.check(NoResponseError, NotSupportedError, OSError))


def logGrant(
    declaration: MappingDeclaration,
    context: KeeperContext,
    why: Why,
    suggested: int | None,
    mapping: Mapping,
    old: int | None,
    lifetime: int,
) -> None:
    """
    Log a grant for a person: mapped, renewed, re-mapped or moved, with
    what differs from what was asked, and the warnings about a gateway
    granting more than asked (RFC 6886 s3.3) or tiny lifetimes (once).

    @param old: the external port held before, if any.
    @param lifetime: the effective lifetime.
    """
    floor = renewalFloor(declaration)
    address = mapping.externalAddress or context.externalAddress
    fields: dict[str, Any] = dict(
        what=str(declaration),
        address="?" if address is None else str(address),
        port=mapping.externalPort,
        lifetime=mapping.lifetime,
        gateway=context.gateway,
        # Which protocol made it, for JSON logs (the "using ... gateway"
        # line and a fallback's line say it for a person).
        protocol=mapping.protocolName.display,
    )
    asked = declaration.internalPort if suggested is None else suggested
    notes = []
    if asked and mapping.externalPort != asked:
        notes.append(f"asked for port {asked}")
    if mapping.lifetime != declaration.lifetime:
        notes.append(f"asked for {declaration.lifetime} s")
    fields["notes"] = f" ({'; '.join(notes)})" if notes else ""
    if why is Why.REMAP:
        verb = "re-mapped"
    else:
        verb = "mapped" if old is None else "renewed"
    if old is not None and old != mapping.externalPort:
        log.warn(
            "{what} moved to {address}:{port} (was port {old}) for {lifetime} s{notes}",
            old=old,
            **fields,
        )
    else:
        # Once a person was told that the gateway grants tiny lifetimes,
        # each grant's line (a "mapped" one: the last expired before the
        # renewal) is no news.
        tinyAgain = lifetime / 2 < floor and context.tinyLifetimeWarned
        (log.debug if tinyAgain else log.info)(
            verb + " {what} -> {address}:{port} for {lifetime} s{notes}", **fields
        )
    if mapping.lifetime > declaration.lifetime:
        log.warn(
            "gateway {gateway} granted {what} {lifetime} s, more than the"
            " {asked} s asked for (RFC 6886 s3.3: it should not); renewing"
            " as if granted {asked} s",
            asked=declaration.lifetime,
            **fields,
        )
    if lifetime / 2 < floor and not context.tinyLifetimeWarned:
        context.tinyLifetimeWarned = True
        log.warn(
            "gateway {gateway} grants tiny lifetimes ({lifetime} s for"
            " {what}); renewing no more often than every {floor:.0f} s, so"
            " mappings may lapse between renewals",
            floor=floor,
            **fields,
        )
