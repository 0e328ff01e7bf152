"""Stream lifecycle: <system-shutdown/> on SIGTERM, <connection-timeout/> for silent clients
(RFC 6120 §4.9.3.4, §4.9.3.21), and a clean exit status."""

from __future__ import annotations

import asyncio

import pytest

from harness import NS_STREAMS, conditions, run, xml_str
from rawxmpp import RawStream


def test_sigterm_sends_system_shutdown(server):
    async def t(h):
        a = await h.online("alice@localhost/a")
        raw = RawStream(server.tls_port, server.ca, direct_tls=True)
        await raw.connect()
        await raw.open()
        code = await asyncio.to_thread(server.stop)
        assert code == 0, f"tern exited with {code} on SIGTERM"
        err = await a.stream_errors.get(what="<system-shutdown/> for a bound session")
        assert conditions(err.xml, NS_STREAMS) == ["system-shutdown"], xml_str(err)
        await a.wait_disconnected()
        # A stream still negotiating is closed too (with or without an error).
        assert await raw.wait_eof(5), "unauthenticated stream left open after shutdown"
        await raw.close()

    run(t, server)


@pytest.mark.server_opts(c2s={"preauth_timeout_secs": 2})
def test_silent_client_before_auth_times_out(server):
    async def t(h):
        raw = RawStream(server.port, server.ca)
        await raw.connect()
        await raw.open()
        await raw.expect_stream_error("connection-timeout", timeout=10)
        await raw.close()

    run(t, server)
