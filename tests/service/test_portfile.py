"""
Tests for L{twisted_natpmp.service._portfile}: the port file written
atomically (a temporary file in the same directory, then C{os.replace}).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.service._portfile import syncDirectory, writePortFile


class PortFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        self.path = self.directory / "forwarded_port"

    def test_written(self) -> None:
        writePortFile(self.path, 38534)
        self.assertEqual(self.path.read_text(), "38534\n")
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o644)
        self.assertEqual(os.listdir(self.directory), ["forwarded_port"])

    def test_replacedNotRewritten(self) -> None:
        # A reader holding the old file (here a hard link to it) still reads
        # the whole old port: the new one is a new file renamed over it.
        writePortFile(self.path, 38534)
        old = self.directory / "reader"
        os.link(self.path, old)
        writePortFile(self.path, 40001)
        self.assertEqual(self.path.read_text(), "40001\n")
        self.assertEqual(old.read_text(), "38534\n")

    def test_temporaryInSameDirectory(self) -> None:
        # The temporary file is in the same directory, so os.replace is a
        # rename within one file system.
        renamed: list[tuple[str, Path]] = []

        def replace(source: str, target: Path) -> None:
            renamed.append((source, target))
            os.replace(source, target)

        writePortFile(self.path, 1, replace=replace)
        [(source, target)] = renamed
        self.assertEqual(Path(source).parent, self.directory)
        self.assertEqual(target, self.path)

    def test_failureLeavesOldFile(self) -> None:
        # A failed write leaves the old port and no temporary file.
        writePortFile(self.path, 38534)

        def replace(source: str, target: Path) -> None:
            raise OSError(28, "No space left on device")

        self.assertRaises(OSError, writePortFile, self.path, 40001, replace=replace)
        self.assertEqual(self.path.read_text(), "38534\n")
        self.assertEqual(os.listdir(self.directory), ["forwarded_port"])

    def test_missingDirectory(self) -> None:
        self.assertRaises(OSError, writePortFile, self.directory / "no" / "file", 1)

    def test_directorySynced(self) -> None:
        # After the rename the directory is flushed, so the new entry
        # survives a crash; after the rename, never before.
        seen: list[tuple[Path, str]] = []

        def sync(directory: Path) -> None:
            seen.append((directory, self.path.read_text()))

        writePortFile(self.path, 38534, sync=sync)
        self.assertEqual(seen, [(self.directory, "38534\n")])

    def test_syncDirectory(self) -> None:
        # The real one opens and fsyncs the directory.
        synced: list[int] = []
        self.patch(os, "fsync", synced.append)
        syncDirectory(self.directory)
        self.assertEqual(len(synced), 1)
