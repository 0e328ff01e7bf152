"""XEP-0045 multi-user chat on conference.localhost, with slixmpp's xep_0045 plugin and raw
stanzas: creation and configuration, messages, history on join, private messages, kick and
ban, members-only and password refusals, nick conflict, subject, destruction, persistence
across a restart, room archive (XEP-0313) paging and XEP-0410 self-ping.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import PresenceError

from harness import NS_CLIENT, error_condition, q, run, unique, xml_str

SERVICE = "conference.localhost"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
PLUGINS = ("xep_0045",)


def room_jid(name: str) -> str:
    return f"{name}@{SERVICE}"


def codes(stanza) -> set[int]:
    x = stanza.xml.find(q(NS_MUC_USER, "x"))
    if x is None:
        return set()
    return {int(s.get("code")) for s in x.findall(q(NS_MUC_USER, "status"))}


async def muc_client(h, jid: str):
    return await h.online(jid, plugins=PLUGINS)


async def create_instant(c, name: str, nick: str, **config):
    """Creates a room as its owner: join (201), fetch the form, set fields, submit."""
    pres, _subject, _occ, _hist = await c.plugin["xep_0045"].join_muc_wait(room_jid(name), nick, timeout=10)
    assert 201 in codes(pres) and 110 in codes(pres), xml_str(pres)
    form = await c.plugin["xep_0045"].get_room_config(room_jid(name))
    fields = form.get_fields()
    assert "muc#roomconfig_roomname" in fields and "muc#roomconfig_persistentroom" in fields
    for var, value in config.items():
        fields[var]["value"] = value
    await c.plugin["xep_0045"].set_room_config(room_jid(name), form)


async def join_error(c, name: str, nick: str, **kw) -> str:
    with pytest.raises(PresenceError) as e:
        await c.plugin["xep_0045"].join_muc_wait(room_jid(name), nick, timeout=10, **kw)
    return e.value.condition


def test_create_configure_join_talk_and_pm(server):
    async def t(h):
        alice = await muc_client(h, "alice@localhost/a")
        bob = await muc_client(h, "bob@localhost/b")
        await create_instant(alice, "coven", "Alice", **{"muc#roomconfig_roomname": "The Coven"})
        pres, subject, occupants, history = await bob.plugin["xep_0045"].join_muc_wait(room_jid("coven"), "Bob", timeout=10)
        assert 110 in codes(pres)
        # slixmpp's occupant list includes the self-presence.
        assert sorted(str(p["from"]) for p in occupants) == [f"{room_jid('coven')}/Alice", f"{room_jid('coven')}/Bob"]
        assert history == []

        body = unique("hello")
        bob.send_message(mto=room_jid("coven"), mbody=body, mtype="groupchat")
        for c in (alice, bob):
            m = await c.expect_message(body)
            assert str(m["from"]) == f"{room_jid('coven')}/Bob" and m["type"] == "groupchat"
            sid = m.xml.find(q("urn:xmpp:sid:0", "stanza-id"))
            assert sid is not None and sid.get("by") == room_jid("coven"), xml_str(m)

        # A private message between occupants.
        pm = unique("psst")
        alice.send_message(mto=f"{room_jid('coven')}/Bob", mbody=pm, mtype="chat")
        m = await bob.expect_message(pm)
        assert str(m["from"]) == f"{room_jid('coven')}/Alice"
        assert m.xml.find(q(NS_MUC_USER, "x")) is not None

        # The room shows up in disco with its name.
        items = await alice.request(alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=SERVICE))
        assert room_jid("coven") in xml_str(items) and "The Coven" in xml_str(items)

    run(t, server)


def test_history_on_join_and_subject(server):
    async def t(h):
        alice = await muc_client(h, "alice@localhost/a")
        await create_instant(alice, "hist", "Alice")
        bodies = [unique("h") for _ in range(4)]
        for b in bodies:
            alice.send_message(mto=room_jid("hist"), mbody=b, mtype="groupchat")
            await alice.expect_message(b)
        alice.plugin["xep_0045"].set_subject(room_jid("hist"), "Fair is foul")
        await alice.messages.get(lambda m: m["subject"] == "Fair is foul", what="subject echo")

        bob = await muc_client(h, "bob@localhost/b")
        _p, subject, _o, history = await bob.plugin["xep_0045"].join_muc_wait(room_jid("hist"), "Bob", maxstanzas=2, timeout=10)
        assert [m["body"] for m in history] == bodies[-2:]
        assert subject["subject"] == "Fair is foul"
        # A participant may not change the subject (default configuration).
        bob.plugin["xep_0045"].set_subject(room_jid("hist"), "Foul is fair")
        err = await bob.messages.get(lambda m: m["type"] == "error", what="subject refused")
        assert error_condition(err)[1] == ["forbidden"], xml_str(err)

    run(t, server)


def test_kick_ban_members_only_password_and_nick_conflict(server):
    async def t(h):
        alice = await muc_client(h, "alice@localhost/a")
        bob = await muc_client(h, "bob@localhost/b")
        carol = await muc_client(h, "carol@localhost/c")
        muc = alice.plugin["xep_0045"]
        await create_instant(alice, "court", "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(room_jid("court"), "Bob", timeout=10)

        # Nick conflict.
        assert await join_error(carol, "court", "Bob") == "conflict"

        # Kick (307) and ban (301).
        await carol.plugin["xep_0045"].join_muc_wait(room_jid("court"), "Carol", timeout=10)
        await muc.set_role(room_jid("court"), "Carol", "none", reason="Out")
        p = await carol.expect_presence(lambda p: p["type"] == "unavailable" and 307 in codes(p), "kicked")
        assert 110 in codes(p)
        await muc.set_affiliation(room_jid("court"), "outcast", jid="bob@localhost", reason="Treason")
        await bob.expect_presence(lambda p: p["type"] == "unavailable" and 301 in codes(p), "banned")
        assert await join_error(bob, "court", "Bob") == "forbidden"

        # Members-only: Carol is not a member.
        await create_instant(alice, "club", "Alice", **{"muc#roomconfig_membersonly": True})
        assert await join_error(carol, "club", "Carol") == "registration-required"
        await muc.set_affiliation(room_jid("club"), "member", jid="carol@localhost")
        await carol.plugin["xep_0045"].join_muc_wait(room_jid("club"), "Carol", timeout=10)

        # Password-protected.
        await create_instant(alice, "vault", "Alice", **{
            "muc#roomconfig_passwordprotectedroom": True, "muc#roomconfig_roomsecret": "cauldron"})
        assert await join_error(carol, "vault", "Carol") == "not-authorized"
        assert await join_error(carol, "vault", "Carol", password="kettle") == "not-authorized"
        pres, *_ = await carol.plugin["xep_0045"].join_muc_wait(room_jid("vault"), "Carol", password="cauldron", timeout=10)
        assert 110 in codes(pres)

    run(t, server)


def test_destruction_with_alternate_venue(server):
    async def t(h):
        alice = await muc_client(h, "alice@localhost/a")
        bob = await muc_client(h, "bob@localhost/b")
        await create_instant(alice, "doomed", "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(room_jid("doomed"), "Bob", timeout=10)
        await alice.plugin["xep_0045"].destroy(room_jid("doomed"), reason="Macbeth doth come.", altroom=room_jid("refuge"))
        p = await bob.expect_presence(lambda p: p["type"] == "unavailable" and p.xml.find(f".//{q(NS_MUC_USER, 'destroy')}") is not None, "destroy")
        d = p.xml.find(f".//{q(NS_MUC_USER, 'destroy')}")
        assert d.get("jid") == room_jid("refuge")
        assert d.find(q(NS_MUC_USER, "reason")).text == "Macbeth doth come."
        info = await bob.request(bob.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to=room_jid("doomed")))
        assert error_condition(info)[1] == ["item-not-found"], xml_str(info)

    run(t, server)


def test_persistent_room_survives_restart(server):
    body = unique("kept")

    async def before(h):
        alice = await muc_client(h, "alice@localhost/a")
        await create_instant(alice, "keep", "Alice", **{
            "muc#roomconfig_persistentroom": True, "muc#roomconfig_roomname": "Kept room"})
        await alice.plugin["xep_0045"].set_affiliation(room_jid("keep"), "member", jid="bob@localhost")
        alice.send_message(mto=room_jid("keep"), mbody=body, mtype="groupchat")
        await alice.expect_message(body)

    async def after(h):
        bob = await muc_client(h, "bob@localhost/b")
        info = await bob.request(bob.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to=room_jid("keep")))
        assert info["type"] == "result", xml_str(info)
        assert "muc_persistent" in xml_str(info) and "Kept room" in xml_str(info)
        _p, _s, occupants, history = await bob.plugin["xep_0045"].join_muc_wait(room_jid("keep"), "Bob", timeout=10)
        assert [m["body"] for m in history] == [body]
        assert [str(p["from"]) for p in occupants] == [f"{room_jid('keep')}/Bob"], "only Bob himself"
        aff = await bob.request(bob.iq("get", "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member'/></query>", to=room_jid("keep")))
        # Bob, a member, may not read the member list, but the room knew him: he got in.
        assert aff["type"] == "error"

    run(before, server)
    server.restart()
    run(after, server)


def test_room_archive_paging_and_self_ping(server):
    async def t(h):
        alice = await muc_client(h, "alice@localhost/a")
        await create_instant(alice, "log", "Alice")
        bodies = [unique("a") for _ in range(5)]
        for b in bodies:
            alice.send_message(mto=room_jid("log"), mbody=b, mtype="groupchat")
            await alice.expect_message(b)
        alice.messages.clear()

        got, after = [], None
        for page in range(5):
            qid = f"q{page}"
            cursor = f"<after>{after}</after>" if after else ""
            resp = await alice.request(alice.iq(
                "set", f"<query xmlns='{NS_MAM}' queryid='{qid}'><set xmlns='{NS_RSM}'><max>2</max>{cursor}</set></query>",
                to=room_jid("log")))
            assert resp["type"] == "result", xml_str(resp)
            results = alice.messages.find(lambda m: m.xml.find(q(NS_MAM, "result")) is not None
                                          and m.xml.find(q(NS_MAM, "result")).get("queryid") == qid)
            for m in results:
                assert str(m["from"]) == room_jid("log")
                fwd = m.xml.find(f"{q(NS_MAM, 'result')}/{q('urn:xmpp:forward:0', 'forwarded')}/{q(NS_CLIENT, 'message')}")
                got.append(fwd.find(q(NS_CLIENT, "body")).text)
            fin = resp.xml.find(q(NS_MAM, "fin"))
            last = fin.find(f"{q(NS_RSM, 'set')}/{q(NS_RSM, 'last')}")
            after = last.text if last is not None else None
            if fin.get("complete") == "true":
                break
        assert got == bodies

        # XEP-0410: the room answers a joined client's self-ping; after leaving, not-acceptable.
        ping = "<ping xmlns='urn:xmpp:ping'/>"
        r = await alice.request(alice.iq("get", ping, to=f"{room_jid('log')}/Alice"))
        assert r["type"] == "result", xml_str(r)
        bob = await muc_client(h, "bob@localhost/b")
        r = await bob.request(bob.iq("get", ping, to=f"{room_jid('log')}/Alice"))
        assert error_condition(r)[1] == ["not-acceptable"], xml_str(r)

    run(t, server)


def test_mediated_and_direct_invitations(server):
    async def t(h):
        alice = await h.online("alice@localhost/a", plugins=("xep_0045", "xep_0249"))
        bob = await h.online("bob@localhost/b", plugins=("xep_0045", "xep_0249"))
        await create_instant(alice, "party", "Alice", **{"muc#roomconfig_membersonly": True})

        # XEP-0045 §7.8.2: through the room, which adds Bob to the member list.
        alice.plugin["xep_0045"].invite(room_jid("party"), "bob@localhost", reason="Join us")
        inv = await bob.messages.get(lambda m: m.xml.find(f".//{q(NS_MUC_USER, 'invite')}") is not None,
                                     what="mediated invitation")
        assert str(inv["from"]) == room_jid("party")
        assert inv.xml.find(f".//{q(NS_MUC_USER, 'invite')}").get("from") == "alice@localhost/a"
        pres, *_ = await bob.plugin["xep_0045"].join_muc_wait(room_jid("party"), "Bob", timeout=10)
        assert pres.xml.find(f".//{q(NS_MUC_USER, 'item')}").get("affiliation") == "member"

        # XEP-0249: client to client; the server only routes it.
        bob.plugin["xep_0249"].send_invitation("alice@localhost/a", room_jid("party"), reason="Back")
        d = await alice.messages.get(lambda m: m.xml.find(q("jabber:x:conference", "x")) is not None,
                                     what="direct invitation")
        assert d.xml.find(q("jabber:x:conference", "x")).get("jid") == room_jid("party")
        # The room advertises it.
        info = await alice.request(alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to=room_jid("party")))
        assert "jabber:x:conference" in xml_str(info)

    run(t, server)
