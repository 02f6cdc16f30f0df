"""
The web site of README.md ("Reachable from outside"): serve one page on TCP
port 8080 behind a natpmp: endpoint, which keeps the port mapped on the
gateway, print the address the world reaches it at, and serve until Ctrl-C
(which deletes the mapping again).

Give the endpoint description as the argument:

    python examples/website.py natpmp:gateway=192.168.1.1:tcp:8080

Without a router, start examples/gateway.py first and use its address:

    python examples/gateway.py 127.0.0.1/8 &
    python examples/website.py natpmp:gateway=127.0.0.1:tcp:8080

The README shows this file with the description written in where
descriptionArgument() reads it; tests/test_examples.py checks that the two
stay the same.
"""

import sys

from twisted.internet import defer, endpoints, task
from twisted.web import resource, server, static


def descriptionArgument():
    """
    The endpoint description, from the command line; a missing or bad one
    ends the program with one usage line naming it.
    """
    from twisted.internet import reactor

    usage = "usage: python examples/website.py natpmp:[OPTIONS:]ENDPOINT"
    if len(sys.argv) != 2:
        sys.exit(f"{usage} (given {len(sys.argv) - 1} arguments)")
    try:
        endpoints.serverFromString(reactor, sys.argv[1])
    except ValueError as e:
        sys.exit(f"{usage} ({e})")
    return sys.argv[1]


description = descriptionArgument()


async def main(reactor):
    root = resource.Resource()
    root.putChild(b"", static.Data(b"Hello from behind the NAT.\n", "text/plain"))
    endpoint = endpoints.serverFromString(reactor, description)
    port = await endpoint.listen(server.Site(root))
    address = await port.whenMapped(timeout=30)
    print(f"serving http://{address.host}:{address.port}/", flush=True)
    # Serve until Ctrl-C; the port stops, deleting the mapping, on the way out.
    await defer.Deferred()


task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
