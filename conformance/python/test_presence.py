"""RFC 6121 §3 and §4: the subscription state machine both ways, presence broadcast, probes,
pre-approval, and unavailable presence when a contact goes away."""

from __future__ import annotations

import pytest

from harness import run, xml_str
from test_roster import expect_push

A, B = "alice@localhost", "bob@localhost"


def state(items: dict | None, jid: str):
    """(subscription, ask) of `jid` in a roster, or None when absent."""
    item = (items or {}).get(jid)
    return None if item is None else (item["subscription"], item["ask"])


def is_presence(frm: str, ptype: str | None = None):
    def pred(p):
        # The raw attribute: slixmpp's p["type"] reports <show/> for available presence.
        return str(p["from"]) == frm and p.xml.get("type") == ptype
    return pred


async def expect_roster(client, jid: str, expected, step: str):
    items, _, _ = await client.roster_get()
    got = state(items, jid)
    assert got == expected, f"{step}: {client.boundjid.bare}'s roster item for {jid} is {got}, " \
                            f"expected {expected}"


async def two_online(h):
    a = await h.login(f"{A}/a")
    b = await h.login(f"{B}/b")
    for c in (a, b):
        await c.roster_get()  # interested resources
        await c.presence()
    # Not subscribed to each other: no presence crosses yet.
    return a, b


async def subscribe_both(h):
    """The full handshake with minimal checks: alice and bob end with subscription=both."""
    a, b = await two_online(h)
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
        await y.expect_presence(is_presence(x.boundjid.bare, "subscribe"), "subscribe")
        y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        await x.expect_presence(is_presence(y.boundjid.bare, "subscribed"), "subscribed")
        await x.expect_presence(is_presence(str(y.boundjid)), "available presence after subscribed")
    return a, b


def test_subscription_handshake_both_ways(server):
    async def t(h):
        a, b = await two_online(h)
        a.presences.clear()
        b.presences.clear()

        # 1. alice asks: her item becomes none + ask=subscribe; bob gets the request from her
        #    bare JID; bob's roster is not touched (§3.1.3).
        a.send_presence(pto=B, ptype="subscribe")
        _, item = await expect_push(a, B, "after alice's subscribe")
        assert (item["subscription"], item["ask"]) == ("none", "subscribe"), item
        req = await b.expect_presence(is_presence(A, "subscribe"), "subscribe from alice@localhost")
        assert str(req["to"]) in (B, f"{B}/b"), xml_str(req)
        await expect_roster(a, B, ("none", "subscribe"), "1 (alice subscribe)")
        items, _, _ = await b.roster_get()
        assert state(items, A) in (None, ("none", None)), f"1: bob's roster: {items}"

        # 2. bob approves: bob 'from', alice 'to'; alice gets 'subscribed' and then bob's
        #    current presence (§3.1.5).
        b.send_presence(pto=A, ptype="subscribed")
        _, item = await expect_push(b, A, "after bob's subscribed")
        assert (item["subscription"], item["ask"]) == ("from", None), item
        _, item = await expect_push(a, B, "after bob's subscribed")
        assert (item["subscription"], item["ask"]) == ("to", None), item
        await a.expect_presence(is_presence(B, "subscribed"), "subscribed from bob@localhost")
        await a.expect_presence(is_presence(f"{B}/b"), "bob's available presence")
        await expect_roster(a, B, ("to", None), "2 (bob subscribed)")
        await expect_roster(b, A, ("from", None), "2 (bob subscribed)")

        # 3. bob asks back: bob 'from' + ask; alice gets the request.
        b.send_presence(pto=A, ptype="subscribe")
        _, item = await expect_push(b, A, "after bob's subscribe")
        assert (item["subscription"], item["ask"]) == ("from", "subscribe"), item
        await a.expect_presence(is_presence(B, "subscribe"), "subscribe from bob@localhost")
        await expect_roster(b, A, ("from", "subscribe"), "3 (bob subscribe)")
        await expect_roster(a, B, ("to", None), "3 (bob subscribe)")

        # 4. alice approves: both 'both'; bob gets 'subscribed' and alice's presence.
        a.send_presence(pto=B, ptype="subscribed")
        _, item = await expect_push(a, B, "after alice's subscribed")
        assert (item["subscription"], item["ask"]) == ("both", None), item
        _, item = await expect_push(b, A, "after alice's subscribed")
        assert (item["subscription"], item["ask"]) == ("both", None), item
        await b.expect_presence(is_presence(A, "subscribed"), "subscribed from alice@localhost")
        await b.expect_presence(is_presence(f"{A}/a"), "alice's available presence")
        await expect_roster(a, B, ("both", None), "4 (alice subscribed)")
        await expect_roster(b, A, ("both", None), "4 (alice subscribed)")

        # Broadcast now flows both ways.
        a.send_presence(pshow="away", pstatus="lunch")
        p = await b.expect_presence(is_presence(f"{A}/a"), "alice's away presence")
        assert p["show"] == "away" and p["status"] == "lunch", xml_str(p)
        b.send_presence(pshow="dnd")
        p = await a.expect_presence(is_presence(f"{B}/b"), "bob's dnd presence")
        assert p["show"] == "dnd", xml_str(p)

        # 5. alice unsubscribes from bob: alice 'from', bob 'to'; bob gets 'unsubscribe';
        #    alice gets unavailable from bob's resources (§3.3.3).
        a.send_presence(pto=B, ptype="unsubscribe")
        _, item = await expect_push(a, B, "after alice's unsubscribe")
        assert (item["subscription"], item["ask"]) == ("from", None), item
        _, item = await expect_push(b, A, "after alice's unsubscribe")
        assert (item["subscription"], item["ask"]) == ("to", None), item
        await b.expect_presence(is_presence(A, "unsubscribe"), "unsubscribe from alice@localhost")
        await a.expect_presence(is_presence(f"{B}/b", "unavailable"), "unavailable from bob/b")
        await expect_roster(a, B, ("from", None), "5 (alice unsubscribe)")
        await expect_roster(b, A, ("to", None), "5 (alice unsubscribe)")

        # 6. alice cancels bob's subscription: both 'none'; bob gets 'unsubscribed' and
        #    unavailable from alice's resources (§3.2.3).
        a.send_presence(pto=B, ptype="unsubscribed")
        _, item = await expect_push(a, B, "after alice's unsubscribed")
        assert (item["subscription"], item["ask"]) == ("none", None), item
        _, item = await expect_push(b, A, "after alice's unsubscribed")
        assert (item["subscription"], item["ask"]) == ("none", None), item
        await b.expect_presence(is_presence(A, "unsubscribed"), "unsubscribed from alice@localhost")
        await b.expect_presence(is_presence(f"{A}/a", "unavailable"), "unavailable from alice/a")
        await expect_roster(a, B, ("none", None), "6 (alice unsubscribed)")
        await expect_roster(b, A, ("none", None), "6 (alice unsubscribed)")

        # No presence crosses any more.
        a.send_presence(pstatus="nobody should see this")
        await a.barrier()
        await b.roster_get()  # a round trip for bob too
        assert not b.presences.find(lambda p: p["status"] == "nobody should see this")

    run(t, server)


def test_own_presence_reflected(server):
    """§4.2.2 / §4.4.2: initial and later presence go to all of the user's own resources,
    the sending one included."""
    async def t(h):
        a1 = await h.login(f"{A}/a1")
        a2 = await h.online(f"{A}/a2")
        a1.send_presence(pstatus="hello me")
        for c in (a1, a2):
            p = await c.expect_presence(is_presence(f"{A}/a1"), "alice/a1's own presence")
            assert p["status"] == "hello me", xml_str(p)

    run(t, server)


def test_probe_on_login(server):
    """§4.3: when bob comes online his server probes his contacts: he receives alice's current
    presence, and alice receives his."""
    async def t(h):
        a, b = await subscribe_both(h)
        a.send_presence(pstatus="here")
        await b.expect_presence(lambda p: p["status"] == "here", "alice's status")
        await b.close()
        await a.expect_presence(is_presence(f"{B}/b", "unavailable"), "bob's unavailable")

        b2 = await h.login(f"{B}/again")
        b2.send_presence()
        p = await b2.expect_presence(is_presence(f"{A}/a"), "alice's presence (probe answer)")
        assert p["status"] == "here", xml_str(p)
        await a.expect_presence(is_presence(f"{B}/again"), "bob's new initial presence")

    run(t, server)


@pytest.mark.parametrize("how", ["stream-close", "tcp-abort"])
def test_unavailable_when_contact_disconnects(server, how):
    async def t(h):
        a, b = await subscribe_both(h)
        if how == "stream-close":
            await b.close()
        else:
            b.abort()  # no </stream:stream>, no unavailable presence from the client
        p = await a.expect_presence(is_presence(f"{B}/b", "unavailable"),
                                    f"unavailable presence from bob/b after {how}")
        assert str(p["to"]) in (A, f"{A}/a"), xml_str(p)

    run(t, server)


def test_subscription_pre_approval(server):
    """§3.4: alice pre-approves bob; bob's later request is answered by the server."""
    async def t(h):
        a, b = await two_online(h)
        a.send_presence(pto=B, ptype="subscribed")
        push, item = await expect_push(a, B, "after pre-approval")
        item_el = push.xml.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
        assert item["subscription"] == "none" and item_el.get("approved") == "true", xml_str(push)
        # bob must not have been told anything yet.
        await a.barrier()
        assert not b.presences.find(is_presence(A, "subscribed")), "pre-approval leaked to bob"

        b.send_presence(pto=A, ptype="subscribe")
        await b.expect_presence(is_presence(A, "subscribed"), "automatic subscribed")
        await b.expect_presence(is_presence(f"{A}/a"), "alice's presence after approval")
        await expect_roster(a, B, ("from", None), "after bob's subscribe")
        await expect_roster(b, A, ("to", None), "after bob's subscribe")
        assert not a.presences.find(is_presence(B, "subscribe")), \
            "pre-approved request was still delivered to alice"

    run(t, server)


def test_pre_approval_advertised(server):
    """§3.4.1: a server that supports pre-approval says so with <sub
    xmlns='urn:xmpp:features:pre-approval'/> in the stream features."""
    async def t(h):
        a = await h.login(f"{A}/a")
        assert "preapproval" in a.features, \
            f"pre-approval not advertised; stream features seen by slixmpp: {sorted(a.features)}"

    run(t, server)
