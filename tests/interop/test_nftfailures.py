"""
Our gateway's nftables backend when nftables is slow or fails: the real
C{nft} behind a wrapper script given as C{--nft}, which delays each batch
or fails the one batch that names a given port, in the router namespace of
a forwarding lab (L{tests.interop._nftlab}).
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted_natpmp import Transport
from twisted_natpmp.errors import GatewayError

from ._lab import LAN_HOSTS
from ._nftlab import NftGatewayTestCase

TCP, UDP = Transport.TCP, Transport.UDP
LAN1, LAN2 = LAN_HOSTS

#: Runs the real nft on its standard input after C{DELAY} seconds; fails
#: (exit 1, as nft does) the first batch that names port C{PORT} while the
#: file C{FLAG} exists, and removes the file.
_WRAPPER = """\
#!/bin/sh
batch=$(cat)
sleep {delay}
if [ -e {flag} ]; then
    case "$batch" in
        *" {port} "*) rm -f {flag}; echo "Error: refused by the test" >&2; exit 1;;
    esac
fi
printf '%s\\n' "$batch" | exec {nft} "$@"
"""


class SlowOrFailingNftTests(NftGatewayTestCase):
    """
    The gateway over an C{nft} that is slow, or that fails once.
    """

    def wrapper(self, delay: float = 0.0, port: int = 0) -> str:
        """
        Write the wrapper script (L{_WRAPPER}) into the test's directory;
        return its path, for C{--nft}.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        flag = directory / "fail-once"
        if port:
            flag.write_text("")
        script = directory / "nft"
        script.write_text(
            _WRAPPER.format(delay=delay, flag=flag, port=port, nft="/usr/sbin/nft")
        )
        script.chmod(0o755)
        self.flag = flag
        return str(script)

    async def test_busyGatewayStillAnswers(self) -> None:
        """
        While a batch is being written (each takes 1.5 s here), the
        gateway still answers other requests: the other host's external
        address request is answered before the first host's mapping, which
        is answered once its batch has committed, and then forwards.
        """
        await self.startGateway(f"--nft={self.wrapper(delay=1.5)}")
        mapping = self.client(0).addMapping(TCP, 8080, externalPort=18950)
        address = self.client(1).externalAddress()
        self.assertEqual(str(await address), "192.0.3.1")
        self.assertFalse(mapping.called)
        self.assertEqual((await mapping).externalPort, 18950)
        await self.assertForwards("tcp", 18950, LAN1)

    async def test_failureIsAResultCode(self) -> None:
        """
        A batch that nft refuses is answered with an error result (the
        client's request fails with a L{GatewayError} carrying the code),
        the gateway keeps running, and its table does not keep the mapping
        the kernel refused: the other host is then granted that very port,
        and it forwards there.
        """
        await self.startGateway(f"--nft={self.wrapper(port=18960)}")
        try:
            await self.client(0).addMapping(UDP, 8080, externalPort=18960)
        except GatewayError as e:
            self.assertIn(e.resultCode, (3, 4), e)
        else:
            self.fail("a mapping the kernel refused was granted")
        self.assertFalse(os.path.exists(self.flag))
        self.assertGatewayRuns()
        self.assertEqual(self.lab.mapElements(), {})
        await self.assertClosed("udp", 18960)

        granted = await self.client(1).addMapping(UDP, 8080, externalPort=18960)
        self.assertEqual(granted.externalPort, 18960)
        await self.assertForwards("udp", 18960, LAN2)


class FirewallReloadTests(NftGatewayTestCase):
    """
    The gateway after the router's ruleset is flushed, as a firewall reload
    does (Debian's C{/etc/nftables.conf} starts with C{flush ruleset}).
    """

    async def test_remapAfterFlush(self) -> None:
        """
        After C{nft flush ruleset} the mapping no longer forwards; the
        client's next request finds the table gone: the gateway makes it
        afresh (a new epoch, announced) and grants the request there, and
        the port forwards again.
        """
        await self.startGateway()
        client = self.client(0)
        await client.addMapping(TCP, 8080, externalPort=18970, lifetime=600)
        await self.assertForwards("tcp", 18970, LAN1)
        self.lab.check(self.lab.router, ["nft", "flush", "ruleset"])
        await self.assertClosed("tcp", 18970)
        again = await client.addMapping(TCP, 8080, externalPort=18970, lifetime=600)
        self.assertEqual(again.externalPort, 18970)
        self.assertEqual(set(self.lab.mapElements()), {("tcp", 18970)})
        await self.assertForwards("tcp", 18970, LAN1)
        self.assertGatewayRuns()
