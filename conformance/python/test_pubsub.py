"""XEP-0060 PubSub, XEP-0163 PEP, XEP-0223 publish-options, XEP-0084 avatars, XEP-0049 private
storage and XEP-0402/XEP-0048 bookmarks, with slixmpp's own plugins as the clients."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

from harness import error_condition, q, run, xml_str

A, B = "alice@localhost", "bob@localhost"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_TUNE = "http://jabber.org/protocol/tune"
NS_BOOKMARKS2 = "urn:xmpp:bookmarks:1"
SERVICE = "pubsub.localhost"
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0223",
           "xep_0084", "xep_0049", "xep_0048", "xep_0402")


def event_of(m, node: str):
    """The first child of the <event/> of message `m` if it is about `node`."""
    ev = m.xml.find(q(NS_EVENT, "event"))
    if ev is None:
        return None
    for child in ev:
        if child.get("node") == node:
            return child
    return None


def options_form(client, **fields):
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for k, v in fields.items():
        form.add_field(var=f"pubsub#{k}", value=v)
    return form


def tune(title: str) -> ET.Element:
    el = ET.Element(q(NS_TUNE, "tune"))
    ET.SubElement(el, q(NS_TUNE, "title")).text = title
    return el


async def online_with_interests(h, jid: str, interests=()):
    """Logged in with the pubsub plugins, +notify interests announced in caps, available."""
    c = await h.login(jid, plugins=PLUGINS)
    for ns in interests:
        c.plugin["xep_0163"].add_interest(ns)
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    await c.roster_get()
    await c.presence()
    return c


async def befriend(a, b):
    """Mutual presence subscription (both online)."""
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
        await y.presences.get(lambda p: p["type"] == "subscribe", what="subscribe")
        y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        await x.presences.get(lambda p: p["type"] == "subscribed", what="subscribed")
        await x.presences.get(lambda p: p["from"] == y.boundjid and p["type"] == "available",
                              what="presence after subscribed")


async def pubsub_error(fut):
    """Awaits a request expected to fail; returns (condition list, pubsub#errors names)."""
    try:
        r = await fut
    except IqError as e:
        err = e.iq.xml.find("{jabber:client}error")
        apps = [c.tag.split("}", 1)[1] for c in err if c.tag.startswith(f"{{{NS_ERRORS}}}")]
        return error_condition(e.iq)[1], apps
    raise AssertionError(f"expected an error, got {xml_str(r)}")


def test_pep_notifications_between_contacts(server):
    async def t(h):
        a = await online_with_interests(h, f"{A}/a", [NS_TUNE])
        b = await online_with_interests(h, f"{B}/b", [NS_TUNE])
        await befriend(a, b)
        await asyncio.sleep(0.5)  # the server learns each client's caps (disco#info)
        await a.plugin["xep_0060"].publish(None, NS_TUNE, id="t1", payload=tune("Song"))
        m = await b.messages.get(lambda m: event_of(m, NS_TUNE) is not None,
                                 what="tune notification")
        assert m["from"] == A, xml_str(m)
        item = event_of(m, NS_TUNE).find(q(NS_EVENT, "item"))
        assert item.get("id") == "t1" and item.find(q(NS_TUNE, "tune")) is not None, xml_str(m)
        # The publisher's own resource asked for +notify as well.
        await a.messages.get(lambda m: event_of(m, NS_TUNE) is not None, what="own notification")
        # Retraction with notify reaches the contact.
        await a.plugin["xep_0060"].retract(A, NS_TUNE, "t1", notify=True)
        m = await b.messages.get(
            lambda m: (e := event_of(m, NS_TUNE)) is not None
            and e.find(q(NS_EVENT, "retract")) is not None, what="retract notification")
        assert event_of(m, NS_TUNE).find(q(NS_EVENT, "retract")).get("id") == "t1"

    run(t, server)


def test_publish_options_preconditions(server):
    async def t(h):
        a = await online_with_interests(h, f"{A}/a")
        ps = a.plugin["xep_0060"]
        node = "urn:example:settings"
        payload = ET.Element("{urn:example:settings}settings")
        # Accepted: creates the node with these options (XEP-0223).
        await ps.publish(None, node, id="current", payload=payload,
                         options=options_form(a, access_model="whitelist", persist_items="true"))
        # Accepted again: the node matches.
        await ps.publish(None, node, id="current", payload=payload,
                         options=options_form(a, access_model="whitelist"))
        # Rejected: conflict + precondition-not-met (XEP-0060 §7.1.5).
        conds, apps = await pubsub_error(ps.publish(
            None, node, id="current", payload=payload, options=options_form(a, access_model="open")))
        assert conds == ["conflict"] and apps == ["precondition-not-met"], (conds, apps)
        # And bob is kept out of the whitelist node.
        b = await online_with_interests(h, f"{B}/b")
        conds, apps = await pubsub_error(b.plugin["xep_0060"].get_items(A, node))
        assert conds == ["not-allowed"] and apps == ["closed-node"], (conds, apps)

    run(t, server)


def test_bookmarks_0402_and_0048_in_sync(server):
    async def t(h):
        a = await online_with_interests(h, f"{A}/a")
        # XEP-0402 publish → visible as XEP-0048 over XEP-0049 private storage.
        conf = Conference()
        conf["name"] = "Council"
        conf["autojoin"] = True
        conf["nick"] = "Al"
        await a.plugin["xep_0060"].publish(
            None, NS_BOOKMARKS2, id="council@conference.localhost", payload=conf.xml,
            options=options_form(a, persist_items="true", max_items="max",
                                 send_last_published_item="never", access_model="whitelist"))
        r = await a.plugin["xep_0048"].get_bookmarks(method="xep_0049")
        confs = {str(c["jid"]): c for c in r["private"]["bookmarks"]["conferences"]}
        assert "council@conference.localhost" in confs, xml_str(r)
        assert confs["council@conference.localhost"]["autojoin"] is True
        assert confs["council@conference.localhost"]["nick"] == "Al"

        # XEP-0048 set through private storage → XEP-0402 items follow.
        bm = Bookmarks()
        bm.add_conference("orchard@conference.localhost", "Al", name="Orchard", autojoin=False)
        await a.plugin["xep_0048"].set_bookmarks(bm, method="xep_0049")
        r = await a.plugin["xep_0060"].get_items(A, NS_BOOKMARKS2)
        ids = sorted(i["id"] for i in r["pubsub"]["items"])
        assert ids == ["orchard@conference.localhost"], xml_str(r)
        item = r["pubsub"]["items"]["item"]
        assert item["conference"]["name"] == "Orchard"

        # The server says it keeps them in step.
        info = await a.plugin["xep_0030"].get_info(A)
        feats = info["disco_info"]["features"]
        for f in ("urn:xmpp:bookmarks:1#compat", "urn:xmpp:bookmarks:1#compat-pep"):
            assert f in feats, feats
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"], \
            info["disco_info"]["identities"]

    run(t, server)


def test_avatar_visible_to_contact(server):
    async def t(h):
        a = await online_with_interests(h, f"{A}/a")
        b = await online_with_interests(h, f"{B}/b", ["urn:xmpp:avatar:metadata"])
        await befriend(a, b)
        await asyncio.sleep(0.5)
        data = b"\x89PNG fake avatar bytes"
        av = a.plugin["xep_0084"]
        avatar_id = av.generate_id(data)
        await av.publish_avatar(data)
        await av.publish_avatar_metadata([{"id": avatar_id, "type": "image/png",
                                           "bytes": str(len(data)), "height": "1", "width": "1"}])
        m = await b.messages.get(lambda m: event_of(m, "urn:xmpp:avatar:metadata") is not None,
                                 what="avatar metadata notification")
        assert avatar_id in xml_str(m)
        r = await b.plugin["xep_0084"].retrieve_avatar(A, avatar_id)
        got = r["pubsub"]["items"]["item"]["avatar_data"]["value"]
        assert got == data, got

    run(t, server)


def test_private_storage_round_trip(server):
    async def t(h):
        a = await h.login(f"{A}/a", plugins=PLUGINS)
        payload = "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><colour>teal</colour></prefs></query>"
        r = await a.request(a.iq("set", payload))
        assert r["type"] == "result", xml_str(r)
        r = await a.request(a.iq("get", "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"))
        assert r["type"] == "result" and "teal" in xml_str(r), xml_str(r)
        b = await h.login(f"{B}/b")
        r = await b.request(b.iq("get", "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>", to=A))
        assert error_condition(r)[1] == ["forbidden"], xml_str(r)

    run(t, server)


def test_pubsub_service_node_lifecycle(server):
    async def t(h):
        a = await h.login(f"{A}/a", plugins=PLUGINS)
        b = await h.login(f"{B}/b", plugins=PLUGINS)
        await b.presence()  # headlines to a bare JID reach available resources only
        ps_a, ps_b = a.plugin["xep_0060"], b.plugin["xep_0060"]
        info = await a.plugin["xep_0030"].get_info(SERVICE)
        assert ("pubsub", "service", None, "Publish-Subscribe") in info["disco_info"]["identities"]
        await ps_a.create_node(SERVICE, "princely_musings")
        conds, _ = await pubsub_error(ps_a.create_node(SERVICE, "princely_musings"))
        assert conds == ["conflict"], conds
        r = await ps_b.subscribe(SERVICE, "princely_musings")
        assert r["pubsub"]["subscription"]["subscription"] == "subscribed", xml_str(r)
        await ps_a.publish(SERVICE, "princely_musings", id="ae890ac52d0df67ed7cfdf51b644e901",
                           payload=tune("To be"))
        m = await b.messages.get(lambda m: event_of(m, "princely_musings") is not None,
                                 what="service notification")
        assert m["from"] == SERVICE
        r = await ps_b.get_items(SERVICE, "princely_musings", max_items=1)
        assert [i["id"] for i in r["pubsub"]["items"]] == ["ae890ac52d0df67ed7cfdf51b644e901"]
        # Only owners and publishers publish; bob is a subscriber.
        conds, _ = await pubsub_error(ps_b.publish(SERVICE, "princely_musings", payload=tune("x")))
        assert conds == ["forbidden"], conds
        await ps_a.delete_node(SERVICE, "princely_musings")
        await b.messages.get(
            lambda m: (ev := m.xml.find(q(NS_EVENT, "event"))) is not None
            and ev.find(q(NS_EVENT, "delete")) is not None, what="delete notification")
        conds, _ = await pubsub_error(ps_b.get_items(SERVICE, "princely_musings"))
        assert conds == ["item-not-found"], conds

    run(t, server)


def test_pep_items_survive_restart(server):
    async def publish(h):
        a = await h.login(f"{A}/a", plugins=PLUGINS)
        await a.plugin["xep_0060"].publish(
            None, "urn:example:keep", id="k1", payload=ET.Element("{urn:example:keep}keep"),
            options=options_form(a, access_model="open"))

    async def read(h):
        b = await h.login(f"{B}/b", plugins=PLUGINS)
        r = await b.plugin["xep_0060"].get_items(A, "urn:example:keep")
        assert [i["id"] for i in r["pubsub"]["items"]] == ["k1"], xml_str(r)

    run(publish, server)
    server.restart()
    run(read, server)
