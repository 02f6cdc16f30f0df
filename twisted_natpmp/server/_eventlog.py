# -*- test-case-name: tests.server.test_responder -*-
"""
How a gateway logs each change to its table: one line per event, with
JSON-safe fields.
"""

from __future__ import annotations

from twisted.logger import Logger

from ._entries import EventKind, TableEvent

__all__ = ["logEvent"]

log = Logger()


def logEvent(event: TableEvent) -> None:
    """
    Log one change to the table on a line of its own, with JSON-safe
    fields.
    """
    mapping = event.mapping
    if event.kind is EventKind.REMOVE_FAILED:
        log.error(
            "backend failed to remove {protocol} mapping of {client}:{internalPort}"
            " from external port {externalPort}: {error}",
            protocol=mapping.transport.label,
            client=str(mapping.client),
            internalPort=mapping.internalPort,
            externalPort=mapping.externalPort,
            error=repr(event.error),
        )
        return
    if event.kind is EventKind.CLEARED:
        log.debug(
            "mapping cleared: {protocol} external port {externalPort}"
            " -> {client}:{internalPort}",
            event=event.kind.value,
            protocol=mapping.transport.label,
            externalPort=mapping.externalPort,
            client=str(mapping.client),
            internalPort=mapping.internalPort,
        )
        return
    log.info(
        "mapping {event}: {protocol} external port {externalPort}"
        " -> {client}:{internalPort}, lifetime {lifetime} s",
        event=event.kind.value,
        protocol=mapping.transport.label,
        externalPort=mapping.externalPort,
        client=str(mapping.client),
        internalPort=mapping.internalPort,
        lifetime=mapping.lifetime,
    )
