"""
NAT-PMP (RFC 6886) port mapping for Twisted.
"""
