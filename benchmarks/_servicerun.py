"""
The mapper service in a process of its own, for the restart benchmark:
C{python -m benchmarks._servicerun GATEWAY COUNT FIRSTPORT TIMEOUT}.

It is started inside a LAN host's network namespace, so every socket it
opens is there.  It runs L{PortMapperService} with COUNT UDP declarations
(internal ports from FIRSTPORT), the RFC 6886 s3.7 hold-off set to 0 and
no health check during the run, and prints, one per line:

  - C{BENCH mapped}: every declaration is mapped;
  - C{BENCH announced}: the first packet from GATEWAY to 224.0.0.1:5350
    after that (heard on a socket of its own, beside the service's);
  - C{BENCH restored SECONDS}: every declaration was granted again after
    the announcement, SECONDS (wall clock, the reactor's) after it;
  - C{BENCH timeout PHASE}: TIMEOUT seconds passed in PHASE; it exits 1.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from twisted_natpmp._wire import ANNOUNCE_GROUP, CLIENT_PORT, Protocol
from twisted_natpmp.interfaces import IMappingObserver
from twisted_natpmp.service import (
    MappingDeclaration,
    MappingState,
    PortMapperService,
)

#: No health check within a run: recovery must come from the announcement.
HEALTH_INTERVAL = 3600.0


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

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.phase == "waiting" and addr[0] == self.gateway:
            self.announced = self.reactor.seconds()
            self.phase = "restoring"
            say("announced")

    def mappingChanged(self, state: MappingState) -> None:
        if self.phase == "mapping":
            if all(s.mapped for s in self.service.states()):
                self.phase = "waiting"
                say("mapped")
        elif self.phase == "restoring" and state.mapped:
            self.restored.add(state.declaration.internalPort)
            if len(self.restored) == len(self.service.states()):
                say("restored", f"{self.reactor.seconds() - self.announced:.6f}")
                self.phase = "done"
                self.code = 0
                self.reactor.stop()

    def timedOut(self) -> None:
        say("timeout", self.phase)
        self.reactor.stop()


def main(argv: list[str]) -> int:
    from twisted.internet import reactor

    gateway, count, firstPort, timeout = argv
    declarations = [
        MappingDeclaration(Protocol.UDP, int(firstPort) + i, lifetime=3600)
        for i in range(int(count))
    ]
    service = PortMapperService(
        reactor,
        declarations,
        gateway=gateway,
        holdOff=lambda: 0.0,
        healthInterval=HEALTH_INTERVAL,
    )
    watch = Watch(reactor, service, gateway)
    service.addObserver(watch)
    reactor.listenMulticast(  # type: ignore[attr-defined]
        CLIENT_PORT, watch, interface=ANNOUNCE_GROUP, listenMultiple=True
    )
    service.startService()
    reactor.callLater(float(timeout), watch.timedOut)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return watch.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
