"""
L{PortMapperService}: an L{IService <twisted.application.service.IService>}
that keeps a declared set of ports mapped on the gateway for as long as it
runs, and the parts it is made of, each with one job:

  - L{keeper}: L{MappingKeeper}, the life of one declared mapping as an
    Automat state machine (its states and transitions in
    L{twisted_natpmp.service._keepermachine}): mapped when started, renewed
    at the protocol's renewal point (RFC 6886 s3.3), retried after a capped,
    jittered backoff, never forgotten, deleted when removed.  Reusable
    without the service.
  - L{watch}: L{GatewayWatch}, watching the gateway in use: the health
    check by probe (RFC 6886 s3.6), announcements judged by the mapper
    (s3.2.1, RFC 6887 s14.1), the re-mapping after the 0-5 s hold-off
    (s3.7, an Automat machine in L{twisted_natpmp.service._recovery}), the
    silence told to a person, a second NAT reported.
  - L{stop}: every mapping deleted at once, within a deadline, and what was
    left named (s3.1, s3.4).
  - L{forwarded}: L{ForwardedPortService}, a VPN gateway's forwarded port
    (internal port 0 with a lifetime, ProtonVPN's recipe) kept alive for UDP
    and TCP, written to a port file, handed to a command and to observers.
  - L{declarations}: L{MappingDeclaration} and L{MappingState}; L{policy}:
    the numbers (schedules, intervals, the renewal floor, the backoff).

The service talks to an L{IPortMapper <twisted_natpmp.interfaces.IPortMapper>}
(the NAT-PMP client by default), never to packets, and asks it no
protocol-specific question.  L{twisted_natpmp.testing.FakePortMapper} stands
in for one in tests.
"""

from __future__ import annotations

from ..discovery import isPrivateAddress
from ._service import PortMapperService
from .declarations import MappingDeclaration, MappingState, PublicAddressError
from .forwarded import ForwardedPort, ForwardedPortService
from .keeper import KeeperChange, KeeperContext, KeeperPhase, MappingKeeper, Why
from .policy import (
    ADDRESS_TIMEOUTS,
    CONFIRM_SPACING,
    COPY_SLACK,
    GATEWAY_CHECK_INTERVAL,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUTS,
    MAP_TIMEOUTS,
    MAX_HOLD_OFF,
    MIN_RENEWAL_INTERVAL,
    SILENCE_REMINDER,
    SILENCE_WARNING,
    STOP_DEADLINE,
    STOP_TIMEOUTS,
    defaultBackoff,
)

__all__ = [
    "ADDRESS_TIMEOUTS",
    "CONFIRM_SPACING",
    "COPY_SLACK",
    "GATEWAY_CHECK_INTERVAL",
    "HEALTH_INTERVAL",
    "HEALTH_TIMEOUTS",
    "MAP_TIMEOUTS",
    "MAX_HOLD_OFF",
    "MIN_RENEWAL_INTERVAL",
    "SILENCE_REMINDER",
    "SILENCE_WARNING",
    "STOP_DEADLINE",
    "STOP_TIMEOUTS",
    "ForwardedPort",
    "ForwardedPortService",
    "KeeperChange",
    "KeeperContext",
    "KeeperPhase",
    "MappingDeclaration",
    "MappingKeeper",
    "MappingState",
    "PortMapperService",
    "PublicAddressError",
    "Why",
    "defaultBackoff",
    "isPrivateAddress",
]
