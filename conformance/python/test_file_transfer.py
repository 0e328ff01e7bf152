"""File transfer through Tern (issue 6): XEP-0065 SOCKS5 bytestreams via the server's proxy on
proxy.localhost, and XEP-0047 in-band bytestreams routed between full JIDs, both with
slixmpp's own plugins, comparing the bytes received with the bytes sent."""

from __future__ import annotations

import asyncio
import hashlib
import os

from harness import run
from reliability_support import wait_until

A, B = "alice@localhost", "bob@localhost"


async def pair(h, *plugins):
    a = h.client(f"{A}/a", plugins=("xep_0030", *plugins))
    b = h.client(f"{B}/b", plugins=("xep_0030", *plugins))
    for c in (a, b):
        await c.start_session()
    return a, b


def test_socks5_bytestream_through_the_proxy_delivers_identical_bytes(server):
    async def t(h):
        a, b = await pair(h, "xep_0065")
        b.plugin["xep_0065"].auto_accept = True
        received = bytearray()
        b.add_event_handler("socks5_data", lambda d: received.extend(d))

        proxies = await a.plugin["xep_0065"].discover_proxies()
        assert "proxy.localhost" in {str(j) for j in proxies}, proxies
        sock = await a.plugin["xep_0065"].handshake(f"{B}/b")
        assert sock is not None, "handshake through proxy.localhost failed"

        data = os.urandom(4 * 1024 * 1024)
        for i in range(0, len(data), 64 * 1024):
            await sock.write(data[i:i + 64 * 1024])
        await wait_until(lambda: len(received) >= len(data), 60, "all bytes relayed",
                         lambda: f"{len(received)} of {len(data)}")
        assert len(received) == len(data)
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()

    run(t, server)


def test_in_band_bytestream_delivers_identical_bytes(server):
    async def t(h):
        a, b = await pair(h, "xep_0047")
        b.plugin["xep_0047"].auto_accept = True
        incoming = asyncio.get_running_loop().create_future()
        b.add_event_handler("ibb_stream_start", lambda s: incoming.done() or incoming.set_result(s))

        stream = await a.plugin["xep_0047"].open_stream(f"{B}/b")
        remote = await asyncio.wait_for(incoming, 10)
        gathered = asyncio.ensure_future(remote.gather(timeout=60))
        data = os.urandom(300 * 1024)
        await stream.sendall(data)
        await stream.close()
        got = await gathered
        assert len(got) == len(data)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()

    run(t, server)
