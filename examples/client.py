"""
The client of README.md ("The client"): ask the gateway for its external
address, map TCP port 8080 for an hour, and delete the mapping again.

Give the gateway's address as the argument:

    python examples/client.py 192.168.1.1

Without a router, start examples/gateway.py first and use its address:

    python examples/gateway.py 127.0.0.1/8 &
    python examples/client.py 127.0.0.1

The README shows this file with the address written in ("192.168.1.1")
where gatewayArgument() reads it; tests/test_examples.py checks that the two
stay the same.
"""

import sys

from twisted.internet import defer, task

from twisted_natpmp import Protocol, listenClient


def gatewayArgument():
    """
    The gateway's address, from the command line; a missing or bad one
    ends the program with one usage line naming it.
    """
    import ipaddress

    usage = "usage: python examples/client.py GATEWAY-ADDRESS"
    if len(sys.argv) != 2:
        sys.exit(f"{usage} (given {len(sys.argv) - 1} arguments)")
    try:
        return str(ipaddress.ip_address(sys.argv[1]))
    except ValueError:
        sys.exit(f"{usage} ({sys.argv[1]!r} is not an IP address)")


gateway = gatewayArgument()


async def main(reactor):
    client = listenClient(reactor, gateway)
    print("external address:", await client.externalAddress())
    mapping = await client.addMapping(Protocol.TCP, 8080, lifetime=3600)
    print(
        f"mapped {mapping.externalAddress}:{mapping.externalPort}"
        f" for {mapping.lifetime} s"
    )
    await client.deleteMapping(Protocol.TCP, 8080)
    await client.stop()


task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
