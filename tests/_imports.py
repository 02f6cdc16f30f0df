"""
What importing a module pulls in, seen from a fresh interpreter: twistd
imports every plugin to list them, so those imports must stay cheap.
"""

from __future__ import annotations

import subprocess
import sys


def modulesLoadedBy(module: str) -> set[str]:
    """
    Import C{module} in a fresh interpreter and return the names of every
    module loaded by then.
    """
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(output.split())
