"""
Build the API documentation with pydoctor, the way Twisted builds its own:
C{python docs/apidocs.py} writes C{build/apidocs/index.html}, and fails on
any pydoctor warning (a broken C{L{...}} link, a bad epytext field).

pydoctor's settings are in the C{[tool.pydoctor]} table of
C{pyproject.toml}.  Links to Python's and Twisted's own documentation come
from Sphinx inventories; CI has no network to download the published ones,
so this script makes them here first: Python's from the names in
C{builtins} and a few standard modules, Twisted's by running pydoctor over
the installed Twisted.  They are kept in C{build/apidocs-inventories/} and
made again only when the Python or Twisted version changes.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import subprocess
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = ROOT / "build" / "apidocs-inventories"

#: Standard modules whose public classes and functions docstrings may link to.
STANDARD_MODULES = (
    "argparse",
    "collections.abc",
    "dataclasses",
    "enum",
    "ipaddress",
    "json",
    "random",
    "socket",
    "struct",
    "time",
    "typing",
)

#: Built-in types documented in C{library/stdtypes.html} rather than with
#: the built-in functions.
STANDARD_TYPES = frozenset(
    "bytearray bytes dict frozenset list memoryview range set str tuple".split()
)


def inventory(project: str, version: str, entries: Iterable[str]) -> bytes:
    """
    A Sphinx objects inventory (version 2).

    @param project: the documented project's name.
    @param version: its version.
    @param entries: lines of C{"name domain:role priority uri display"}.
    @return: the file's bytes.
    """
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{entry}\n" for entry in entries)
    return header.encode() + zlib.compress(body.encode())


def pythonEntries() -> Iterator[str]:
    """
    Inventory lines for the built-in names and the public classes and
    functions of L{STANDARD_MODULES}, as docs.python.org places them.
    """
    for name in dir(builtins):
        if name.startswith("_"):
            continue
        value = getattr(builtins, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            yield f"{name} py:exception 1 library/exceptions.html#$ -"
        elif isinstance(value, type):
            page = "stdtypes" if name in STANDARD_TYPES else "functions"
            yield f"{name} py:class 1 library/{page}.html#$ -"
        elif callable(value):
            yield f"{name} py:function 1 library/functions.html#$ -"
        else:
            yield f"{name} py:data 1 library/constants.html#$ -"
    for moduleName in STANDARD_MODULES:
        module = importlib.import_module(moduleName)
        page = f"library/{moduleName}.html"
        yield f"{moduleName} py:module 1 {page}#module-$ -"
        for name in getattr(module, "__all__", dir(module)):
            value = getattr(module, name, None)
            if name.startswith("_") or inspect.ismodule(value) or value is None:
                continue
            role = "class" if isinstance(value, type) else "function"
            if not (role == "class" or callable(value)):
                role = "data"
            yield f"{moduleName}.{name} py:{role} 1 {page}#$ -"


def makeInventories() -> list[str]:
    """
    Make (or reuse) the Python and Twisted inventories.

    @return: pydoctor's C{--intersphinx-file} arguments for them.
    """
    import twisted

    INVENTORIES.mkdir(parents=True, exist_ok=True)
    python = ".".join(map(str, sys.version_info[:2]))
    pythonFile = INVENTORIES / f"python-{python}.inv"
    if not pythonFile.exists():
        pythonFile.write_bytes(inventory("Python", python, pythonEntries()))
    twistedVersion = twisted.__version__
    twistedDir = INVENTORIES / f"twisted-{twistedVersion}"
    twistedFile = twistedDir / "objects.inv"
    if not twistedFile.exists():
        source = Path(twisted.__file__).parent
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "pydoctor",
                "--quiet",
                "--make-intersphinx",
                "--project-name=Twisted",
                f"--project-version={twistedVersion}",
                f"--project-base-dir={source.parent}",
                f"--html-output={twistedDir}",
                str(source),
            ],
            capture_output=True,
            text=True,
            cwd=INVENTORIES,
        )
        # Twisted's own docstrings are not ours to judge: its warnings are
        # shown only if no inventory came of it.
        if not twistedFile.exists():
            sys.stderr.write(made.stdout + made.stderr)
            raise SystemExit(f"pydoctor made no inventory of Twisted {source}")
    return [
        f"--intersphinx-file={pythonFile}::https://docs.python.org/{python}",
        f"--intersphinx-file={twistedFile}"
        f"::https://docs.twisted.org/en/twisted-{twistedVersion}/api",
    ]


def main(argv: list[str]) -> int:
    """
    Build the documentation; C{argv} is passed on to pydoctor.

    @return: pydoctor's exit status.
    """
    sys.path.insert(0, str(ROOT))
    from twisted_natpmp._version import __version__

    os.chdir(ROOT)  # where pydoctor finds pyproject.toml
    command = [
        sys.executable,
        "-m",
        "pydoctor",
        f"--project-version={__version__}",
        *makeInventories(),
        *argv,
        "twisted_natpmp",
    ]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
