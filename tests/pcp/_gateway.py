"""
A scripted PCP server for the in-memory UDP network: it answers as
miniupnpd 2.3.1 does (PROTOCOL.md A2.6, A2.13) unless a test replaces its
C{reply} or sets its knobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from twisted.internet.protocol import DatagramProtocol

from twisted_natpmp._types import IPAddress
from twisted_natpmp.pcp._wire import (
    MalformedPacket,
    MapData,
    Opcode,
    PreferFailureOption,
    Request,
    Response,
    ResultCode,
    decodeRequest,
    errorResponse,
)

EXTERNAL = IPv4Address("192.0.3.77")

#: The 8-byte "unsupported version" of a NAT-PMP-only gateway (RFC 6886
#: s3.5), opcode 128 as erratum 3618 has it, epoch 1000.
NATPMP_UNSUPPORTED = bytes.fromhex("0080000100000" + "3e8")


@dataclass
class Held:
    """
    One mapping the server holds.
    """

    nonce: bytes
    externalPort: int
    lifetime: int


class ScriptedPCPServer(DatagramProtocol):
    """
    A PCP server whose answers a test chooses (C{reply(request, packet,
    source)} returns the packets to send back; L{answer} by default).

    @ivar requests: every request decoded, with its source.
    @ivar packets: every datagram received.
    @ivar epoch: the epoch it answers with.
    @ivar held: its mappings, by (client address, protocol, internal port).
    @ivar taken: external ports held by some other host.
    @ivar strictNonce: refuse a MAP with another nonce than the mapping's
        (RFC-strict), rather than let it take the mapping over (miniupnpd).
    @ivar minLifetime: the least lifetime granted.
    @ivar maxLifetime: the most.
    @ivar external: the external address it grants (IPv6 clients get their
        own address: a firewall's pinhole).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Any]] = []
        self.packets: list[bytes] = []
        self.epoch = 1000
        self.held: dict[tuple[IPAddress, int, int], Held] = {}
        self.taken: set[int] = set()
        self.strictNonce = False
        self.minLifetime = 120
        self.maxLifetime = 86400
        self.external: IPAddress = EXTERNAL
        self.reply: Callable[[Request, bytes, Any], list[bytes]] = self.answer

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.packets.append(datagram)
        try:
            request = decodeRequest(datagram)
        except MalformedPacket as e:
            if e.resultCode is not None:
                self._send(errorResponse(datagram, e.resultCode, 0, self.epoch), addr)
            return
        self.requests.append((request, addr))
        for packet in self.reply(request, datagram, addr):
            self._send(packet, addr)

    def _send(self, packet: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.write(packet, addr)

    def error(self, packet: bytes, code: ResultCode, lifetime: int = 0) -> list[bytes]:
        """
        An error answer in a copy of the request.
        """
        return [errorResponse(packet, code, lifetime, self.epoch)]

    def answer(self, request: Request, packet: bytes, addr: Any) -> list[bytes]:
        """
        Answer as miniupnpd does.
        """
        if request.clientAddress != ip_address(addr[0]):
            return self.error(packet, ResultCode.ADDRESS_MISMATCH)
        if request.opcode is Opcode.ANNOUNCE:
            return [Response(Opcode.ANNOUNCE, 0, 0, self.epoch).encode()]
        data = request.data
        if not isinstance(data, MapData):
            return self.error(packet, ResultCode.UNSUPP_OPCODE)
        key = (request.clientAddress, data.protocol, data.internalPort)
        held = self.held.get(key)
        if request.lifetime == 0:
            if held is None:
                return self.error(packet, ResultCode.NO_RESOURCES, 30)
            if held.nonce != data.nonce:
                return self.error(packet, ResultCode.NOT_AUTHORIZED)
            del self.held[key]
            return [self._granted(request, data, 0, data.externalPort)]
        if held is not None and held.nonce != data.nonce and self.strictNonce:
            return self.error(packet, ResultCode.NOT_AUTHORIZED)
        preferFailure = any(isinstance(o, PreferFailureOption) for o in request.options)
        port = held.externalPort if held is not None else data.externalPort
        port = port or data.internalPort
        if held is None:
            while port in self.taken:
                if preferFailure:
                    return self.error(packet, ResultCode.CANNOT_PROVIDE_EXTERNAL)
                port += 1
        lifetime = min(max(request.lifetime, self.minLifetime), self.maxLifetime)
        self.held[key] = Held(data.nonce, port, lifetime)
        return [self._granted(request, data, lifetime, port)]

    def _granted(
        self, request: Request, data: MapData, lifetime: int, port: int
    ) -> bytes:
        address: IPAddress = self.external
        if isinstance(request.clientAddress, IPv6Address):
            address = request.clientAddress
        granted = MapData(data.nonce, data.protocol, data.internalPort, port, address)
        return Response(
            Opcode.MAP, 0, lifetime, self.epoch, granted, request.options
        ).encode()
