"""
The arriving-interface check moved to
L{twisted_natpmp.server._internalport}; these names stay importable from
here.
"""

from .server._internalport import (
    InterfaceCheckingPort,
    LocalInterface,
    arrivalInterface,
    interfaceHolding,
    interfaceWith,
    localInterfaces,
)

__all__ = [
    "InterfaceCheckingPort",
    "LocalInterface",
    "arrivalInterface",
    "interfaceHolding",
    "interfaceWith",
    "localInterfaces",
]
