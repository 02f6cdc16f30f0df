# -*- test-case-name: tests.cli.test_run -*-
"""
Where the C{natpmp} command's outcome goes: a line on standard output (or
one on standard error for a failure), or with C{--json} exactly one JSON
object on standard output, whatever happens; and, while it waits, its
progress for a person at a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .._types import IPAddress, ProtocolName

#: The attempt from which a person waiting at a terminal is told that the
#: gateway has not answered yet: the 4th is sent 1.75 s after the first
#: (RFC 6886 s3.1), and the 5th to 9th follow at 3.75, 7.75 ... 63.75 s.
PROGRESS_FROM_ATTEMPT = 4


@dataclass(frozen=True)
class Outcome:
    """
    What a command found: a line for a person and a JSON object.
    """

    text: str
    record: dict[str, object]


class Output:
    """
    Where a command's outcome goes: a line on standard output (or one on
    standard error for a failure), or with C{--json} exactly one JSON
    object on standard output, whatever happens.

    @ivar header: the fields every JSON object starts with: the command and
        the gateway asked (once known).
    @ivar finished: the outcome has been written; nothing more will be.
    """

    def __init__(
        self,
        stdout: IO[str],
        stderr: IO[str],
        *,
        json: bool,
        command: str | None,
    ) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._json = json
        self.header: dict[str, object] = {"command": command, "gateway": None}
        self._warnings: list[str] = []
        self.finished = False

    @property
    def interactive(self) -> bool:
        """
        Is a person watching standard error (a terminal)?
        """
        isatty = getattr(self._stderr, "isatty", None)
        return bool(isatty is not None and isatty())

    def progress(self, message: str) -> None:
        """
        Tell a person at a terminal how the wait goes; nothing otherwise.
        """
        if self.interactive:
            print(f"natpmp: {message}", file=self._stderr, flush=True)

    def retryObserver(self, gateway: IPAddress) -> Callable[[str, int, float], None]:
        """
        A retry observer for a client (its C{addRetryObserver}) that tells a
        person at a terminal, from the L{PROGRESS_FROM_ATTEMPT}th attempt
        on, that C{gateway} has not answered yet.
        """

        def stillTrying(request: str, attempt: int, elapsed: float) -> None:
            if attempt >= PROGRESS_FROM_ATTEMPT:
                self.progress(
                    f"no answer from gateway {gateway} yet; still trying"
                    f" (attempt {attempt}, {round(elapsed, 2):g} s)"
                )

        return stillTrying

    def warn(self, message: str) -> None:
        """
        A warning: a line on standard error, and a C{warnings} field in
        the JSON object.
        """
        self._warnings.append(message)
        print(f"natpmp: warning: {message}", file=self._stderr)

    def succeed(
        self,
        outcome: Outcome,
        gateway: IPAddress,
        protocol: ProtocolName = ProtocolName.NATPMP,
    ) -> None:
        """
        Success: the outcome's line (naming C{gateway}, and C{protocol} if it
        is PCP) or its JSON object on standard output.
        """
        self._finish()
        if self._json:
            self._writeJSON(outcome.record)
        else:
            via = ", PCP" if protocol is ProtocolName.PCP else ""
            print(f"{outcome.text} (gateway {gateway}{via})", file=self._stdout)

    def fail(
        self,
        message: str,
        fields: dict[str, object] | None = None,
        *,
        line: str | None = None,
    ) -> None:
        """
        A failure: one line on standard error (C{line}, by default
        C{"natpmp: "} and C{message}), and with C{--json} the object with
        C{error} set to C{message}, and C{fields}.
        """
        self._finish()
        print(f"natpmp: {message}" if line is None else line, file=self._stderr)
        if self._json:
            self._writeJSON({"error": message, **(fields or {})})

    def _finish(self) -> None:
        if self.finished:
            raise RuntimeError("natpmp: the outcome was already written")
        self.finished = True

    def _writeJSON(self, record: dict[str, object]) -> None:
        extra: dict[str, object] = (
            {"warnings": self._warnings} if self._warnings else {}
        )
        print(json.dumps({**self.header, **record, **extra}), file=self._stdout)
