"""
The tests keep no state of their own in the user's home: the mapper
service's and the CLI's tests use a temporary PCP nonce store, never the
per-user file (L{twisted_natpmp.pcp._nonces.defaultPath}).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

#: Representative tests that run the mapper service (in this process, with
#: PCP and NAT-PMP) and the C{natpmp} command (in process and as a
#: subprocess).
MODULES = (
    "tests.service.test_servicepcp",
    "tests.service.natpmp.test_start",
    "tests.test_negotiate",
    "tests.cli",
    "tests.service.natpmp.test_grants",
)

TIMEOUT = 120


class NoStateTests(SynchronousTestCase):
    def test_nothingUnderHome(self) -> None:
        """
        Run with C{HOME} and C{XDG_STATE_HOME} set to fresh empty
        directories, the tests in L{MODULES} pass and leave both empty.
        """
        base = Path(self.mktemp()).resolve()
        home, state, cwd = base / "home", base / "state", base / "cwd"
        for directory in (home, state, cwd):
            directory.mkdir(parents=True)
        env = dict(os.environ, HOME=str(home), XDG_STATE_HOME=str(state))
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        done = subprocess.run(
            [sys.executable, "-m", "twisted.trial", *MODULES],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr)
        written = sorted(str(path) for top in (home, state) for path in top.rglob("*"))
        self.assertEqual(written, [])
