"""RFC 6120 §7: resource binding, and the three resource-conflict policies (§7.7.2.2)."""

from __future__ import annotations

import pytest

from harness import NS_STANZAS, conditions, run, unique, xml_str
from rawxmpp import RawStream
from tern_server import ACCOUNTS


def test_server_generated_resource(server):
    async def t(h):
        c = await h.login("alice@localhost")  # slixmpp sends <bind/> without a resource
        assert c.boundjid.bare == "alice@localhost"
        assert c.boundjid.resource, f"no resource in bound JID {c.boundjid}"
        await c.barrier()

    run(t, server)


def test_conflict_kick_old(server):
    """Default policy: the older session gets <conflict/> and is closed; the new one works."""
    async def t(h):
        old = await h.online("alice@localhost/dup")
        new = await h.online("alice@localhost/dup")
        assert str(new.boundjid) == "alice@localhost/dup"
        err = await old.stream_errors.get(what="<stream:error><conflict/>")
        assert conditions(err.xml, "urn:ietf:params:xml:ns:xmpp-streams") == ["conflict"], xml_str(err)
        await old.wait_disconnected()
        assert not new.stream_errors.seen
        bob = await h.online("bob@localhost/b")
        body = unique()
        bob.chat("alice@localhost/dup", body)
        await new.expect_message(body)

    run(t, server)


@pytest.mark.server_opts(c2s={"resource_conflict": "rename"})
def test_conflict_rename(server):
    """`rename`: the new session is bound under another resource; both sessions work."""
    async def t(h):
        old = await h.online("alice@localhost/dup")
        new = await h.online("alice@localhost/dup")
        assert new.boundjid.bare == "alice@localhost"
        assert new.boundjid.resource and new.boundjid.resource != "dup", str(new.boundjid)
        bob = await h.online("bob@localhost/b")
        b1, b2 = unique(), unique()
        bob.chat(str(old.boundjid), b1)
        bob.chat(str(new.boundjid), b2)
        await old.expect_message(b1)
        await new.expect_message(b2)
        assert not old.stream_errors.seen and not new.stream_errors.seen

    run(t, server)


@pytest.mark.server_opts(c2s={"resource_conflict": "reject"})
def test_conflict_reject(server):
    """`reject`: the new binding gets an IQ error <conflict/>; the old session is untouched."""
    async def t(h):
        old = await h.online("alice@localhost/dup")
        raw = RawStream(server.port, server.ca)
        await raw.connect()
        await raw.open()
        await raw.starttls()
        ans = await raw.auth_plain("alice", ACCOUNTS["alice"])
        assert ans.tag.endswith("}success"), xml_str(ans)
        await raw.open()
        iq = await raw.bind("dup")
        assert iq.get("type") == "error", f"second bind of alice@localhost/dup: {xml_str(iq)}"
        err = iq.find("{jabber:client}error")
        assert err is not None and conditions(err, NS_STANZAS) == ["conflict"], xml_str(iq)
        # The client may try again with another resource, and the old session still works.
        iq = await raw.bind("other")
        assert iq.get("type") == "result", xml_str(iq)
        body = unique()
        raw.send(f"<message to='alice@localhost/dup' type='chat'><body>{body}</body></message>")
        m = await old.expect_message(body)
        assert str(m["from"]) == "alice@localhost/other"
        assert not old.stream_errors.seen
        await raw.close()

    run(t, server)
