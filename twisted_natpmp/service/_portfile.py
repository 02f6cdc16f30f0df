# -*- test-case-name: tests.service.test_portfile -*-
"""
L{writePortFile}: the forwarded port written to a file atomically, as the
tools VPN users run today (gluetun, qbittorrent-natmap) do, so that another
program reads either the old port or the new one, never a part.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["syncDirectory", "writePortFile"]


def syncDirectory(directory: Path) -> None:
    """
    Flush C{directory}'s entries to disk, so that a rename in it survives a
    crash.  Where directories cannot be opened for this (Windows), nothing.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def writePortFile(
    path: Path,
    port: int,
    *,
    replace: Callable[[str, Path], None] = os.replace,
    sync: Callable[[Path], None] = syncDirectory,
) -> None:
    """
    Write C{port} and a newline to C{path}, atomically: to a temporary file
    in the same directory (the same file system), flushed to disk, then
    renamed over C{path} with C{os.replace}, and the directory flushed to
    disk so that the rename lasts.  The file is readable by all (0644, as
    the tools it stands in for write it); on failure the temporary file is
    removed and C{path} left as it was.

    @param replace: renames the temporary file over C{path} (tests pass a
        failing one).
    @param sync: flushes the directory after the rename.
    @raise OSError: the directory cannot be written, or the disk is full.
    """
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(f"{port}\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    sync(path.parent)
