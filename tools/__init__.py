"""
The checkout's developer tools, shared by the test suite and the benchmarks;
shipped in the sdist, not in the wheel.

  - L{tools.netlab}: the network-namespace lab (a real router, miniupnpd, in
    namespaces the lab creates and deletes), with no trial dependency;
  - L{tools.impair}: the impairment relay, the flooder and the packet
    mutations, standard library only.
"""
