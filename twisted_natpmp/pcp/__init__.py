"""
The Port Control Protocol (RFC 6887): everything PCP, beside
L{twisted_natpmp.natpmp}.

The client is L{twisted_natpmp.pcp.client.PCPClient} (an
L{IPortMapper<twisted_natpmp.interfaces.IPortMapper>}), over the
conversation with one server (C{_conversation}: the request engine, the
client's own address, s8.1.1 retransmission, s8.5 epochs), its deletions
(C{_deletion}), reply matching (C{_matching}) and timing rules
(C{_retransmit}).  The codec is L{twisted_natpmp.pcp._wire} (with its parts
C{_fields}, C{_opdata}, C{_options} and C{_results}, re-exported there); the
requests a client sends and the mapping it reads from a grant are built by
L{twisted_natpmp.pcp._build}; the mapping nonces a client keeps across
processes are L{twisted_natpmp.pcp._nonces}.  All pure but the nonce store,
which reads and writes one small file, and the client.
"""
