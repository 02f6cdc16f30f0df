# -*- test-case-name: tests.server.test_table -*-
"""
The free external ports of a gateway, as a two-level bitmap.
"""

from __future__ import annotations

_BLOCK_BITS = 64
_BLOCK_FULL = (1 << _BLOCK_BITS) - 1


def _lowestBit(value: int) -> int:
    """
    The index of the lowest set bit of a positive integer.
    """
    return (value & -value).bit_length() - 1


class PortPool:
    """
    The external port numbers in a range that no mapping holds, in either
    transport.

    Ports are bits in blocks of 64; a second bitmap says which blocks still
    hold a free port.  Taking, releasing and finding the next free port are
    a handful of integer operations whatever the size of the table.

    @ivar free: how many ports are free.
    """

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high
        size = high - low + 1
        self.free = size
        blocks, tail = divmod(size, _BLOCK_BITS)
        self._blocks = [_BLOCK_FULL] * blocks
        if tail:
            self._blocks.append((1 << tail) - 1)
        self._nonEmpty = (1 << len(self._blocks)) - 1

    def __contains__(self, port: int) -> bool:
        if not self.low <= port <= self.high:
            return False
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        return bool(self._blocks[block] >> bit & 1)

    def take(self, port: int) -> None:
        """
        Mark the free C{port} taken.
        """
        self.free -= 1
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        self._blocks[block] &= ~(1 << bit)
        if not self._blocks[block]:
            self._nonEmpty &= ~(1 << block)

    def release(self, port: int) -> None:
        """
        Mark the taken C{port} free.
        """
        self.free += 1
        block, bit = divmod(port - self.low, _BLOCK_BITS)
        self._blocks[block] |= 1 << bit
        self._nonEmpty |= 1 << block

    def nextFree(self, start: int) -> int | None:
        """
        The first free port at or above C{start}, wrapping around to the
        bottom of the range; L{None} when every port is taken.
        """
        if not self._nonEmpty:
            return None
        start = min(max(start, self.low), self.high)
        block, bit = divmod(start - self.low, _BLOCK_BITS)
        here = self._blocks[block] >> bit << bit
        if here:
            return self.low + block * _BLOCK_BITS + _lowestBit(here)
        later = self._nonEmpty >> (block + 1)
        if later:
            block += 1 + _lowestBit(later)
        else:
            block = _lowestBit(self._nonEmpty)
        return self.low + block * _BLOCK_BITS + _lowestBit(self._blocks[block])
