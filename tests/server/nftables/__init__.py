"""
Tests for L{twisted_natpmp.server.backends.nftables}.
"""
