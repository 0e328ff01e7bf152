"""RFC 6121 §2: roster get/set/remove, pushes to every interested resource, versioning
(XEP-0237 / RFC 6121 §2.6), persistence across a restart."""

from __future__ import annotations

import asyncio

from harness import NS_ROSTER, error_condition, parse_roster_items, q, run, xml_str


def push_items(iq) -> dict:
    query = iq.xml.find(q(NS_ROSTER, "query"))
    assert query is not None, xml_str(iq)
    return parse_roster_items(query)


async def expect_push(client, jid: str, what: str = ""):
    push = await client.roster_pushes.get(lambda p: jid in push_items(p),
                                          what=f"roster push for {jid} {what}")
    # §2.1.6: a push comes from the user's bare JID or has no 'from'.
    frm = str(push["from"])
    assert frm in ("", client.boundjid.bare), f"roster push from {frm!r}: {xml_str(push)}"
    items = push_items(push)
    assert len(items) == 1, f"a roster push carries exactly one item: {xml_str(push)}"
    return push, items[jid]


def test_roster_push_to_second_resource(server):
    async def t(h):
        a1 = await h.login("alice@localhost/a1")
        a2 = await h.login("alice@localhost/a2")
        items, _, _ = await a1.roster_get()
        assert items == {}, f"new account has a roster: {items}"
        await a2.roster_get()  # both resources are now "interested" (§2.1.6)

        await a1.roster_set("carol@localhost", name="Carol", groups=("Friends", "Work"))
        for c in (a2, a1):  # the push goes to every interested resource, the setter included
            _, item = await expect_push(c, "carol@localhost", "after the add")
            assert item == {"subscription": "none", "ask": None, "name": "Carol",
                            "groups": ["Friends", "Work"]}, item

        items, _, _ = await a2.roster_get()
        assert items["carol@localhost"]["name"] == "Carol"

        # An update from the second resource is pushed to the first.
        await a2.roster_set("carol@localhost", name="Caroline", groups=("Friends",))
        for c in (a1, a2):
            _, item = await expect_push(c, "carol@localhost", "after the update")
            assert item["name"] == "Caroline" and item["groups"] == ["Friends"], item

        # Removal: pushed with subscription='remove', and gone from the roster.
        await a1.roster_set("carol@localhost", remove=True)
        _, item = await expect_push(a2, "carol@localhost", "after the removal")
        assert item["subscription"] == "remove", item
        items, _, _ = await a2.roster_get()
        assert "carol@localhost" not in items, items

    run(t, server)


def test_roster_set_with_two_items_is_bad_request(server):
    """§2.3.3: a roster set must contain exactly one item."""
    async def t(h):
        a = await h.login("alice@localhost/a")
        iq = a.iq("set", f"<query xmlns='{NS_ROSTER}'><item jid='bob@localhost'/>"
                         "<item jid='carol@localhost'/></query>")
        resp = await a.request(iq)
        assert resp["type"] == "error", xml_str(resp)
        assert error_condition(resp) == ("modify", ["bad-request"]), xml_str(resp)
        items, _, _ = await a.roster_get()
        assert items == {}, items

    run(t, server)


def test_roster_remove_unknown_item_is_item_not_found(server):
    """§2.5.3: removing an item that is not in the roster is <item-not-found/>."""
    async def t(h):
        a = await h.login("alice@localhost/a")
        iq = a.iq("set", f"<query xmlns='{NS_ROSTER}'><item jid='nobody@localhost' "
                         "subscription='remove'/></query>")
        resp = await a.request(iq)
        assert resp["type"] == "error", xml_str(resp)
        assert error_condition(resp)[1] == ["item-not-found"], xml_str(resp)

    run(t, server)


def test_roster_versioning(server):
    """RFC 6121 §2.6 (XEP-0237): ver on results and pushes; an up-to-date ver gets an empty
    result (or the full roster); an old ver gets the changes or the full roster."""
    async def t(h):
        a = await h.login("alice@localhost/a")
        assert "rosterver" in a.features, f"roster versioning not advertised: {a.features}"
        items, ver0, resp = await a.roster_get(ver="")
        assert ver0 is not None, f"no ver on the roster result: {xml_str(resp)}"

        await a.roster_set("bob@localhost", name="Bob")
        push, _ = await expect_push(a, "bob@localhost")
        ver1 = push.xml.find(q(NS_ROSTER, "query")).get("ver")
        assert ver1 and ver1 != ver0, f"push ver {ver1!r} after {ver0!r}: {xml_str(push)}"

        # Up to date: empty IQ result (then pushes), or the complete roster.
        items, ver, resp = await a.roster_get(ver=ver1)
        if items is not None and items:
            assert set(items) == {"bob@localhost"} and ver == ver1, xml_str(resp)

        # Out of date: the complete roster, or an empty result followed by pushes.
        a.roster_pushes.clear()
        items, ver, resp = await a.roster_get(ver=ver0)
        if items:
            assert items["bob@localhost"]["name"] == "Bob", xml_str(resp)
            assert ver == ver1, xml_str(resp)
        else:
            _, item = await expect_push(a, "bob@localhost", "(catch-up after an old ver)")
            assert item["name"] == "Bob"

    run(t, server)


def test_roster_survives_restart(server):
    async def t(h):
        a = await h.login("alice@localhost/a")
        await a.roster_set("bob@localhost", name="Bob", groups=("Friends",))
        await h.close()
        await asyncio.to_thread(server.restart)
        a = await h.login("alice@localhost/a")
        items, _, _ = await a.roster_get()
        assert items.get("bob@localhost") == {"subscription": "none", "ask": None, "name": "Bob",
                                              "groups": ["Friends"]}, items

    run(t, server)
