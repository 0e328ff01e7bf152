"""What modern clients expect of the server (issue 4), with slixmpp's own plugins where it has
one: XEP-0191 blocking, XEP-0054 vcard-temp, XEP-0012 last activity, XEP-0352 CSI; raw
stanzas for XEP-0215 external services and XEP-0157 contact addresses."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET

import pytest

from harness import error_condition, q, run, unique, xml_str

A, B, C = "alice@localhost", "bob@localhost", "carol@localhost"
NS_BLOCK_ERR = "urn:xmpp:blocking:errors"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
NS_EXTDISCO = "urn:xmpp:extdisco:2"


def is_presence(frm: str, ptype: str | None = None):
    return lambda p: str(p["from"]) == frm and p.xml.get("type") == ptype


async def online(h, jid: str, *plugins: str):
    c = h.client(jid, plugins=plugins)
    await c.start_session()
    await c.roster_get()
    await c.presence()
    return c


async def befriend(x, y):
    """Mutual presence subscription between two online clients, checked on both sides."""
    for a, b in ((x, y), (y, x)):
        a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
        await b.expect_presence(is_presence(a.boundjid.bare, "subscribe"), "subscribe")
        b.send_presence(pto=a.boundjid.bare, ptype="subscribed")
        await a.expect_presence(is_presence(str(b.boundjid)), "presence after subscribed")
    for c, peer in ((x, y), (y, x)):
        items, _, _ = await c.roster_get()
        assert items[peer.boundjid.bare]["subscription"] == "both", items


def test_blocking_stops_messages_and_presence_both_ways_and_unblocking_restores(server):
    async def t(h):
        a = await online(h, f"{A}/a", "xep_0191")
        b = await online(h, f"{B}/b")
        await befriend(a, b)
        assert await a.plugin["xep_0191"].get_blocked_jids() == set()

        await a.plugin["xep_0191"].block(B)
        await b.expect_presence(is_presence(f"{A}/a", "unavailable"),
                                "alice's unavailable presence on block (XEP-0191 §3.3)")
        assert {str(j) for j in await a.plugin["xep_0191"].get_blocked_jids()} == {B}

        # Bob -> Alice: message bounced with service-unavailable, nothing reaches her.
        a.messages.clear()
        body = unique("from-bob")
        b.chat(A, body)
        err = await b.messages.get(lambda m: m["type"] == "error", what="bounce of bob's message")
        assert error_condition(err)[1] == ["service-unavailable"], xml_str(err)
        # Alice -> Bob: refused with not-acceptable + <blocked/>.
        a.chat(B, unique("to-bob"))
        err = await a.messages.get(lambda m: m["type"] == "error", what="refusal of alice's message")
        assert error_condition(err)[1] == ["not-acceptable"], xml_str(err)
        assert err.xml.find(f"{q('jabber:client', 'error')}/{q(NS_BLOCK_ERR, 'blocked')}") is not None
        # Presence changes do not cross either way.
        a.presences.clear()
        b.presences.clear()
        await b.presence(show="away")
        await a.presence(show="dnd")
        await asyncio.sleep(0.5)
        assert not a.messages.find(lambda m: m["body"] == body), "bob's message reached alice"
        assert not a.presences.find(lambda p: str(p["from"]).startswith(B)), \
            [xml_str(p) for p in a.presences.items]
        assert not b.presences.find(lambda p: str(p["from"]).startswith(A)), \
            [xml_str(p) for p in b.presences.items]

        await a.plugin["xep_0191"].unblock(B)
        p = await b.expect_presence(lambda p: str(p["from"]) == f"{A}/a" and p.xml.get("type") is None,
                                    "alice's current presence on unblock (§3.4)")
        assert p["show"] == "dnd"
        again = unique("again")
        a.chat(B, again)
        await b.expect_message(again)
        back = unique("back")
        b.chat(A, back)
        await a.expect_message(back)
        assert await a.plugin["xep_0191"].get_blocked_jids() == set()

    run(t, server)


def test_vcard_set_and_get_with_photo(server):
    async def t(h):
        a = h.client(f"{A}/a", plugins=("xep_0054",))
        await a.start_session()
        b = h.client(f"{B}/b", plugins=("xep_0054",))
        await b.start_session()
        photo = base64.b64encode(bytes(range(256)) * 8).decode()
        v = a.plugin["xep_0054"].make_vcard()
        v["FN"] = "Alice Liddell"
        v["NICKNAME"] = "alice"
        v["PHOTO"]["TYPE"] = "image/png"
        v["PHOTO"]["BINVAL"] = base64.b64decode(photo)
        await a.plugin["xep_0054"].publish_vcard(v)

        got = await b.plugin["xep_0054"].get_vcard(A, local=False, cached=False)
        card = got["vcard_temp"]
        assert card["FN"] == "Alice Liddell"
        assert card["NICKNAME"] in ("alice", ["alice"])  # slixmpp returns NICKNAME as a list
        assert card["PHOTO"]["TYPE"] == "image/png"
        assert card["PHOTO"]["BINVAL"] == base64.b64decode(photo)

        # Bob may not overwrite it.
        iq = b.iq("set", "<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>", to=A)
        resp = await b.request(iq)
        assert error_condition(resp)[1] == ["forbidden"], xml_str(resp)

    run(t, server)


def test_last_activity_of_server_and_contact(server):
    async def t(h):
        a = await online(h, f"{A}/a")
        b = await online(h, f"{B}/b", "xep_0012")
        c = await online(h, f"{C}/c", "xep_0012")
        await befriend(a, b)

        up = await b.plugin["xep_0012"].get_last_activity("localhost")
        assert int(up["last_activity"]["seconds"]) >= 0
        now = await b.plugin["xep_0012"].get_last_activity(A)
        assert int(now["last_activity"]["seconds"]) == 0, xml_str(now)

        await a.presence(ptype="unavailable", status="Heading home")
        await a.close()
        await b.expect_presence(is_presence(f"{A}/a", "unavailable"), "alice offline")
        for _ in range(40):
            last = await b.request(b.iq("get", "<query xmlns='jabber:iq:last'/>", to=A))
            text = (last.xml.find(q("jabber:iq:last", "query")).text or "") if last["type"] == "result" else ""
            if text:
                break
            await asyncio.sleep(0.05)
        assert text == "Heading home", xml_str(last)

        # Carol has no subscription: forbidden (XEP-0012 §4).
        resp = await c.request(c.iq("get", "<query xmlns='jabber:iq:last'/>", to=A))
        assert error_condition(resp)[1] == ["forbidden"], xml_str(resp)

    run(t, server)


def test_client_state_indication_holds_presence_and_passes_messages(server):
    async def t(h):
        a = await online(h, f"{A}/a")
        b = await online(h, f"{B}/b", "xep_0352")
        await befriend(a, b)
        b.presences.clear()

        b.plugin["xep_0352"].send_inactive()
        await b.barrier()
        await a.presence(status="busy for a while")
        await asyncio.sleep(0.5)
        assert not b.presences.find(lambda p: str(p["from"]) == f"{A}/a"), \
            "presence reached an inactive client"

        # An urgent message goes through at once, with the held presence flushed first.
        body = unique("urgent")
        a.chat(B, body)
        await b.expect_message(body)
        held = b.presences.find(lambda p: str(p["from"]) == f"{A}/a")
        assert held and held[-1]["status"] == "busy for a while", [xml_str(p) for p in held]

        b.plugin["xep_0352"].send_active()
        b.presences.clear()
        await a.presence(status="back")
        p = await b.expect_presence(lambda p: str(p["from"]) == f"{A}/a", "presence after active")
        assert p["status"] == "back"

    run(t, server)


EXTRA = """
[contact]
abuse = ["mailto:abuse@localhost"]
security = ["xmpp:security@localhost"]

[[external_service]]
type = "stun"
host = "127.0.0.1"
port = 3478
transport = "udp"

[[external_service]]
type = "turn"
host = "127.0.0.1"
transport = "udp"
secret = "conformance-secret"
ttl_secs = 300
"""


@pytest.mark.server_opts(extra_toml=EXTRA)
def test_external_services_and_contact_addresses(server):
    async def t(h):
        a = await h.login(f"{A}/a")
        info = await a.request(a.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to="localhost"))
        query = info.xml.find(q(NS_DISCO_INFO, "query"))
        feats = {f.get("var") for f in query.findall(q(NS_DISCO_INFO, "feature"))}
        assert NS_EXTDISCO in feats and "urn:xmpp:blocking" in feats and "vcard-temp" in feats
        form = query.find(q(NS_DATA, "x"))
        fields = {f.get("var"): [v.text for v in f.findall(q(NS_DATA, "value"))]
                  for f in form.findall(q(NS_DATA, "field"))}
        assert fields["FORM_TYPE"] == ["http://jabber.org/network/serverinfo"]
        assert fields["abuse-addresses"] == ["mailto:abuse@localhost"]
        assert fields["security-addresses"] == ["xmpp:security@localhost"]

        resp = await a.request(a.iq("get", f"<services xmlns='{NS_EXTDISCO}'/>", to="localhost"))
        services = resp.xml.find(q(NS_EXTDISCO, "services")).findall(q(NS_EXTDISCO, "service"))
        kinds = {s.get("type"): s for s in services}
        assert set(kinds) == {"stun", "turn"}, [ET.tostring(s) for s in services]
        turn = kinds["turn"]
        assert turn.get("restricted") == "1"
        expiry, jid = turn.get("username").split(":", 1)
        assert jid == A
        import hashlib, hmac  # noqa: E401 - local to the check that needs them
        want = base64.b64encode(hmac.new(b"conformance-secret", turn.get("username").encode(),
                                         hashlib.sha1).digest()).decode()
        assert turn.get("password") == want
        assert kinds["stun"].get("password") is None

    run(t, server)
