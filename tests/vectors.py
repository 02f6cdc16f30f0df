"""
The golden packets captured from a real miniupnpd 2.3.1 (a copy of
C{shared/vectors/miniupnpd-2.3.1.txt}, kept in C{tests/data}).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VECTORS = Path(__file__).parent / "data" / "miniupnpd-2.3.1.txt"


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    response: bytes | None


def loadCases(path: Path = VECTORS) -> dict[str, Case]:
    """
    Read the request/response cases, keyed by name.
    """
    cases: dict[str, Case] = {}
    name: str | None = None
    request: bytes | None = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("req "):
            request = bytes.fromhex(line[4:])
        elif line.startswith("resp "):
            assert name is not None and request is not None
            value = line[5:].strip()
            cases[name] = Case(
                name, request, None if value == "NONE" else bytes.fromhex(value)
            )
            name = request = None
        elif line.startswith("announce "):
            continue
        else:
            name = line.strip()
    return cases


def loadAnnouncements(path: Path = VECTORS) -> list[bytes]:
    """
    The multicast announcements captured, in order.
    """
    return [
        bytes.fromhex(line[len("announce ") :])
        for line in path.read_text().splitlines()
        if line.startswith("announce ")
    ]
