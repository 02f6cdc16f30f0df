"""
Tests for the README's section on the C{natpmp:} endpoint: each description
it lists means what it says, and its example error is the real message.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

from twisted.trial.unittest import SynchronousTestCase

from twisted_natpmp.endpoint import _endpoint

from ..test_examples import README
from .test_parser import parse, settings

#: What each description in the README's list means: the endpoint's own
#: options (L{settings}) and the wrapped endpoint's description, as handed
#: to C{serverFromString}.
README_EXAMPLES: dict[str, tuple[tuple[object, ...], str]] = {
    "natpmp:tcp:8080": ((None, "auto", 7200, None, 0.0, None), "tcp:8080"),
    (
        "natpmp:gateway=192.168.1.1:lifetime=3600:externalPort=80"
        ":tcp:8080:interface=0.0.0.0"
    ): (
        (IPv4Address("192.168.1.1"), "auto", 3600, 80, 0.0, None),
        "tcp:8080:interface=0.0.0.0",
    ),
    "natpmp:tcp:8080:interface=0.0.0.0:gateway=192.168.1.1": (
        (IPv4Address("192.168.1.1"), "auto", 7200, None, 0.0, None),
        "tcp:8080:interface=0.0.0.0",
    ),
    "natpmp:natpmpGateway=192.168.1.1:natpmpProtocol=pcp:tcp:0": (
        (IPv4Address("192.168.1.1"), "pcp", 7200, None, 0.0, None),
        "tcp:0",
    ),
    r"natpmp:gateway=fe80\:\:1%eth0:protocol=pcp:tcp6:8080:interface=\:\:": (
        (IPv6Address("fe80::1%eth0"), "pcp", 7200, None, 0.0, None),
        r"tcp6:8080:interface=\:\:",
    ),
    r"natpmp:waitForMapping=10:ssl:8443:privateKey=C\:/keys/server.pem": (
        (None, "auto", 7200, None, 10.0, None),
        r"ssl:8443:privateKey=C\:/keys/server.pem",
    ),
    r"natpmp:lifetime=600:tcp\:8080\:interface\=127.0.0.1": (
        (None, "auto", 600, None, 0.0, None),
        "tcp:8080:interface=127.0.0.1",
    ),
    "natpmp:natpmpLifetime=600:myendpoint:8080:lifetime=5": (
        (None, "auto", 600, None, 0.0, None),
        "myendpoint:8080:lifetime=5",
    ),
}


def readmeDescriptions() -> list[str]:
    """
    The descriptions listed in the README's section on the endpoint: each
    line of its first C{text} block, up to two spaces.
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("## Reachable from outside")
    )
    opening = lines.index("```text", start)
    closing = lines.index("```", opening)
    return [line.split("  ")[0] for line in lines[opening + 1 : closing]]


class ReadmeExamplesTests(SynchronousTestCase):
    """
    The README's examples of descriptions mean what the README says.
    """

    def test_errorMessage(self) -> None:
        """
        The README's example of a bad value is refused with the message it
        shows.
        """
        text = " ".join(README.read_text(encoding="utf-8").split())
        section = text[text.index("## Reachable from outside") :]
        found = re.search(r"`(natpmp:[^`]*)` is refused with `([^`]*)`", section)
        assert found is not None
        error = self.assertRaises(ValueError, parse, found[1])
        self.assertEqual(str(error), found[2])

    def test_examples(self) -> None:
        made: list[str] = []

        def wrappedFromString(reactor: object, description: str) -> object:
            # Record the wrapped description; make no endpoint (an ssl: one
            # would read its key file).
            made.append(description)
            return object()

        self.patch(_endpoint, "serverFromString", wrappedFromString)
        descriptions = readmeDescriptions()
        self.assertEqual(sorted(descriptions), sorted(README_EXAMPLES))
        for description in descriptions:
            with self.subTest(description=description):
                endpoint, _ = parse(description)
                self.assertEqual(
                    (settings(endpoint), made[-1]), README_EXAMPLES[description]
                )
