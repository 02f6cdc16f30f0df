# -*- test-case-name: tests.pcp.test_nonces -*-
"""
The mapping nonces a PCP client keeps across processes.

RFC 6887 s11.1: a client picks 96 random bits for each mapping and sends
them in every renewal and in the deletion; a server refuses a deletion with
another nonce (miniupnpd answers NOT_AUTHORIZED).  C{natpmp map} and
C{natpmp unmap} are separate processes, and a restarted service must renew
or delete what its predecessor mapped, so the nonces live in a small file.

Where: C{$XDG_STATE_HOME/twisted-natpmp/pcp-nonces.json}, or
C{~/.local/state/twisted-natpmp/pcp-nonces.json} when C{XDG_STATE_HOME} is
unset, empty or relative (the XDG Base Directory rules); any other path can
be given to L{NonceStore}.  The directory, when this module creates it, and
the file are readable only by their owner (0700 and 0600).

How: every change is a read-modify-write under an exclusive C{flock} on a
lock file beside it (C{pcp-nonces.json.lock}), so processes mapping
different ports at once never lose each other's nonces; the new contents go
to a temporary file in the same directory, which is flushed, synced and
renamed over the old one, so a reader sees the old file or the new, never
half of one.  Reading takes no lock.  Where C{fcntl} is missing (Windows)
changes are not locked.

Trouble never raises: an unreadable or corrupt file is read as empty, and a
file that cannot be written leaves the nonce known to this process only;
each is logged as a warning (C{twisted.logger}, with the path and the
error as strings).

Synchronous, small-file I/O: called once per mapping, renewal or deletion.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from twisted.logger import Logger

from ._fields import NONCE_SIZE
from ._noncekeys import MemoryNonceStore, NonceKeeper, NonceKey, newNonce

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MemoryNonceStore",
    "NonceKeeper",
    "NonceKey",
    "NonceStore",
    "defaultPath",
    "newNonce",
]

_log = Logger()

_APPLICATION = "twisted-natpmp"
_FILENAME = "pcp-nonces.json"
_FORMAT = 1
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700


def defaultPath(environ: Mapping[str, str] | None = None) -> Path:
    """
    Where the nonces of this user live unless told otherwise.

    @param environ: the environment (C{os.environ} by default).
    @return: C{$XDG_STATE_HOME/twisted-natpmp/pcp-nonces.json} when
        C{XDG_STATE_HOME} is an absolute path, else
        C{~/.local/state/twisted-natpmp/pcp-nonces.json}.
    """
    if environ is None:
        environ = os.environ
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        home = environ.get("HOME") or os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    return Path(state) / _APPLICATION / _FILENAME


class NonceStore:
    """
    The nonces of one user's PCP mappings, in one file.

    @ivar path: the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        """
        @param path: the file; L{defaultPath} when L{None}.
        """
        self.path = defaultPath() if path is None else path
        self._lockPath = self.path.with_name(self.path.name + ".lock")
        # What this process knows even when the file cannot be written.
        self._unsaved: dict[NonceKey, bytes | None] = {}

    def get(self, key: NonceKey) -> bytes | None:
        """
        The nonce kept for a mapping.

        @param key: the mapping.
        @return: its 12-byte nonce, or L{None} if none is kept.
        """
        if key in self._unsaved:
            return self._unsaved[key]
        return self._read().get(key)

    def nonceFor(self, key: NonceKey) -> bytes:
        """
        The nonce to send for a mapping: the one kept, or a new one, kept
        from now on.

        @param key: the mapping.
        @return: a 12-byte nonce.
        """
        known = self._unsaved.get(key)
        if known is not None:
            return known
        with self._locked():
            nonces = self._read()
            nonce = nonces.get(key)
            if nonce is None:
                nonce = nonces[key] = newNonce()
                self._save(nonces, key, nonce)
        return nonce

    def remember(self, key: NonceKey, nonce: bytes) -> None:
        """
        Keep a given nonce for a mapping, replacing any other.

        @param key: the mapping.
        @param nonce: its 12-byte nonce.
        @raise ValueError: C{nonce} is not 12 bytes.
        """
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce of {len(nonce)} bytes, not {NONCE_SIZE}")
        with self._locked():
            nonces = self._read()
            nonces[key] = nonce
            self._save(nonces, key, nonce)

    def forget(self, key: NonceKey) -> None:
        """
        Stop keeping a mapping's nonce, once the mapping is deleted (or
        known to be gone).

        @param key: the mapping.
        """
        with self._locked():
            nonces = self._read()
            if nonces.pop(key, None) is not None:
                self._save(nonces, key, None)
            else:
                self._unsaved.pop(key, None)

    def keys(self) -> list[NonceKey]:
        """
        @return: the mappings whose nonces are kept, in the file's order.
        """
        nonces = self._read()
        for key, nonce in self._unsaved.items():
            if nonce is None:
                nonces.pop(key, None)
            else:
                nonces[key] = nonce
        return list(nonces)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover (Windows)
            yield
            return
        try:
            self._makeDirectory()
            fd = os.open(self._lockPath, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as error:
            _log.warn(
                "Cannot lock the PCP nonce file {path} ({error}); going on unlocked",
                path=str(self.path),
                error=str(error),
            )
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _makeDirectory(self) -> None:
        directory = self.path.parent
        if not directory.is_dir():
            directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(directory, _DIRECTORY_MODE)

    def _read(self) -> dict[NonceKey, bytes]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as error:
            _log.warn(
                "Cannot read the PCP nonce file {path} ({error}); starting empty",
                path=str(self.path),
                error=str(error),
            )
            return {}
        try:
            document = json.loads(text)
            entries = document["nonces"]
            if document.get("format") != _FORMAT or not isinstance(entries, list):
                raise ValueError("not a nonce file of format 1")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            _log.warn(
                "The PCP nonce file {path} is corrupt ({error}); starting empty",
                path=str(self.path),
                error=str(error),
            )
            return {}
        nonces: dict[NonceKey, bytes] = {}
        for entry in entries:
            try:
                nonce = bytes.fromhex(entry["nonce"])
                if len(nonce) != NONCE_SIZE:
                    raise ValueError(f"nonce of {len(nonce)} bytes")
                nonces[NonceKey._fromJSON(entry)] = nonce
            except (ValueError, TypeError, KeyError) as error:
                _log.warn(
                    "Skipping a bad entry in the PCP nonce file {path} ({error})",
                    path=str(self.path),
                    error=str(error),
                )
        return nonces

    def _save(
        self, nonces: dict[NonceKey, bytes], key: NonceKey, nonce: bytes | None
    ) -> None:
        entries = [{**k._toJSON(), "nonce": value.hex()} for k, value in nonces.items()]
        text = json.dumps({"format": _FORMAT, "nonces": entries}, indent=1)
        try:
            self._write(text + "\n")
        except OSError as error:
            self._unsaved[key] = nonce
            _log.warn(
                "Cannot write the PCP nonce file {path} ({error}): this mapping's"
                " nonce is known to this process only",
                path=str(self.path),
                error=str(error),
            )
        else:
            self._unsaved.pop(key, None)

    def _write(self, text: str) -> None:
        self._makeDirectory()
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                os.fchmod(stream.fileno(), _FILE_MODE)
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _syncDirectory(directory)


def _syncDirectory(directory: Path) -> None:
    # The rename is durable once the directory is synced (POSIX only).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
