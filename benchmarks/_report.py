"""
Figures: what a benchmark measured, printed for a person and written as
JSON for a program.

A figure is a value with a unit.  A ratio also names the two things it
compares (C{numerator} / C{denominator}).  A figure may carry a target
(e.g. "<= 3"), and then says whether the value met it; a missed target is
reported, never raised.  A figure that could not be measured has no value
and says why (C{reason}); no number is ever made up.
"""

from __future__ import annotations

import json
import operator
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from . import _cpus

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Target:
    """
    What a figure should be: C{value OP threshold}, e.g. C{Target("<=", 3)}.
    """

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARISONS:
            raise ValueError(f"unknown comparison {self.op!r}")

    def metBy(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Figure:
    """
    One measured (or unmeasurable) number.

    @ivar name: a stable dotted identifier, e.g. C{"codec.MapRequest.rate"}.
    @ivar value: the number, or L{None} when it was not measured.
    @ivar unit: what the number counts, e.g. C{"messages/s"} or C{"x"}.
    @ivar label: a short description for a person.
    @ivar numerator: for a ratio, the thing divided.
    @ivar denominator: for a ratio, the thing divided by.
    @ivar target: what the value should be, if the issue sets a target.
    @ivar reason: why there is no value.
    @ivar note: anything a reader needs to interpret the value.
    """

    name: str
    value: float | None
    unit: str
    label: str
    numerator: str | None = None
    denominator: str | None = None
    target: Target | None = None
    reason: str | None = None
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def isRatio(self) -> bool:
        return self.numerator is not None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.target.metBy(self.value)

    def toJSON(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "label": self.label,
            "measured": self.value is not None,
        }
        if self.isRatio:
            result["kind"] = "ratio"
            result["numerator"] = self.numerator
            result["denominator"] = self.denominator
        else:
            result["kind"] = "value"
        if self.target is not None:
            result["target"] = {
                "op": self.target.op,
                "threshold": self.target.threshold,
                "text": str(self.target),
            }
            result["met"] = self.met
        if self.reason is not None:
            result["reason"] = self.reason
        if self.note is not None:
            result["note"] = self.note
        if self.details:
            result["details"] = self.details
        return result


def ratio(
    name: str,
    numerator: tuple[str, float | None],
    denominator: tuple[str, float | None],
    label: str,
    target: Target | None = None,
    note: str | None = None,
) -> Figure:
    """
    The ratio of two measured values, each given as C{(what, value)}; when
    either is missing the ratio is not measured, and says which is missing.
    """
    (topName, top), (bottomName, bottom) = numerator, denominator
    missing = [what for what, v in (numerator, denominator) if not v]
    value = None if missing else top / bottom  # type: ignore[operator]
    return Figure(
        name,
        value,
        "x",
        label,
        numerator=topName,
        denominator=bottomName,
        target=target,
        reason=f"no measurement of {' or '.join(missing)}" if missing else None,
        note=note,
    )


def notMeasured(name: str, unit: str, label: str, reason: str) -> Figure:
    """
    A figure that could not be measured, and why.
    """
    return Figure(name, None, unit, label, reason=reason)


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 1:
        return f"{value:.2f} {unit}"
    return f"{value:.4g} {unit}"


def describe(figure: Figure) -> str:
    """
    One line (or two) for a person.
    """
    if figure.value is None:
        text = f"  {figure.label:<66} not measured: {figure.reason}"
    else:
        text = f"  {figure.label:<66} {_number(figure.value, figure.unit):>20}"
    if figure.target is not None:
        verdict = {True: "MET", False: "MISSED", None: "-"}[figure.met]
        text += f"   target {figure.target}: {verdict}"
    if figure.note:
        text += f"\n  {'':<66}   ({figure.note})"
    return text


class Report:
    """
    Collects figures by section, printing each as it arrives.
    """

    def __init__(self, out: IO[str] = sys.stdout) -> None:
        self.sections: list[tuple[str, list[Figure]]] = []
        self._out = out

    def section(self, title: str) -> None:
        self.sections.append((title, []))
        self._out.write(f"\n{title}\n")
        self._out.flush()

    def add(self, figures: Iterable[Figure]) -> None:
        for figure in figures:
            self.sections[-1][1].append(figure)
            self._out.write(describe(figure) + "\n")
        self._out.flush()

    @property
    def figures(self) -> list[Figure]:
        return [f for _, figures in self.sections for f in figures]

    def toJSON(self, quick: bool, argv: Sequence[str]) -> dict[str, Any]:
        return {
            "command": ["python", "-m", "benchmarks", *argv],
            "quick": quick,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": _cpus.describe(),
            "sections": [title for title, _ in self.sections],
            "figures": [f.toJSON() for f in self.figures],
        }

    def write(self, path: str, quick: bool, argv: Sequence[str]) -> None:
        with open(path, "w") as f:
            json.dump(self.toJSON(quick, argv), f, indent=2)
            f.write("\n")
