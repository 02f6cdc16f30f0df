# -*- test-case-name: tests.server.nftables -*-
"""
A backend that makes a gateway really forward: the mappings become
elements of an nftables map, for C{twistd natpmp-gateway --backend
nftables} on a Linux router (L{NftablesBackend}).

The design, module by module:

  - L{_ruleset <twisted_natpmp.server.backends.nftables._ruleset>} builds
    the batches, pure: our own table (C{inet twisted_natpmp} by default)
    with one DNAT rule, for packets arriving on the external interface,
    over a map from (transport, external port) to (internal address,
    internal port) with C{flags timeout}; each mapping is one element whose
    timeout is the lifetime granted, refreshed by each renewal, so even
    after a gateway killed with SIGKILL new connections stop at the
    lifetimes it granted (its established flows go on until it is started
    again, or conntrack times them out).  Optionally an accept rule for
    exactly our mappings in the host's own forward chain
    (C{--forward-chain}), over a set of ours in the host's table kept
    element for element beside the map; without it,
    the host's firewall must accept DNATed flows itself (C{ct status dnat
    accept}), as OpenWrt's fw4 does: a drop in any forward base chain is
    final, and no accept in our table could rescue the packet.  With a
    host chain of an C{inet} table, IPv6 pinholes (PCP MAPs from global
    IPv6 addresses) go into one more set of ours there, with accept rules
    of ours; without, they are refused.  PCP's FILTER on an IPv4 forward
    becomes elements of two more sets of ours, the filtered ports and the
    peers allowed through each, with a rule before the DNAT that drops the
    rest; on a pinhole, of two more sets in the host's table, whose
    filtered pinholes our accept rules let in only from the peers
    allowed.
  - L{_names <twisted_natpmp.server.backends.nftables._names>} checks every
    name a batch holds, and reads the host's C{FAMILY:TABLE:CHAIN}.
  - L{_process <twisted_natpmp.server.backends.nftables._process>} runs
    C{nft -f -} and C{conntrack} through C{reactor.spawnProcess}, one
    process at a time, each killed and failed after a deadline.  Why a
    process and not libnftables in ours: the process needs only Debian's
    C{nftables} package, works from any virtualenv (python3-nftables lives
    in Debian's system Python only) and never blocks the reactor; a call
    costs about 2 ms, which coalescing spreads over every request that
    arrives meanwhile.  libnftables through ctypes is faster per call but
    blocks the reactor unless run in a thread, and its C{flags owner}
    table would vanish with the process, which then could not leave the
    elements to expire by themselves.  The batches are nft's text syntax,
    not its JSON: nft 1.0.6 cannot declare a map with a concatenated data
    type in JSON (observed: it makes a set, and the DNAT rule over it
    crashes nft).
  - L{backend <twisted_natpmp.server.backends.nftables.backend>} is the
    L{IBatchingBackend <twisted_natpmp.server.backends._batching.
    IBatchingBackend>}: C{start} makes the table afresh (a restarted
    gateway has lost its state: epoch 0, RFC 6886 s3.6, RFC 6887 s8.5;
    clients map again) and cuts the DNATed flows to the external address
    in the gateway's port range that an earlier run may have left,
    C{apply} commits one batch of changes as one
    transaction, C{stop} deletes the table, our rule and set in the host's
    chain, and ends the flows through what was still mapped.
  - L{_conntrack <twisted_natpmp.server.backends.nftables._conntrack>}:
    removing an element stops new flows only, so each batch that removes
    mappings is followed by one C{conntrack -L} of the flows a DNAT made
    (and of the IPv6 flows, for pinholes), and the flows found through
    them are deleted by exact tuple: an expired or deleted mapping really
    closes.
  - L{_address <twisted_natpmp.server.backends.nftables._address>} follows
    the external interface's address (announced when it changes; result 3
    while there is none); L{_ownports
    <twisted_natpmp.server.backends.nftables._ownports>} keeps the ports
    the router itself listens on out of the grants; L{_service
    <twisted_natpmp.server.backends.nftables._service>} runs both beside
    the gateway.
  - L{testing <twisted_natpmp.server.backends.nftables.testing>}: a
    recording fake of the programs, for tests.

Batching and failures (L{twisted_natpmp.server._committer}): a request is
answered once the batch holding its changes has committed; requests that
arrive while a batch is in flight are coalesced into the next.  A failed
batch changed nothing in the kernel (one killed for taking too long may
have: the forwards it touched are removed before anything else, and the
table forgets them; one that failed because our table has gone, in a
firewall reload, has the gateway start afresh): the table is put back as
last committed, a lone request is answered with the failure's meaning (network
failure, or out of resources when the kernel had no room), and the
requests of a coalesced batch are run again one batch each, so that one
bad request does not fail the others.  Never a mapping that the table
holds and the kernel does not.

Expiry, between our table and the kernel's timeout: both count the same
lifetime, ours from the request, the kernel's from the commit a few
milliseconds later, so the table expires a mapping first and removes its
element (and its flows).  Each element change is written so that an
element the kernel has already expired is no error (see
L{_ruleset <twisted_natpmp.server.backends.nftables._ruleset>}).  An
expiry's removal is never undone: if its batch fails, the kernel's own
timeout still ends the forward.
"""

from __future__ import annotations

from ._process import IProcessRunner, ProcessFailed, ProcessRunner
from ._ruleset import DEFAULT_TABLE, ForwardChain, Ruleset
from .backend import BackendState, NftablesBackend

__all__ = [
    "DEFAULT_TABLE",
    "BackendState",
    "ForwardChain",
    "IProcessRunner",
    "NftablesBackend",
    "ProcessFailed",
    "ProcessRunner",
    "Ruleset",
]
