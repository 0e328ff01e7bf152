"""XEP-0398 avatar conversion and the XEP-0153 hash in presence, server side, with slixmpp's
xep_0084 (PEP avatars), xep_0054 (vcard-temp) and xep_0153 (vCard avatars) plugins: an avatar
published one way is readable the other way, and contacts see its hash in presence without the
publishing client adding it."""

from __future__ import annotations

import asyncio
import hashlib

from harness import q, run, xml_str

A, B = "alice@localhost", "bob@localhost"
FEATURE = "urn:xmpp:pep-vcard-conversion:0"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_METADATA = "urn:xmpp:avatar:metadata"
#: A PNG signature and IHDR (24x12), enough to be an image to every party here.
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (24).to_bytes(4, "big") + (12).to_bytes(4, "big")
       + b"\x08\x06\x00\x00\x00" + bytes(range(64)))


async def online(h, jid: str, plugins: tuple[str, ...], interests=()):
    c = h.client(jid, plugins=plugins)
    await c.start_session()
    for ns in interests:
        c.plugin["xep_0163"].add_interest(ns)
    if "xep_0115" in plugins:
        await c.plugin["xep_0115"].update_caps(broadcast=False)
    await c.roster_get()
    await c.presence()
    return c


async def befriend(x, y):
    for a, b in ((x, y), (y, x)):
        a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
        await b.presences.get(lambda p: p["type"] == "subscribe", what="subscribe")
        b.send_presence(pto=a.boundjid.bare, ptype="subscribed")
        await a.presences.get(lambda p: p["from"] == b.boundjid and p["type"] == "available",
                              what="presence after subscribed")


def test_pep_avatar_becomes_vcard_photo_and_presence_hash(server):
    async def t(h):
        # alice publishes with XEP-0084 and does not load xep_0153: any hash in her presence
        # comes from the server.
        a = await online(h, f"{A}/a", ("xep_0030", "xep_0060", "xep_0163", "xep_0084",
                                       "xep_0054"))
        b = await online(h, f"{B}/b", ("xep_0030", "xep_0054", "xep_0153"))
        updates = []
        b.add_event_handler("vcard_avatar_update", updates.append)
        await befriend(a, b)

        info = await a.plugin["xep_0030"].get_info(A)
        assert FEATURE in info["disco_info"]["features"], info["disco_info"]["features"]

        v = a.plugin["xep_0054"].make_vcard()
        v["FN"] = "Alice Liddell"
        await a.plugin["xep_0054"].publish_vcard(v)
        av = a.plugin["xep_0084"]
        avatar_id = av.generate_id(PNG)
        await av.publish_avatar(PNG)
        await av.publish_avatar_metadata([{"id": avatar_id, "type": "image/png",
                                           "bytes": str(len(PNG)), "width": "24",
                                           "height": "12"}])

        got = await b.plugin["xep_0054"].get_vcard(A, local=False, cached=False)
        card = got["vcard_temp"]
        assert card["PHOTO"]["BINVAL"] == PNG, xml_str(got)
        assert card["PHOTO"]["TYPE"] == "image/png"
        assert card["FN"] == "Alice Liddell", "other vCard fields are kept"

        a.send_presence(pstatus="new face")
        p = await b.presences.get(lambda p: p["status"] == "new face", what="alice's presence")
        assert p["vcard_temp_update"]["photo"] == avatar_id, xml_str(p)
        assert avatar_id == hashlib.sha1(PNG).hexdigest()
        # slixmpp's XEP-0153 plugin saw it as an avatar update.
        await asyncio.sleep(0.1)
        assert any(u["vcard_temp_update"]["photo"] == avatar_id for u in updates), \
            [xml_str(u) for u in updates]

    run(t, server)


def test_vcard_photo_becomes_pep_avatar(server):
    async def t(h):
        plugins = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084",
                   "xep_0054")
        a = await online(h, f"{A}/a", plugins)
        b = await online(h, f"{B}/b", plugins, interests=[NS_METADATA])
        await befriend(a, b)
        await asyncio.sleep(0.5)  # the server learns bob's caps (+notify for the metadata)

        v = a.plugin["xep_0054"].make_vcard()
        v["FN"] = "Alice"
        v["PHOTO"]["TYPE"] = "image/png"
        v["PHOTO"]["BINVAL"] = PNG
        await a.plugin["xep_0054"].publish_vcard(v)
        avatar_id = hashlib.sha1(PNG).hexdigest()

        # Contacts interested in avatars are told (XEP-0398 §3.2 "SHOULD send out
        # notification messages").
        m = await b.messages.get(
            lambda m: (ev := m.xml.find(q(NS_EVENT, "event"))) is not None
            and ev.find(q(NS_EVENT, "items")) is not None
            and ev.find(q(NS_EVENT, "items")).get("node") == NS_METADATA,
            what="avatar metadata notification")
        assert m["from"] == A, xml_str(m)
        info = m.xml.find(f".//{q(NS_METADATA, 'info')}")
        assert info is not None and info.get("id") == avatar_id, xml_str(m)
        assert info.get("type") == "image/png" and info.get("bytes") == str(len(PNG))
        assert (info.get("width"), info.get("height")) == ("24", "12")

        # And the image itself is on the data node under its hash.
        r = await b.plugin["xep_0084"].retrieve_avatar(A, avatar_id)
        assert r["pubsub"]["items"]["item"]["avatar_data"]["value"] == PNG

    run(t, server)
