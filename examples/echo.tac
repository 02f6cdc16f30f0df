"""
The echo server of README.md ("Keeping ports mapped"): a TCP echo server
on port 8080 that keeps the port mapped on the gateway while it runs, and
logs the address the world can reach it at.

The gateway's address comes from the environment variable NATPMP_GATEWAY
(without it, the default gateway), and ECHO_PORT changes the port:

    NATPMP_GATEWAY=192.168.1.1 twistd -ny examples/echo.tac

Without a router, start examples/gateway.py first and use its address:

    python examples/gateway.py 127.0.0.1/8 &
    NATPMP_GATEWAY=127.0.0.1 twistd -ny examples/echo.tac

Stop it with Ctrl-C: the mapping is deleted.  The README shows this file
with the port written in and no gateway (the default) where portArgument()
and gatewayArgument() read them; tests/test_examples.py checks that the two
stay the same.
"""

import os
import sys

from twisted.application import internet, service
from twisted.internet import protocol, reactor
from twisted.logger import Logger
from zope.interface import implementer

from twisted_natpmp import MappingDeclaration, PortMapperService, Protocol
from twisted_natpmp.interfaces import IMappingObserver


def gatewayArgument():
    """
    The gateway's address from NATPMP_GATEWAY, or None (the default
    gateway); a bad one ends the program with one usage line naming it.
    """
    import ipaddress

    value = os.environ.get("NATPMP_GATEWAY")
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        sys.exit(
            "usage: [NATPMP_GATEWAY=ADDRESS] [ECHO_PORT=PORT] twistd -ny"
            f" examples/echo.tac (NATPMP_GATEWAY={value!r} is not an IP address)"
        )


def portArgument():
    """
    The port from ECHO_PORT, 8080 without it; a bad one ends the program
    with one usage line naming it.
    """
    value = os.environ.get("ECHO_PORT", "8080")
    if not (value.isdigit() and 1 <= int(value) <= 65535):
        sys.exit(
            "usage: [NATPMP_GATEWAY=ADDRESS] [ECHO_PORT=PORT] twistd -ny"
            f" examples/echo.tac (ECHO_PORT={value!r} is not a port, 1-65535)"
        )
    return int(value)


gateway = gatewayArgument()
port = portArgument()

log = Logger(namespace="echo")


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


@implementer(IMappingObserver)
class PublishAddress:
    def mappingChanged(self, state):
        if state.mapped:
            log.info(
                "reach me at {address}:{port}",
                address=state.externalAddress,
                port=state.externalPort,
            )
        elif state.error is not None:
            log.warn("not reachable from outside: {error}", error=state.error)


application = service.Application("echo")
internet.TCPServer(port, protocol.Factory.forProtocol(Echo)).setServiceParent(
    application
)

mapper = PortMapperService(
    reactor, [MappingDeclaration(Protocol.TCP, port)], gateway=gateway
)
mapper.addObserver(PublishAddress())
mapper.setServiceParent(application)
