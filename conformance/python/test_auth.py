"""RFC 6120 §5 (TLS) and §6 (SASL) with slixmpp: every SCRAM variant over STARTTLS and direct
TLS (XEP-0368), PLAIN over TLS only, wrong passwords, and the server's failure limit."""

from __future__ import annotations

import re
import ssl

import pytest

from harness import NS_STREAM, SessionFailed, q, run, use_end_point_binding, xml_str
from rawxmpp import NS_SASL, RawStream, mechanisms

TRANSPORTS = ["starttls", "direct_tls"]
SCRAM = ["SCRAM-SHA-1", "SCRAM-SHA-256"]
SCRAM_PLUS = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"]


def log_mechanism_pattern(jid: str, mech: str) -> str:
    # e.g. `INFO ...: SASL success jid=alice@localhost mechanism="SCRAM-SHA-1"`
    return rf"SASL success.*jid={re.escape(jid)}.*mechanism=\"?{re.escape(mech)}(\"|\s|$)"


async def login_and_check(h, server, mech: str, transport: str, **kw):
    c = await h.login("alice@localhost/auth", mech=mech, direct_tls=transport == "direct_tls", **kw)
    assert c.sasl_mechanism == mech, f"slixmpp negotiated {c.sasl_mechanism}, wanted {mech}"
    assert str(c.boundjid) == "alice@localhost/auth"
    await c.barrier()  # the session really works
    server.wait_for_log(log_mechanism_pattern("alice@localhost", mech))
    return c


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", SCRAM + ["PLAIN"])
def test_login(server, mech, transport):
    """slixmpp logs in with exactly this mechanism; the server log agrees."""
    run(lambda h: login_and_check(h, server, mech, transport), server)


@pytest.mark.parametrize("tls_version", ["TLSv1.3", "TLSv1.2"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", SCRAM_PLUS)
def test_login_plus_tls_server_end_point(server, monkeypatch, mech, transport, tls_version):
    """-PLUS with tls-server-end-point channel binding (RFC 5929), driven by slixmpp's SCRAM."""
    use_end_point_binding(monkeypatch)

    async def t(h):
        c = h.client("alice@localhost/auth", mech=mech, direct_tls=transport == "direct_tls",
                     end_point_binding=True)
        if tls_version == "TLSv1.2":
            c.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        await c.start_session()
        assert c.socket is None or c.socket.version() == tls_version
        assert c.sasl_mechanism == mech
        await c.barrier()
        server.wait_for_log(log_mechanism_pattern("alice@localhost", mech))

    run(t, server)


@pytest.mark.parametrize("mech", SCRAM_PLUS)
def test_login_plus_slixmpp_native(server, mech):
    """slixmpp's own -PLUS code: tls-exporter on TLS 1.3 (RFC 9266), which needs a Python whose
    ssl module can export keying material."""
    if "tls-exporter" not in ssl.CHANNEL_BINDING_TYPES:
        pytest.skip(f"this Python's ssl module offers only {ssl.CHANNEL_BINDING_TYPES}; slixmpp "
                    "cannot compute tls-exporter (TLS 1.3), so it never selects -PLUS here")
    run(lambda h: login_and_check(h, server, mech, "starttls"), server)


def test_wrong_channel_binding_data_is_rejected(server, monkeypatch):
    """A -PLUS exchange whose binding data does not match the TLS connection must fail."""
    use_end_point_binding(monkeypatch)

    async def t(h):
        c = h.client("alice@localhost/auth", mech="SCRAM-SHA-256-PLUS", end_point_binding=True)
        fm = c.plugin["feature_mechanisms"]

        def wrong_binding(required, optional):
            creds = fm._default_credentials(required, optional)
            if "channel_binding" in set(required) | set(optional):
                creds["channel_binding"] = b"\x00" * 32
            return creds

        fm.sasl_callback = wrong_binding
        with pytest.raises(SessionFailed):
            await c.start_session()
        assert c.auth_failures, "no SASL <failure/> for forged channel-binding data"
        assert c.sasl_mechanism is None

    run(t, server)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mech", SCRAM + ["PLAIN"])
def test_wrong_password(server, mech, transport):
    async def t(h):
        c = h.client("alice@localhost/auth", "not-the-password", mech=mech,
                     direct_tls=transport == "direct_tls")
        with pytest.raises(SessionFailed):
            await c.start_session()
        assert c.auth_failures == ["not-authorized"], c.auth_failures
        assert c.sasl_mechanism is None

    run(t, server)


@pytest.mark.parametrize("mech", SCRAM + ["PLAIN"])
def test_unknown_user_is_not_authorized(server, mech):
    """No user enumeration: an unknown account fails exactly like a wrong password."""
    async def t(h):
        c = h.client("nobody@localhost/auth", "whatever", mech=mech)
        with pytest.raises(SessionFailed):
            await c.start_session()
        assert c.auth_failures == ["not-authorized"], c.auth_failures

    run(t, server)


@pytest.mark.server_opts(c2s={"max_auth_failures": 3})
def test_too_many_failures_end_the_stream(server):
    """After max_auth_failures failed attempts on one stream: <policy-violation/>."""
    async def t(h):
        raw = RawStream(server.tls_port, server.ca, direct_tls=True)
        await raw.connect()
        await raw.open()
        for i in range(2):
            ans = await raw.auth_plain("alice", f"wrong-{i}")
            assert ans.tag == q(NS_SASL, "failure"), xml_str(ans)
            assert ans.find(q(NS_SASL, "not-authorized")) is not None, xml_str(ans)
        ans = await raw.auth_plain("alice", "wrong-2")
        # The third failure may be reported before the stream error, or not at all.
        if ans.tag != q(NS_SASL, "failure"):
            assert ans.tag == q(NS_STREAM, "error"), xml_str(ans)
            raw.elements.put(ans)
        await raw.expect_stream_error("policy-violation")
        await raw.close()

    run(t, server)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mechanisms_offered_over_tls(server, transport):
    """After TLS: SCRAM-SHA-1/256, their -PLUS variants (with XEP-0440 binding types) and PLAIN."""
    async def t(h):
        raw = RawStream(server.tls_port if transport == "direct_tls" else server.port, server.ca,
                        direct_tls=transport == "direct_tls")
        await raw.connect()
        features = await raw.open()
        if transport == "starttls":
            # STARTTLS is required: nothing but <starttls><required/></starttls> before TLS.
            st = features.find(q("urn:ietf:params:xml:ns:xmpp-tls", "starttls"))
            assert st is not None, xml_str(features)
            assert st.find(q("urn:ietf:params:xml:ns:xmpp-tls", "required")) is not None, xml_str(features)
            assert mechanisms(features) == [], f"SASL offered before TLS: {xml_str(features)}"
            features = await raw.starttls()
        mechs = mechanisms(features)
        for m in SCRAM + SCRAM_PLUS + ["PLAIN"]:
            assert m in mechs, f"{m} not offered over TLS: {mechs}"
        cb = features.find(q("urn:xmpp:sasl-cb:0", "sasl-channel-binding"))
        assert cb is not None, f"-PLUS offered without XEP-0440 binding types: {xml_str(features)}"
        types = {x.get("type") for x in cb}
        assert {"tls-exporter", "tls-server-end-point"} <= types, types
        await raw.close()

    run(t, server)


def test_mechanisms_offered_over_tls12(server):
    """On TLS 1.2 the -PLUS variants are still offered, with tls-server-end-point."""
    async def t(h):
        raw = RawStream(server.port, server.ca)
        await raw.connect()
        await raw.open()
        features = await raw.starttls(max_tls12=True)
        assert "SCRAM-SHA-256-PLUS" in mechanisms(features), xml_str(features)
        cb = features.find(q("urn:xmpp:sasl-cb:0", "sasl-channel-binding"))
        assert cb is not None, xml_str(features)
        types = {x.get("type") for x in cb}
        assert "tls-server-end-point" in types, types
        await raw.close()

    run(t, server)
