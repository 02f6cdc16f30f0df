"""
Tests for the benchmarks (C{python -m benchmarks}): a C{--quick} run works
and writes well-formed figures.  Nothing here asserts anything about time:
the numbers of a quick run on a shared machine mean little.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from benchmarks._report import Figure, Target, notMeasured, ratio
from benchmarks.nftables import QUICK_TABLES
from tools.netlab import missingPrerequisites
from tools.netlab.forwarding import missingForwarding

ROOT = Path(__file__).resolve().parent.parent
#: Bounds every run of the benchmarks (a quick run takes about 10 s).
RUN_TIMEOUT = 120.0
#: Figures that need only loopback and the dev extra: always measured.
ALWAYS_MEASURED = (
    "codec.MapResponse.rate",
    "codec.MapResponse.cost_ratio",
    "client.ours.rate",
    "client.py_natpmp.rate",
    "client.bare.rate",
    "client.ours_vs_py_natpmp",
    "server.memory.bytes_per_mapping",
)
SECTION_PREFIXES = (
    "codec.",
    "client.",
    "server.",
    "service.",
    "peers.",
    "reliability.",
    "pcp.",
    "pcpgateway.",
    "nftables.",
)
#: Section 9's rates, each measured at every quick table size wherever the
#: forwarding lab can run.
NFTABLES_RATES = ("ours", "ours.pcp", "ours.inflight64", "miniupnpd")
#: Units of counts of things that should not happen: 0 is their best value.
COUNT_UNITS = ("tracebacks", "mappings", "bytes")


def runBenchmarks(*args: str, env: dict[str, str] | None = None) -> Any:
    """
    Run C{python -m benchmarks --quick --json FILE ARGS} in the checkout;
    return the completed process and the parsed JSON (L{None} if none was
    written).
    """
    directory = tempfile.mkdtemp(prefix="test-benchmarks-")
    try:
        path = os.path.join(directory, "figures.json")
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--quick", "--json", path, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env=env,
            check=False,
        )
        figures = None
        if os.path.exists(path):
            with open(path) as f:
                figures = json.load(f)
        return done, figures
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@cache
def quickRun() -> Any:
    """
    One full quick run, shared by the tests that read it.
    """
    return runBenchmarks()


class QuickRunTests(SynchronousTestCase):
    """
    C{python -m benchmarks --quick --json FILE}: every section runs and
    every figure is well formed.
    """

    def setUp(self) -> None:
        self.done, self.report = quickRun()

    def test_exitsCleanly(self) -> None:
        """
        The run exits 0, prints every section, and writes the JSON file.
        """
        self.assertEqual(self.done.returncode, 0, self.done.stderr)
        for number in range(1, 7):
            self.assertIn(f"\n{number}. ", self.done.stdout)
        self.assertIsNotNone(self.report)
        self.assertIs(self.report["quick"], True)

    def test_figuresWellFormed(self) -> None:
        """
        Every figure has a unique name, a unit and a value; the value is a
        finite positive number (or 0, for a count of things that should not
        happen), or L{None} with the reason it was not measured.  A figure
        with a target says whether it met it.
        """
        figures = self.report["figures"]
        self.assertGreater(len(figures), 30)
        names = [f["name"] for f in figures]
        self.assertEqual(len(names), len(set(names)), names)
        for figure in figures:
            with self.subTest(figure=figure["name"]):
                self.assertTrue(figure["unit"])
                self.assertTrue(figure["label"])
                value = figure["value"]
                if value is None:
                    self.assertIs(figure["measured"], False)
                    self.assertTrue(figure["reason"])
                else:
                    self.assertIs(figure["measured"], True)
                    self.assertTrue(math.isfinite(value), value)
                    if figure["unit"] in COUNT_UNITS:
                        self.assertGreaterEqual(value, 0)
                    else:
                        self.assertGreater(value, 0)
                if "target" in figure:
                    self.assertIn(figure["target"]["op"], (">=", "<="))
                    if value is None:
                        self.assertIsNone(figure["met"])
                    else:
                        self.assertIn(figure["met"], (True, False))

    def test_ratiosNameBothSides(self) -> None:
        """
        Every ratio names the two things it compares, and they differ.
        """
        ratios = [f for f in self.report["figures"] if f["kind"] == "ratio"]
        self.assertGreater(len(ratios), 10)
        for figure in ratios:
            with self.subTest(figure=figure["name"]):
                self.assertEqual(figure["unit"], "x")
                self.assertTrue(figure["numerator"])
                self.assertTrue(figure["denominator"])
                self.assertNotEqual(figure["numerator"], figure["denominator"])

    def test_everySection(self) -> None:
        """
        Each section's figures are there, measured or not.
        """
        names = [f["name"] for f in self.report["figures"]]
        for prefix in SECTION_PREFIXES:
            self.assertTrue(any(n.startswith(prefix) for n in names), prefix)

    def test_loopbackFiguresMeasured(self) -> None:
        """
        What needs only loopback and the dev extra is always measured.
        """
        byName = {f["name"]: f for f in self.report["figures"]}
        for name in ALWAYS_MEASURED:
            self.assertIsNotNone(byName[name]["value"], byName[name].get("reason"))

    def test_nftablesMeasured(self) -> None:
        """
        Where the forwarding lab can run (root, every peer tool, C{nft} and
        C{conntrack}) or must (C{NATPMP_INTEROP_REQUIRED}), section 9's
        rates for our gateway (NAT-PMP and PCP) and miniupnpd are measured
        at each quick size: a failure there (which the section reports as a
        figure not measured, "failed: ...") fails this test.
        """
        missing = missingPrerequisites() + missingForwarding()
        if missing and os.environ.get("NATPMP_INTEROP_REQUIRED", "") in ("", "0"):
            raise SkipTest("the forwarding lab needs " + ", ".join(missing))
        byName = {f["name"]: f for f in self.report["figures"]}
        for who in NFTABLES_RATES:
            for size in QUICK_TABLES:
                name = f"nftables.{who}.rate.{size}"
                with self.subTest(figure=name):
                    self.assertIn(name, byName)
                    figure = byName[name]
                    self.assertFalse(
                        (figure.get("reason") or "").startswith("failed:"),
                        figure.get("reason"),
                    )
                    self.assertIsNotNone(figure["value"], figure.get("reason"))


class MissingPeerTests(SynchronousTestCase):
    """
    A peer that cannot run makes its figures say so and why, never a
    number.
    """

    def test_noPeerTools(self) -> None:
        """
        With no natpmpc, ip, miniupnpd or nft on the C{PATH}, their figures
        (and PCP's, measured on miniupnpd, and those of our gateway over
        nftables) are not measured, and their reasons name what is missing.
        """
        env = dict(os.environ, PATH=os.path.dirname(sys.executable))
        done, report = runBenchmarks("--only", "client,miniupnpd,pcp,nftables", env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        byName = {f["name"]: f for f in report["figures"]}
        natpmpc = byName["client.natpmpc.rate"]
        self.assertIsNone(natpmpc["value"])
        self.assertIn("natpmpc", natpmpc["reason"])
        self.assertIsNone(byName["client.ours_vs_natpmpc"]["value"])
        self.assertIsNotNone(byName["client.ours.rate"]["value"])
        # Both gateways of figure 7 (miniupnpd, and ours for 1,000 ports)
        # share the lab: neither is measured without it.
        self.assertIn("pcp.vs_natpmp", byName)
        self.assertIn("pcp.ours.vs_natpmp", byName)
        for prefix in ("peers.", "pcp.", "nftables."):
            peers = [f for f in report["figures"] if f["name"].startswith(prefix)]
            self.assertTrue(peers, prefix)
            for figure in peers:
                self.assertIsNone(figure["value"])
                self.assertRegex(figure["reason"], "needs .*(root|'ip'|'miniupnpd')")


class CommandLineTests(SynchronousTestCase):
    def test_unknownSection(self) -> None:
        """
        An unknown section is named in a one-line message; exit code 2, no
        traceback.
        """
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--only", "codec,nosuch"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("'nosuch'", done.stderr)
        self.assertNotIn("Traceback", done.stderr)


class ReportTests(SynchronousTestCase):
    """
    L{benchmarks._report}: targets, ratios and unmeasured figures.
    """

    def test_targets(self) -> None:
        self.assertTrue(Target("<=", 3).metBy(3))
        self.assertFalse(Target("<=", 3).metBy(3.01))
        self.assertTrue(Target(">=", 1.2).metBy(1.5))
        self.assertFalse(Target(">=", 1.2).metBy(1.1))
        self.assertRaises(ValueError, Target, "<", 1)

    def test_ratio(self) -> None:
        figure = ratio("r", ("a", 6.0), ("b", 2.0), "a / b", Target(">=", 2))
        self.assertEqual((figure.value, figure.met), (3.0, True))
        self.assertEqual(
            {k: figure.toJSON()[k] for k in ("kind", "numerator", "denominator")},
            {"kind": "ratio", "numerator": "a", "denominator": "b"},
        )

    def test_ratioOfMissing(self) -> None:
        """
        A ratio with a side that was not measured is not measured either, and
        says which side is missing; it never guesses.
        """
        figure = ratio("r", ("a", 6.0), ("b", None), "a / b", Target(">=", 2))
        self.assertIsNone(figure.value)
        self.assertIsNone(figure.met)
        self.assertIn("b", figure.reason or "")
        self.assertIs(figure.toJSON()["measured"], False)

    def test_notMeasured(self) -> None:
        figure = notMeasured("x", "s", "label", "no router here").toJSON()
        self.assertEqual(
            (figure["value"], figure["measured"], figure["reason"]),
            (None, False, "no router here"),
        )

    def test_measured(self) -> None:
        figure = Figure("x", 2.5, "s", "label", target=Target("<=", 3)).toJSON()
        self.assertEqual(
            (figure["value"], figure["measured"], figure["kind"], figure["met"]),
            (2.5, True, "value", True),
        )
        self.assertNotIn("reason", figure)
