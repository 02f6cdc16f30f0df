"""
The client of README.md ("The client"): ask the gateway for its external
address, map TCP port 8080 for an hour, and delete the mapping again.

Give the gateway's address as the argument:

    python examples/client.py 192.168.1.1

Without a router, start examples/gateway.py first and use its address:

    python examples/gateway.py 127.0.0.1/8 &
    python examples/client.py 127.0.0.1

The README shows this file with the address written in ("192.168.1.1");
tests/test_examples.py checks that the two stay the same.
"""

import sys

from twisted.internet import defer, task

from twisted_natpmp import Protocol, listenClient

gateway = sys.argv[1]


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
