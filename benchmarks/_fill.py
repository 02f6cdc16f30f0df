"""
Fill a gateway's mapping table straight through its API, to measure how
the gateway's costs grow with its size.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_natpmp import Transport
from twisted_natpmp.server.table import MappingTable

#: Mappings each filling client holds (TCP and UDP of the same ports).
PER_CLIENT = 500
#: The first filling client; the others follow it in 10.0.0.0/8.
FIRST_CLIENT = IPv4Address("10.0.0.1")
#: The filling clients' ports start here, one up for each pair.
FIRST_PORT = 1024
#: The longest lifetime the fill asks for: nothing expires while measured.
LIFETIME = 86400


def fillTable(table: MappingTable, count: int) -> None:
    """
    Give C{table} C{count} more mappings held by clients in 10.0.0.0/8 (the
    table must hold none of theirs yet).

    Each client maps TCP and UDP of the same internal ports, which share an
    external port (RFC 6886 s3.3 reserves the companion port for the same
    client), so 100,000 mappings fit in the 64,512 external ports; they
    take external ports from 1024 up.
    """
    for i in range(count):
        pair = i // 2
        client = FIRST_CLIENT + pair * 2 // PER_CLIENT
        port = FIRST_PORT + pair
        protocol = Transport.TCP if i % 2 else Transport.UDP
        table.map(client, protocol, port, port, LIFETIME)
