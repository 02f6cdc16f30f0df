"""
Packaging: one version everywhere, the licence metadata, and twistd finding
the plugins of the installed package from outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import twisted
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import twisted_natpmp
from twisted_natpmp._version import __version__, versionLine

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, Any]:
    """
    The parsed C{pyproject.toml}.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        with open(ROOT / "pyproject.toml", "rb") as f:
            parsed: dict[str, Any] = tomllib.load(f)
        return parsed
    raise SkipTest("reading pyproject.toml needs tomllib (Python 3.11)")


def installedVersion() -> str:
    """
    The version of the installed distribution.

    @raise SkipTest: if twisted-natpmp is not installed (tests run from a
        bare checkout).
    """
    try:
        return metadata.version("twisted-natpmp")
    except metadata.PackageNotFoundError:
        raise SkipTest("twisted-natpmp is not installed") from None


class VersionTests(SynchronousTestCase):
    """
    The version lives in L{twisted_natpmp._version}; everything else reads
    it from there.
    """

    def test_package(self) -> None:
        self.assertEqual(twisted_natpmp.__version__, __version__)

    def test_metadata(self) -> None:
        """
        The metadata's version is read from L{twisted_natpmp._version}; the
        installed one matches it (after a version change, reinstall).
        """
        self.assertEqual(pyproject()["project"]["dynamic"], ["version"])
        self.assertEqual(
            pyproject()["tool"]["setuptools"]["dynamic"]["version"],
            {"attr": "twisted_natpmp._version.__version__"},
        )
        self.assertEqual(installedVersion(), __version__)

    def test_versionLine(self) -> None:
        """
        L{versionLine} names the program, its version and Twisted's.
        """
        self.assertEqual(
            versionLine("natpmp"),
            f"natpmp {__version__} (Twisted {twisted.__version__})",
        )

    def test_plugins(self) -> None:
        """
        Each twistd plugin's description ends with the version.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        for name in ("natpmp", "natpmp-gateway"):
            self.assertTrue(
                makers[name].description.endswith(f" (twisted-natpmp {__version__})."),
                makers[name].description,
            )

    def test_news(self) -> None:
        """
        NEWS.rst has a section for this version.
        """
        news = (ROOT / "NEWS.rst").read_text(encoding="utf-8").splitlines()
        self.assertTrue(any(line.startswith(f"{__version__} (") for line in news))


class LicenseTests(SynchronousTestCase):
    def test_metadata(self) -> None:
        """
        The licence is an SPDX expression with its file (PEP 639), built by a
        setuptools that understands it.
        """
        project = pyproject()
        self.assertEqual(project["project"]["license"], "MIT")
        self.assertEqual(project["project"]["license-files"], ["LICENSE"])
        self.assertIn("setuptools>=77.0.3,<85", project["build-system"]["requires"])
        self.assertTrue(
            (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
        )

    def test_installed(self) -> None:
        """
        The installed distribution carries the licence expression and file.
        """
        installedVersion()
        distribution = metadata.distribution("twisted-natpmp")
        self.assertEqual(distribution.metadata["License-Expression"], "MIT")
        self.assertEqual(distribution.metadata.get_all("License-File"), ["LICENSE"])


class InstalledPluginTests(SynchronousTestCase):
    """
    twistd finds the plugins of the installed package (editable or not)
    when run outside the checkout, with nothing of the checkout on its path.
    """

    def test_twistdHelp(self) -> None:
        installedVersion()
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONSAFEPATH")
        }
        with tempfile.TemporaryDirectory() as outside:
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from twisted.scripts.twistd import run; run()",
                    "--help",
                ],
                cwd=outside,
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )
        self.assertEqual(result.returncode, 0, result.stderr)
        names = {
            line.split()[0] for line in result.stdout.splitlines() if line[:4] == "    "
        }
        self.assertIn("natpmp", names, result.stdout)
        self.assertIn("natpmp-gateway", names, result.stdout)


def _packagesFound() -> set[str]:
    """
    The packages the wheel holds: setuptools' namespace finder run, as the
    build runs it, with C{pyproject.toml}'s C{packages.find} options.
    """
    # (setuptools carries no annotations here.)
    from setuptools import find_namespace_packages  # type: ignore[import-untyped]

    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    return {
        name
        for name in find_namespace_packages(str(ROOT), include=find["include"])
        if "__pycache__" not in name
    }


class WheelContentsTests(SynchronousTestCase):
    """
    The wheel holds the package with every subpackage and the dropin; the
    checkout's tests, benchmarks and tools stay in the sdist.
    """

    def test_subpackages(self) -> None:
        """
        Every directory of Python modules under C{twisted_natpmp} is a
        package of the wheel.
        """
        found = _packagesFound()
        expected = {
            ".".join(path.relative_to(ROOT).parent.parts)
            for path in (ROOT / "twisted_natpmp").rglob("*.py")
            if "__pycache__" not in path.parts
        }
        self.assertIn("twisted_natpmp.natpmp", expected)
        self.assertEqual(expected - found, set())
        self.assertIn("twisted.plugins", found)

    def test_notShipped(self) -> None:
        """
        Neither the namespace lab (C{tools}) nor the tests or the benchmarks
        are in the wheel, nor the C{twisted} and C{twisted.plugins} of
        Twisted itself (the dropin directory is a namespace package).
        """
        found = _packagesFound()
        for top in ("tools", "tests", "benchmarks", "docs", "examples"):
            self.assertEqual({n for n in found if n.split(".")[0] == top}, set())
        self.assertNotIn("twisted", found)

    def test_sdistCarriesTools(self) -> None:
        """
        The sdist carries the lab (C{tools}), the tests and the benchmarks,
        so that the test suite runs from it.
        """
        grafts = {
            line.split()[1]
            for line in (ROOT / "MANIFEST.in").read_text().splitlines()
            if line.startswith("graft ")
        }
        self.assertLessEqual({"tools", "tests", "benchmarks", "examples"}, grafts)
