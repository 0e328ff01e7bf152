"""File transfer through Tern (issue 6): XEP-0065 SOCKS5 bytestreams via the server's proxy on
proxy.localhost, and XEP-0047 in-band bytestreams routed between full JIDs, both with
slixmpp's own plugins, comparing the bytes received with the bytes sent."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from harness import error_condition, run, xml_str
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


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process so far (VmHWM, KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.server_opts(extra_toml="[upload]\nmax_file_size = 60000000\nquota_per_user = 100000000\n")
def test_http_upload_of_50_mb_with_slixmpp_streams_to_disk(server, tmp_path, monkeypatch):
    # aiohttp (slixmpp's HTTP client) verifies the server with OpenSSL's default paths.
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))

    async def t(h):
        import aiohttp

        a = h.client(f"{A}/a", plugins=("xep_0030", "xep_0363"))
        await a.start_session()
        src = tmp_path / "video.bin"
        data = os.urandom(50 * 1024 * 1024)
        src.write_bytes(data)
        before = vm_hwm_kib(server.proc.pid)
        url = await a.plugin["xep_0363"].upload_file(src, content_type="application/octet-stream",
                                                     timeout=120)
        after = vm_hwm_kib(server.proc.pid)
        # Streamed to disk: the server's peak memory must not grow by anything like the
        # file's 50 MiB (it would if the body were buffered).
        print(f"server VmHWM before {before} KiB, after a 50 MiB upload {after} KiB")
        assert after - before < 20 * 1024, f"peak RSS grew by {after - before} KiB"

        # A second client downloads identical bytes.
        b = await h.login(f"{B}/b")
        assert url.startswith("https://localhost:")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/octet-stream"
                got = await resp.read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()

        # Larger than the limit: refused by the server with the limit in the error.
        resp = await b.request(b.iq(
            "get", "<request xmlns='urn:xmpp:http:upload:0' filename='big.bin' size='70000000'/>",
            to="upload.localhost"))
        err = resp.xml.find("{jabber:client}error")
        assert err is not None and err.find(
            "{urn:xmpp:http:upload:0}file-too-large/{urn:xmpp:http:upload:0}max-file-size"
        ).text == "60000000"
        # The quota: 50 MiB stored of 100 MB, another 55 MB is refused.
        resp = await a.request(a.iq(
            "get", "<request xmlns='urn:xmpp:http:upload:0' filename='more.bin' size='55000000'/>",
            to="upload.localhost"))
        assert error_condition(resp)[1] == ["resource-constraint"], xml_str(resp)

    run(t, server, timeout=240)
