# -*- test-case-name: tests.server.nftables.test_service -*-
"""
L{AddressWatcher}: follow the IPv4 address of the external interface, by
asking for it every few seconds, and say when it changes (to the gateway,
which announces it and restarts the epoch, RFC 6886 s3.2.1, RFC 6887 s8.5)
or goes (every request but a deletion then gets a network failure, RFC
6886 s3.5).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["DEFAULT_POLL_INTERVAL", "AddressWatcher", "interfaceAddress"]

log = Logger()

#: What the watcher has seen before its first reading.
_UNREAD = object()

#: How often the interface's address is read, in seconds.
DEFAULT_POLL_INTERVAL = 2.0


def interfaceAddress(name: str) -> IPv4Address | None:
    """
    The first IPv4 address of the interface C{name}, or L{None} if it has
    none (or does not exist).
    """
    import netifaces  # type: ignore[import-untyped]

    try:
        addresses = netifaces.ifaddresses(name).get(netifaces.AF_INET, [])
    except ValueError:
        return None
    for entry in addresses:
        try:
            address = IPv4Address(entry["addr"])
        except (KeyError, ValueError):
            continue
        if not address.is_unspecified:
            return address
    return None


class AddressWatcher:
    """
    Reads an interface's address every C{interval} seconds and calls
    C{changed(address)} (L{None}: it has none) when it is not the one seen
    before; the first reading is reported too.

    """

    def __init__(
        self,
        clock: IReactorTime,
        interface: str,
        changed: Callable[[IPv4Address | None], object],
        *,
        read: Callable[[str], IPv4Address | None] = interfaceAddress,
        interval: float = DEFAULT_POLL_INTERVAL,
        polled: Callable[[IPv4Address | None], object] | None = None,
    ) -> None:
        """
        @param read: reads the interface's address.
        @param polled: called with the address after every reading, changed
            or not.
        """
        self._interface = interface
        self._changed = changed
        self._read = read
        self._polled = polled
        self._interval = interval
        self._loop = LoopingCall(self._poll)
        self._loop.clock = clock
        self._seen: IPv4Address | None | object = _UNREAD

    @property
    def address(self) -> IPv4Address | None:
        """
        The address last seen (L{None}: none, or not read yet).
        """
        seen = self._seen
        return seen if isinstance(seen, IPv4Address) else None

    def start(self) -> None:
        """
        Read the address now, then every C{interval} seconds.
        """
        self._seen = _UNREAD
        self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        """
        Stop reading.
        """
        if self._loop.running:
            self._loop.stop()

    def _poll(self) -> None:
        try:
            address = self._read(self._interface)
        except Exception:
            log.failure(
                "cannot read the address of {interface}", interface=self._interface
            )
            return
        if self._polled is not None:
            self._polled(address)
        if address == self._seen:
            return
        self._seen = address
        log.info(
            "external interface {interface} has {address}",
            interface=self._interface,
            address=str(address or "no IPv4 address"),
        )
        self._changed(address)
