# -*- test-case-name: tests.cli.test_forwarded -*-
"""
C{natpmp forwarded-port}: ask a VPN gateway for its forwarded public port
(ProtonVPN's recipe, C{natpmpc -a 1 0 udp 60 -g 10.2.0.1}, for UDP then
TCP), and say which port it is.

The request is NAT-PMP's map request with internal port 0 and a lifetime
(L{twisted_natpmp.natpmp._forwarded}): UDP first, suggesting any port, then
TCP suggesting the port UDP got, so that both end on the same public port;
if the gateway grants TCP another, both are shown.  Only in this command is
the reply matched whatever internal port it echoes.  It speaks NAT-PMP
(C{--protocol auto} means NAT-PMP here, C{pcp} is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from .._types import Transport
from ..errors import NATPMPError
from ..interfaces import IForwardedPortMapper, IPortMapper
from ._options import Options
from ._output import Outcome

__all__ = ["forwardedPort"]

log = Logger()


async def forwardedPort(
    client: IPortMapper, clock: Any, options: Options, schedule: tuple[float, ...]
) -> Outcome:
    """
    C{natpmp forwarded-port}: the VPN gateway's forwarded port for UDP and
    TCP, then its external address to show (a failure of that tolerated).

    @raise ValueError: the mapper cannot ask for a forwarded port (not
        NAT-PMP).
    """
    if not IForwardedPortMapper.providedBy(client):
        raise ValueError(
            "forwarded-port speaks NAT-PMP, as VPN gateways such as ProtonVPN's do"
        )
    mapper: Any = client
    udp = await mapper.forwardedPort(
        Transport.UDP, options.lifetime, 0, timeouts=schedule
    )
    tcp = await mapper.forwardedPort(
        Transport.TCP, options.lifetime, udp.externalPort, timeouts=schedule
    )
    address = await _address(mapper, schedule[:4])
    return describeForwarded(
        udp.externalPort,
        tcp.externalPort,
        udp.lifetime,
        options.lifetime,
        address,
        udp.epoch,
    )


async def _address(mapper: Any, schedule: Sequence[float]) -> Any:
    # Worth showing, not worth failing for: the port is granted.
    try:
        return await mapper.externalAddress(timeouts=schedule)
    except NATPMPError as e:
        log.info("external address unknown: {error}", error=str(e))
        return None


def describeForwarded(
    udpPort: int,
    tcpPort: int,
    lifetime: int,
    requested: int,
    address: object,
    epoch: int,
) -> Outcome:
    """
    What C{forwarded-port} found, for a person and as one JSON object.
    """
    if udpPort == tcpPort:
        ports = f"forwarded public port {udpPort} (udp and tcp)"
    else:
        ports = f"forwarded public port {udpPort} for udp, {tcpPort} for tcp"
    where = "" if address is None else f" on {address}"
    granted = (
        f"; the gateway granted {lifetime} s, not the {requested} s asked for"
        if lifetime != requested
        else ""
    )
    return Outcome(
        f"{ports}{where} for {lifetime} s{granted}",
        {
            "externalPort": udpPort,
            "udpPort": udpPort,
            "tcpPort": tcpPort,
            "lifetime": lifetime,
            "requestedLifetime": requested,
            "epoch": epoch,
            "externalAddress": None if address is None else str(address),
        },
    )
