"""
How big each benchmark is: the full run and the C{--quick} one (which only
proves that the benchmarks still work: its numbers mean little).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """
    @ivar codecCount: encode+decode iterations per round, per message type.
    @ivar bulkPorts: ports mapped then deleted by each client (figure 2).
    @ivar natpmpcPorts: ports natpmpc maps then deletes (one process each).
    @ivar tableSizes: mappings in the gateway's table (figure 3).
    @ivar serverRequests: requests per round against the gateway.
    @ivar window: requests in flight for the windowed server figures.
    @ivar memoryMappings: mappings in the table whose memory is measured.
    @ivar serviceMappings: declared mappings restored after a restart.
    @ivar peerRequests: external-address requests per round (figure 5).
    @ivar reliabilityFlood: fuzzed packets in the flood (figure 6).
    @ivar reliabilitySeconds: the flood's time bound, in seconds.
    @ivar reliabilityPorts: ports the service maps at each loss level.
    @ivar reliabilityLosses: the loss levels run (of 0, 0.3 and 0.6).
    @ivar reliabilityTimeout: seconds allowed to map them at one level.
    @ivar pcpPorts: ports mapped then deleted on miniupnpd over each of PCP
        and NAT-PMP (figure 7; miniupnpd deletes in time linear in its
        table, so a few hundred at most).
    @ivar pcpBulkPorts: ports mapped then deleted on our own gateway over
        each of PCP and NAT-PMP (figure 7; issue 14 asks for 1,000).
    """

    codecCount: int
    bulkPorts: int
    natpmpcPorts: int
    tableSizes: tuple[int, ...]
    serverRequests: int
    window: int
    memoryMappings: int
    serviceMappings: int
    peerRequests: int
    reliabilityFlood: int
    reliabilitySeconds: float
    reliabilityPorts: int
    reliabilityLosses: tuple[int, ...]
    reliabilityTimeout: float
    pcpPorts: int
    pcpBulkPorts: int


FULL = Sizes(
    codecCount=100_000,
    bulkPorts=1_000,
    natpmpcPorts=50,
    tableSizes=(100, 10_000, 100_000),
    serverRequests=5_000,
    window=16,
    memoryMappings=100_000,
    serviceMappings=100,
    peerRequests=5_000,
    reliabilityFlood=300_000,
    reliabilitySeconds=10.0,
    reliabilityPorts=20,
    reliabilityLosses=(0, 30, 60),
    reliabilityTimeout=300.0,
    pcpPorts=200,
    pcpBulkPorts=1_000,
)

QUICK = Sizes(
    codecCount=1_000,
    bulkPorts=20,
    natpmpcPorts=2,
    tableSizes=(100, 1_000),
    serverRequests=200,
    window=16,
    memoryMappings=1_000,
    serviceMappings=10,
    peerRequests=200,
    reliabilityFlood=5_000,
    reliabilitySeconds=1.0,
    reliabilityPorts=2,
    reliabilityLosses=(0, 30),
    reliabilityTimeout=30.0,
    pcpPorts=10,
    pcpBulkPorts=10,
)
