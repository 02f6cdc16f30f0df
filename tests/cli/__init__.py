"""
Tests for the C{natpmp} command, L{twisted_natpmp._cli}: argument parsing,
L{twisted_natpmp._cli.run} on the in-memory network against a scripted
gateway, L{twisted_natpmp._cli.main}'s exit codes, and once the real
C{python -m twisted_natpmp} over loopback UDP.
"""
