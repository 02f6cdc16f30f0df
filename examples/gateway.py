"""
A NAT-PMP gateway for trying the other examples, or your own application,
without a router: it serves NAT-PMP on UDP port 5351 of the address given
as the argument, to clients in that address's network, keeps the mappings
in memory, and reports 203.0.113.1 (a documentation address) as its external
address, or the second argument if there is one:

    python examples/gateway.py 127.0.0.1/8
    python examples/gateway.py 10.77.0.1/24 192.0.3.1

It logs every mapping it grants, renews, deletes and expires; stop it with
Ctrl-C.  The same gateway as a twistd plugin (see README.md, "A gateway for
testing"):

    twistd -n natpmp-gateway --listen 127.0.0.1/8 --external-address 203.0.113.1
"""

import ipaddress
import sys

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from twisted_natpmp import GatewayService


def main(reactor, listen, externalAddress="203.0.113.1"):
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    gateway = GatewayService(reactor, [listen], externalAddress)
    gateway.startService()
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    return defer.Deferred()  # never fires: serve until Ctrl-C


USAGE = "usage: python examples/gateway.py ADDRESS/PREFIX [EXTERNAL-ADDRESS]"


def arguments(argv):
    """
    The address and network to serve, and the external address if given;
    missing or bad ones end the program with one usage line naming them.
    """
    if not 1 <= len(argv) <= 2:
        sys.exit(f"{USAGE} (given {len(argv)} arguments)")
    listen = argv[0]
    if "/" not in listen:
        sys.exit(f"{USAGE} ({listen!r} has no /PREFIX)")
    try:
        ipaddress.ip_interface(listen)
    except ValueError:
        sys.exit(f"{USAGE} ({listen!r} is not an address and prefix)")
    for external in argv[1:]:
        try:
            ipaddress.ip_address(external)
        except ValueError:
            sys.exit(f"{USAGE} ({external!r} is not an IP address)")
    return argv


task.react(main, arguments(sys.argv[1:]))
