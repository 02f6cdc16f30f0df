"""
Tests for L{twisted_natpmp.endpoint}: the C{natpmp:} server endpoint.
"""
