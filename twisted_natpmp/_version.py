# -*- test-case-name: tests.test_packaging -*-
"""
The version of twisted-natpmp, in one place: the package metadata
(C{pyproject.toml} reads it from here), C{twisted_natpmp.__version__},
C{natpmp --version} and the descriptions of the twistd plugins.

This module imports nothing from the library, so that anything may import
it cheaply.
"""

from __future__ import annotations

__version__ = "0.1.0"


def versionLine(program: str) -> str:
    """
    The line a command prints for C{--version}.

    @param program: the command's name, e.g. C{"natpmp"}.
    @return: e.g. C{"natpmp 0.1.0 (Twisted 24.11.0)"}.
    """
    from twisted import __version__ as twistedVersion

    return f"{program} {__version__} (Twisted {twistedVersion})"
