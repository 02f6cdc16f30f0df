"""
The Port Control Protocol (RFC 6887): everything PCP, beside
L{twisted_natpmp.natpmp}.

The codec is L{twisted_natpmp.pcp._wire} (with its parts L{_fields},
L{_opdata}, L{_options} and L{_results}); the mapping nonces a client keeps
across processes are L{twisted_natpmp.pcp._nonces}.  All pure but the
nonce store, which reads and writes one small file.
"""
