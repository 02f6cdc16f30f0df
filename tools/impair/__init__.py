"""
The reliability suite's packet tools, for the interop tests and the
benchmarks: a seeded UDP impairment relay (L{tools.impair.relay}), a
rate-bounded flooder (L{tools.impair.flood}), and the seeded NAT-PMP packet
mutations (L{tools.impair.mutations}) that both the flooder and the in-memory
fuzz tests send.

The relay and the flooder run as their own processes in the lab's
namespaces: C{python -m tools.impair relay|flood ...}.  This package imports
only the standard library, so those processes start quickly.
"""
