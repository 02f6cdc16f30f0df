"""
twistd plugins of twisted-natpmp: C{twistd natpmp} keeps ports mapped,
C{twistd natpmp-gateway} serves NAT-PMP as a gateway.
"""

from twisted.application.service import ServiceMaker

natpmp = ServiceMaker(
    "NAT-PMP port mapper",
    "twisted_natpmp._tap",
    "Keep ports mapped on the NAT-PMP (RFC 6886) gateway.",
    "natpmp",
)
natpmpGateway = ServiceMaker(
    "NAT-PMP gateway",
    "twisted_natpmp._gatewaytap",
    "Serve NAT-PMP (RFC 6886) as a gateway.",
    "natpmp-gateway",
)
