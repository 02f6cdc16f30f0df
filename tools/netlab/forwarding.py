"""
The lab as a forwarding router: our gateway with its nftables backend
(C{twistd natpmp-gateway --backend nftables}), the router's nftables
ruleset and conntrack table read back, a host firewall of the router's
own, and echo servers on the LAN hosts (L{tools.netlab.echo}).

Every C{nft} and C{conntrack} command runs inside the lab's router
namespace; nothing touches the root namespace's ruleset.

Use::

    lab = buildForwardingLab(directory)
    try:
        lab.addHostFirewall(acceptDNAT=True)
        lab.echo(0).listen(tcp=(8080,), udp=(8080,))
        await lab.startNftGateway()
        ...
    finally:
        await lab.destroy()
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._lab import Lab
from ._namespaces import (
    LAN_HOSTS,
    ROUTER_LAN,
    ROUTER_WAN,
    LabError,
    requirePrerequisites,
)
from ._process import Daemon, waitUntil
from .echo import EchoServers

#: The gateway's table (C{inet}) when no C{--nft-table} is given.
GATEWAY_TABLE = "twisted_natpmp"
#: The router's own firewall table (L{ForwardingLab.addHostFirewall}).
HOST_TABLE = "hostfw"
#: The host firewall's forward chain, as C{--forward-chain} names it.
HOST_FORWARD_CHAIN = f"inet:{HOST_TABLE}:forward"

_TOOLS = ("nft", "conntrack")

_HOST_FIREWALL = """\
table inet {table} {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        {dnat}
        iifname "br0" oifname "wan0" accept
    }}
}}
"""


def missingForwarding() -> list[str]:
    """
    What this machine lacks to run the forwarding lab beyond the lab's own
    prerequisites (L{tools.netlab.missingPrerequisites}): Debian's
    C{nftables} and C{conntrack}, one phrase each.
    """
    return [f"the {t!r} command" for t in _TOOLS if shutil.which(t) is None]


def requireForwarding() -> None:
    """
    Say what is missing when this machine cannot run the forwarding lab:
    what the lab itself needs (L{tools.netlab.requirePrerequisites}), and
    L{missingForwarding}.

    @raise LabUnavailable: something is missing (a test suite skips).
    @raise LabError: something is missing and C{NATPMP_INTEROP_REQUIRED=1}.
    """
    requirePrerequisites(missingForwarding())


def buildForwardingLab(directory: Path) -> ForwardingLab:
    """
    A L{ForwardingLab} (namespaces, nothing running yet), after
    L{requireForwarding}.  Its caller must C{await lab.destroy()}.
    """
    requireForwarding()
    lab = ForwardingLab.build(directory)
    # A refused probe is told by an ICMP port unreachable: never rate-limit
    # the router's.
    lab.check(lab.router, ["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
    return lab


@dataclass(frozen=True)
class Element:
    """
    One element of a map in the router's ruleset: where the key goes, and
    its timeout and remaining time in seconds (L{None} without a timeout).
    """

    address: str
    port: int
    timeout: int | None
    expires: int | None


def _concat(value: Any) -> list[Any]:
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"]["val"]
    if isinstance(value, dict) and "concat" in value:
        return list(value["concat"])
    return [value]


def _elementTimes(key: Any) -> tuple[int | None, int | None]:
    if isinstance(key, dict) and "elem" in key:
        return key["elem"].get("timeout"), key["elem"].get("expires")
    return None, None


def _conntrack(command: str, transport: str, address: str, port: int) -> list[str]:
    return [
        "conntrack",
        command,
        "-p",
        transport,
        "--orig-dst",
        address,
        "--dport",
        str(port),
    ]


class ForwardingLab(Lab):
    """
    A lab (L{Lab}) whose router forwards with nftables.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._echoes: list[EchoServers] = []

    # The ruleset

    def nft(self, *args: str, stdin: str | None = None) -> str:
        """
        Run C{nft ARGS} in the router namespace; return its output.
        """
        return self.check(self.router, ["nft", *args], stdin)

    def loadRuleset(self, text: str) -> None:
        """
        Load C{text} (an C{nft -f} file) into the router's ruleset, as one
        transaction.
        """
        self.nft("-f", "-", stdin=text)

    def ruleset(self) -> list[dict[str, Any]]:
        """
        The router's whole ruleset, C{nft -j list ruleset}: a list of
        objects, each C{{"table": ...}}, C{{"chain": ...}}, C{{"rule":
        ...}}, C{{"map": ...}} and so on (the metainfo object left out).
        """
        objects = json.loads(self.nft("-j", "list", "ruleset"))["nftables"]
        return [o for o in objects if "metainfo" not in o]

    def tableHandle(self, name: str, family: str = "inet") -> int | None:
        """
        The handle of table C{family} C{name}, or L{None} if there is none
        (a table made afresh has a new handle).
        """
        for o in self.ruleset():
            table = o.get("table")
            if table is not None and (table["family"], table["name"]) == (
                family,
                name,
            ):
                return int(table["handle"])
        return None

    def tables(self) -> set[tuple[str, str]]:
        """
        Every table in the router's ruleset, as (family, name).
        """
        return {
            (o["table"]["family"], o["table"]["name"])
            for o in self.ruleset()
            if "table" in o
        }

    def ofTable(self, name: str, family: str = "inet") -> list[dict[str, Any]]:
        """
        What the ruleset holds in table C{family} C{name}: its chains,
        rules, maps, sets (each object as L{ruleset} gives it).
        """
        found = []
        for o in self.ruleset():
            ((kind, body),) = o.items()
            if kind != "table" and body.get("table") == name:
                if body.get("family") == family:
                    found.append(o)
        return found

    def rulesOf(self, family: str, table: str, chain: str) -> list[dict[str, Any]]:
        """
        Each rule in one chain, in order, as L{ruleset} gives it (its
        C{expr}, C{handle}, C{comment} ...).
        """
        return [
            o["rule"]
            for o in self.ruleset()
            if "rule" in o
            and (o["rule"]["family"], o["rule"]["table"], o["rule"]["chain"])
            == (family, table, chain)
        ]

    def chainRules(self, family: str, table: str, chain: str) -> list[Any]:
        """
        The expressions of each rule in one chain, in order (handles left
        out, so that a chain can be compared with itself later).
        """
        return [rule["expr"] for rule in self.rulesOf(family, table, chain)]

    def mapElements(self, table: str = GATEWAY_TABLE) -> dict[tuple[str, int], Element]:
        """
        The port forwards in table C{inet table}: the elements of its maps
        keyed by (l4proto, port), each (C{"tcp"} or C{"udp"}, external
        port) -> its L{Element}.
        """
        found: dict[tuple[str, int], Element] = {}
        for o in self.ofTable(table):
            body = o.get("map")
            if body is None:
                continue
            for key, value in body.get("elem", ()):
                proto, external = _concat(key)
                address, internal = _concat(value)
                timeout, expires = _elementTimes(key)
                found[(str(proto), int(external))] = Element(
                    str(address), int(internal), timeout, expires
                )
        return found

    # The host's own firewall

    def addHostFirewall(self, acceptDNAT: bool, table: str = HOST_TABLE) -> None:
        """
        Give the router a firewall of its own, table C{inet table} with a
        forward chain C{forward} whose policy is drop, accepting
        established and related flows and LAN to WAN; with C{acceptDNAT},
        also flows from the WAN that were DNATed (C{ct status dnat accept},
        as OpenWrt's fw4 does), otherwise only what another rule in that
        chain accepts (C{--forward-chain}).
        """
        dnat = 'iifname "wan0" ct status dnat accept' if acceptDNAT else ""
        self.loadRuleset(_HOST_FIREWALL.format(table=table, dnat=dnat))

    # conntrack

    def conntrack(self, transport: str, port: int, address: str = ROUTER_WAN) -> int:
        """
        How many conntrack entries the router holds for C{transport} flows
        whose original destination is C{address}:C{port}.
        """
        listed = self.check(self.router, _conntrack("-L", transport, address, port))
        return len([line for line in listed.splitlines() if line.strip()])

    async def cutFlows(
        self, transport: str, port: int, address: str = ROUTER_WAN
    ) -> None:
        """
        Delete the router's conntrack entries for C{transport} flows to
        C{address}:C{port} (what a gateway does when a mapping ends).
        """
        await self.run(self.router, _conntrack("-D", transport, address, port), 10.0)

    # Echo servers

    def echo(self, lan: int, address: str | None = None) -> EchoServers:
        """
        Echo servers on LAN host C{lan} (listening on no port yet), closed
        with the lab, each reply prefixed with the host's address (or
        C{address}, e.g. one the test added).
        """
        servers = EchoServers(self.lans[lan], address or LAN_HOSTS[lan])
        self._echoes.append(servers)
        return servers

    # Our gateway, forwarding

    async def startNftGateway(
        self,
        *options: str,
        table: str = GATEWAY_TABLE,
        name: str = "nft-gateway",
    ) -> Daemon:
        """
        Start C{twistd -n natpmp-gateway --backend nftables
        --external-interface wan0 --listen 10.77.0.1/24 OPTIONS} in the
        router namespace; wait until it listens on port 5351 and has made
        its table C{inet table} (afresh: one left by a gateway killed
        earlier does not count).
        """
        stale = self.tableHandle(table)
        if table != GATEWAY_TABLE:
            options = (f"--nft-table={table}", *options)
        daemon = self.spawn(
            self.router,
            self.twistd(
                "natpmp-gateway",
                "--backend=nftables",
                "--external-interface=wan0",
                f"--listen={ROUTER_LAN}/24",
                *options,
            ),
            name,
        )
        await self.waitListening(daemon, 5351)

        def created() -> bool:
            if daemon.ended:
                raise LabError(f"{name} exited {daemon.code}:\n{daemon.output()}")
            return self.tableHandle(table) not in (None, stale)

        await waitUntil(created, f"table inet {table}", 10.0, 0.05)
        return daemon

    async def destroy(self) -> None:
        """
        Close the echo servers (sockets of this process, which would keep
        their namespaces alive), then destroy the lab.
        """
        try:
            for servers in self._echoes:
                await servers.stop()
        finally:
            await super().destroy()


__all__ = [
    "GATEWAY_TABLE",
    "HOST_FORWARD_CHAIN",
    "HOST_TABLE",
    "ROUTER_WAN",
    "Element",
    "ForwardingLab",
    "buildForwardingLab",
    "missingForwarding",
    "requireForwarding",
]
