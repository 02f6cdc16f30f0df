"""
The C{natpmp:} server endpoint: listen with any stream server endpoint and
keep its TCP port mapped on the gateway, by PCP (RFC 6887) or NAT-PMP (RFC
6886), for as long as it listens.

  - L{MappedServerEndpoint}: the endpoint, for Python users;
  - L{MappedListeningPort}: its port; C{getHost()} is the local address,
    C{mappedAddress} the public one;
  - L{parseMappedServer}: what the C{natpmp:} string plugin (in
    C{twisted/plugins/twisted_natpmp_plugins.py}) calls, with the rules of
    the description in L{twisted_natpmp.endpoint._parser}.

For example, C{twistd web --listen natpmp:tcp:8080 --path .}, or::

    endpoint = serverFromString(reactor, "natpmp:gateway=192.168.1.1:tcp:8080")
    port = await endpoint.listen(factory)
    print("reach me at", await port.whenMapped())
"""

from __future__ import annotations

from ._endpoint import MappedServerEndpoint, parseMappedServer
from ._parser import MAX_WAIT_FOR_MAPPING, EndpointOptions, splitDescription
from ._port import WHEN_MAPPED_TIMEOUT, MappedListeningPort, publicAddress

__all__ = [
    "MAX_WAIT_FOR_MAPPING",
    "WHEN_MAPPED_TIMEOUT",
    "EndpointOptions",
    "MappedListeningPort",
    "MappedServerEndpoint",
    "parseMappedServer",
    "publicAddress",
    "splitDescription",
]
