"""
Tests for L{twisted_natpmp.pcp._nonces}: the file of PCP mapping nonces.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._nonces import NonceKey, NonceStore, defaultPath, newNonce

GATEWAY = IPv4Address("10.77.0.1")
KEY = NonceKey(GATEWAY, Transport.TCP, 7000)


class DefaultPathTests(SynchronousTestCase):
    def test_xdgStateHome(self) -> None:
        environ = {"XDG_STATE_HOME": "/s", "HOME": "/h"}
        self.assertEqual(
            defaultPath(environ), Path("/s/twisted-natpmp/pcp-nonces.json")
        )

    def test_home(self) -> None:
        # The XDG Base Directory rules: unset, empty or relative means the
        # default under the home directory.
        expected = Path("/h/.local/state/twisted-natpmp/pcp-nonces.json")
        for environ in (
            {"HOME": "/h"},
            {"XDG_STATE_HOME": "", "HOME": "/h"},
            {"XDG_STATE_HOME": "relative", "HOME": "/h"},
        ):
            self.assertEqual(defaultPath(environ), expected)

    def test_store(self) -> None:
        self.assertEqual(NonceStore().path, defaultPath())


class NonceStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "state" / "pcp-nonces.json"
        self.store = NonceStore(self.path)

    def test_newNonce(self) -> None:
        # RFC 6887 s11.1: 96 random bits.
        self.assertEqual(len(newNonce()), 12)
        self.assertNotEqual(newNonce(), newNonce())

    def test_keptForRenewalAndDeletion(self) -> None:
        # RFC 6887 s11.1: one nonce per mapping, the same every time, and
        # in another process (another store on the same file).
        self.assertIsNone(self.store.get(KEY))
        nonce = self.store.nonceFor(KEY)
        self.assertEqual(len(nonce), 12)
        self.assertEqual(self.store.nonceFor(KEY), nonce)
        self.assertEqual(NonceStore(self.path).get(KEY), nonce)
        self.assertEqual(NonceStore(self.path).nonceFor(KEY), nonce)

    def test_keys(self) -> None:
        # Each of gateway, transport, internal port and internal address
        # makes another mapping, with its own nonce.
        keys = [
            KEY,
            NonceKey(IPv4Address("10.77.0.254"), Transport.TCP, 7000),
            NonceKey(GATEWAY, Transport.UDP, 7000),
            NonceKey(GATEWAY, Transport.TCP, 7001),
            NonceKey(GATEWAY, Transport.TCP, 7000, IPv4Address("10.77.0.9")),
            NonceKey(IPv6Address("fe80::1"), Transport.UDP, 1, IPv6Address("::2")),
        ]
        nonces = [self.store.nonceFor(key) for key in keys]
        self.assertEqual(len(set(nonces)), len(keys))
        reread = NonceStore(self.path)
        self.assertEqual(reread.keys(), keys)
        self.assertEqual([reread.get(key) for key in keys], nonces)

    def test_forget(self) -> None:
        self.store.nonceFor(KEY)
        other = NonceKey(GATEWAY, Transport.UDP, 7000)
        kept = self.store.nonceFor(other)
        self.store.forget(KEY)
        self.store.forget(KEY)
        self.assertIsNone(NonceStore(self.path).get(KEY))
        self.assertEqual(NonceStore(self.path).get(other), kept)

    def test_remember(self) -> None:
        nonce = bytes(range(12))
        self.store.remember(KEY, nonce)
        self.assertEqual(NonceStore(self.path).nonceFor(KEY), nonce)
        self.assertRaises(ValueError, self.store.remember, KEY, b"short")

    def test_permissions(self) -> None:
        # Readable only by the owner, whatever the umask.
        old = os.umask(0)
        try:
            self.store.nonceFor(KEY)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.parent).st_mode), 0o700)
        lock = self.path.with_name("pcp-nonces.json.lock")
        self.assertEqual(stat.S_IMODE(os.stat(lock).st_mode), 0o600)

    def test_existingDirectoryLeftAlone(self) -> None:
        self.path.parent.mkdir(parents=True)
        os.chmod(self.path.parent, 0o755)
        self.store.nonceFor(KEY)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.parent).st_mode), 0o755)

    def test_atomicReplace(self) -> None:
        # A new file is renamed over the old: no temporary file is left, and
        # the old file is intact when the rename fails.
        self.store.nonceFor(KEY)
        before = self.path.read_bytes()
        inode = os.stat(self.path).st_ino
        self.store.nonceFor(NonceKey(GATEWAY, Transport.UDP, 1))
        self.assertNotEqual(os.stat(self.path).st_ino, inode)
        self.assertEqual(
            sorted(os.listdir(self.path.parent)),
            ["pcp-nonces.json", "pcp-nonces.json.lock"],
        )

        def failingReplace(source: object, destination: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", failingReplace)
        now = self.path.read_bytes()
        other = NonceKey(GATEWAY, Transport.UDP, 2)
        with capturedLogs() as events:
            nonce = self.store.nonceFor(other)
        self.assertEqual(self.path.read_bytes(), now)
        self.assertNotEqual(now, before)
        self.assertEqual(
            sorted(os.listdir(self.path.parent)),
            ["pcp-nonces.json", "pcp-nonces.json.lock"],
        )
        # The nonce still serves this process, and the trouble is said.
        self.assertEqual(self.store.nonceFor(other), nonce)
        self.assertEqual(self.store.get(other), nonce)
        self.assertIn(other, self.store.keys())
        self.assertIsNone(NonceStore(self.path).get(other))
        [event] = events
        self.assertIn("No space left", event["error"])
        self.assertEqual(event["path"], str(self.path))

    def test_corrupt(self) -> None:
        # A corrupt file is read as empty, said once, and replaced on the
        # next change.
        self.path.parent.mkdir(parents=True)
        for text in ("{not json", "[]", '{"format": 2, "nonces": []}', "\xff"):
            self.path.write_text(text, encoding="latin-1")
            with capturedLogs() as events:
                self.assertIsNone(self.store.get(KEY))
            self.assertEqual(len(events), 1, text)
            self.assertEqual(events[0]["path"], str(self.path))
        with capturedLogs():
            nonce = self.store.nonceFor(KEY)
        self.assertEqual(NonceStore(self.path).get(KEY), nonce)

    def test_badEntries(self) -> None:
        # A bad entry is skipped; the good ones are kept.
        good = bytes(range(12))
        self.store.remember(KEY, good)
        document = json.loads(self.path.read_text())
        entry = document["nonces"][0]
        document["nonces"] = [
            {**entry, "nonce": "00"},
            {**entry, "nonce": "zz"},
            {**entry, "transport": "sctp"},
            {**entry, "internalPort": "7000"},
            {**entry, "gateway": "nowhere"},
            {"nonce": good.hex()},
            "text",
            entry,
        ]
        self.path.write_text(json.dumps(document))
        with capturedLogs() as events:
            self.assertEqual(self.store.keys(), [KEY])
        self.assertEqual(len(events), 7)
        self.assertEqual(self.store.get(KEY), good)

    def test_unreadable(self) -> None:
        # A path that cannot be read (here a directory) is read as empty,
        # and a nonce still made for this process.
        self.path.mkdir(parents=True)
        with capturedLogs() as events:
            nonce = self.store.nonceFor(KEY)
            self.assertEqual(self.store.nonceFor(KEY), nonce)
        self.assertTrue(events)
        self.assertTrue(all(event["path"] == str(self.path) for event in events))


_WRITER = """
import sys
from ipaddress import IPv4Address
from pathlib import Path
from twisted_natpmp._types import Transport
from twisted_natpmp.pcp._nonces import NonceKey, NonceStore

store = NonceStore(Path(sys.argv[1]))
first = int(sys.argv[2])
for port in range(first, first + 25):
    key = NonceKey(IPv4Address("10.77.0.1"), Transport.UDP, port)
    print(port, store.nonceFor(key).hex())
"""


class ConcurrencyTests(SynchronousTestCase):
    def test_processesKeepEachOthersNonces(self) -> None:
        # Processes that map different ports at once lose none of each
        # other's nonces (each change is locked read-modify-write).
        path = Path(self.mktemp()) / "pcp-nonces.json"
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path), str(first)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for first in (1000, 2000, 3000, 4000)
        ]
        made: dict[int, str] = {}
        for writer in writers:
            out, _ = writer.communicate(timeout=60)
            self.assertEqual(writer.returncode, 0)
            for line in out.splitlines():
                port, nonce = line.split()
                made[int(port)] = nonce
        store = NonceStore(path)
        kept = {key.internalPort: store.get(key) for key in store.keys()}
        self.assertEqual(len(made), 100)
        self.assertEqual(
            {port: nonce.hex() for port, nonce in kept.items() if nonce}, made
        )
