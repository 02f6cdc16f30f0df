"""
The real-peer interop suite: our code against Debian's miniupnpd and
libnatpmp's natpmpc, in network namespaces that the tests create and delete.

It needs root, C{ip} (iproute2), C{iptables-legacy}, C{unshare}, C{miniupnpd}
(the iptables build) and C{natpmpc}; without them every test here skips,
naming what is missing.  Set C{NATPMP_INTEROP_REQUIRED=1} (CI does) to make a
missing prerequisite an error instead of a skip.
"""
