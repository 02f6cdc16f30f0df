"""
The mapper service in a process of its own, for the restart benchmark:
C{python -m benchmarks._servicerun GATEWAY COUNT FIRSTPORT TIMEOUT}.

It is started inside a LAN host's network namespace, so every socket it
opens is there.  It runs L{PortMapperService} with COUNT UDP declarations
(internal ports from FIRSTPORT), the RFC 6886 s3.7 hold-off set to 0 and
no health check during the run, and prints, one per line:

  - C{BENCH mapped}: every declaration is mapped;
  - C{BENCH announced}: after a SIGUSR1 (the harness is restarting the
    gateway), the first packet from GATEWAY to 224.0.0.1:5350 with an
    epoch below 2 s, from a gateway just started (heard on a socket of its
    own, beside the service's);
  - C{BENCH restored SECONDS}: every declaration was granted again after
    the announcement, SECONDS (wall clock, the reactor's) after it;
  - C{BENCH timeout PHASE}: TIMEOUT seconds passed in PHASE; it exits 1.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from twisted_natpmp import Transport
from twisted_natpmp.interfaces import IMappingObserver
from twisted_natpmp.natpmp._wire import ANNOUNCE_GROUP, CLIENT_PORT
from twisted_natpmp.pcp._nonces import MemoryNonceStore
from twisted_natpmp.service import (
    MappingDeclaration,
    MappingState,
    PortMapperService,
)

#: An announcement with an epoch below this comes from a gateway that has
#: just started; the old one's repeated copies (RFC 6886 s3.2.1) do not.
FRESH = 2
#: No health check within a run: recovery must come from the announcement.
HEALTH_INTERVAL = 3600.0


def _epoch(packet: bytes) -> int:
    """
    The epoch of a NAT-PMP announcement (RFC 6886 s3.2.1) or a PCP ANNOUNCE
    (RFC 6887 s14.1); a large number for anything else.
    """
    version = packet[0] if packet else None
    if version == 0 and len(packet) >= 12:
        return int.from_bytes(packet[4:8], "big")
    if version == 2 and len(packet) >= 24:
        return int.from_bytes(packet[8:12], "big")
    return 2**32


def say(*words: object) -> None:
    print("BENCH", *words, flush=True)


@implementer(IMappingObserver)
class Watch(DatagramProtocol):
    """
    Hears the announcement and the service's changes; says when each phase
    ends.
    """

    def __init__(self, reactor: Any, service: PortMapperService, gateway: str):
        self.reactor = reactor
        self.service = service
        self.gateway = gateway
        self.phase = "mapping"
        self.announced = 0.0
        self.restored: set[int] = set()
        self.code = 1

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.transport.joinGroup(ANNOUNCE_GROUP)  # type: ignore[attr-defined]

    def restarting(self, signum: int, frame: object) -> None:
        """
        The harness is about to restart the gateway (SIGUSR1).
        """
        if self.phase == "mapped":
            self.phase = "waiting"

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if (
            self.phase == "waiting"
            and addr[0] == self.gateway
            and _epoch(datagram) < FRESH
        ):
            self.announced = self.reactor.seconds()
            self.phase = "restoring"
            say("announced")

    def mappingChanged(self, state: object) -> None:
        assert isinstance(state, MappingState)
        if self.phase == "mapping":
            if all(s.mapped for s in self.service.states()):
                self.phase = "mapped"
                say("mapped")
        elif self.phase == "restoring" and self.grantedSinceAnnounced(state):
            self.restored.add(state.declaration.internalPort)
            if len(self.restored) == len(self.service.states()):
                say("restored", f"{self.reactor.seconds() - self.announced:.6f}")
                self.phase = "done"
                self.code = 0
                self.reactor.stop()

    def grantedSinceAnnounced(self, state: MappingState) -> bool:
        """
        Was C{state}'s mapping granted after the announcement?  (A change
        to a mapping held from before, such as a new external address,
        does not count.)
        """
        if state.expires is None or state.lifetime is None:
            return False
        return state.expires - state.lifetime >= self.announced

    def timedOut(self) -> None:
        say("timeout", self.phase)
        self.reactor.stop()


def main(argv: list[str]) -> int:
    from twisted.internet import reactor

    gateway, count, firstPort, timeout = argv
    declarations = [
        MappingDeclaration(Transport.UDP, int(firstPort) + i, lifetime=3600)
        for i in range(int(count))
    ]
    service = PortMapperService(
        reactor,
        declarations,
        gateway=gateway,
        holdOff=lambda: 0.0,
        healthInterval=HEALTH_INTERVAL,
        # PCP nonces in memory, not in the user's state file.
        nonces=MemoryNonceStore(),
    )
    watch = Watch(reactor, service, gateway)
    service.addObserver(watch)
    signal.signal(signal.SIGUSR1, watch.restarting)
    reactor.listenMulticast(  # type: ignore[attr-defined]
        CLIENT_PORT, watch, interface=ANNOUNCE_GROUP, listenMultiple=True
    )
    service.startService()
    reactor.callLater(float(timeout), watch.timedOut)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return watch.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
