"""
What the client side's fuzz tests (C{tests.natpmp.test_fuzz*}) have of
their own: the RFC 6886 oracles for a client and for the announcement
listener.  Packets, the gateway's oracle, the log watch and the memory
measure are in L{tests._fuzzing}, shared with the gateway's and the
service's fuzz tests.
"""

from __future__ import annotations

from twisted_natpmp.announce import AnnouncementKind

# Oracles, from RFC 6886 (not from the code under test)


def responseKind(packet: bytes) -> str:
    """
    What a client makes of C{packet} from its gateway: C{"external"} (an
    external-address response, s3.2), C{"map"} (s3.3), C{"error"} (a header
    with a non-zero result, s3.5, opcode 0 allowed for Unsupported
    Version as printed before Errata 3618), or C{"drop"}.
    """
    if len(packet) < 8 or packet[0] != 0:
        return "drop"
    opcode = packet[1]
    result = int.from_bytes(packet[2:4], "big")
    if opcode == 128 and len(packet) >= 12:
        return "external"
    if opcode in (129, 130) and len(packet) >= 16:
        return "map"
    if result != 0 and (opcode >= 128 or (opcode == 0 and result == 1)):
        return "error"
    return "drop"


def notAnnouncement(packet: bytes) -> bool:
    """
    Whether C{packet} is neither a NAT-PMP announcement (RFC 6886 s3.2.1)
    nor a successful PCP ANNOUNCE (RFC 6887 s14.1).
    """
    return announcementOf(packet) is None


def announcementOf(packet: bytes) -> tuple[AnnouncementKind, int] | None:
    """
    The kind and epoch of the announcement C{packet} is, if it is one.
    """
    if packet[:1] == b"\x02":
        if len(packet) >= 24 and packet[1] == 0x80 and packet[3] == 0:
            return AnnouncementKind.PCP, int.from_bytes(packet[8:12], "big")
        return None
    if len(packet) >= 12 and packet[:4] == b"\x00\x80\x00\x00":
        return AnnouncementKind.NATPMP, int.from_bytes(packet[4:8], "big")
    return None
