"""Reliability features through slixmpp's own plugins, as a real client uses them:
XEP-0160 offline storage with XEP-0203 delay, XEP-0198 stream management with resumption
(and the fallback to offline storage when resumption is refused), XEP-0280 carbons,
XEP-0313 archive paging and filters, and XEP-0184 receipts / XEP-0333 markers carried across
offline storage and resumption (the server never fabricates them).

Connections are cut with `transport.abort()` under slixmpp (no `</stream:stream>`, no TLS
close_notify); slixmpp then resumes with its xep_0198 plugin when it connects again.
Every "exactly once" check ends with a sentinel through the same session queue, so a late
duplicate would have arrived before the count is taken.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from harness import run, unique, xml_str
from reliability_support import (
    NS_SID,
    SMClient,
    ack_and_close,
    cut,
    duplicates,
    errors_received,
    event_inbox,
    failed_condition,
    lose_in_transit,
    messages_with_body,
    plugins,
    reconnect,
    seen_bodies,
    send_batch,
    sentinel,
    sm_client,
    utcnow,
    wait_bodies,
)

BOB = "bob@localhost"
ALICE = "alice@localhost"


def assert_delayed(m, not_before, not_after, by="localhost"):
    """XEP-0203 on a message delivered from offline storage (XEP-0160 §3)."""
    d = m.xml.find("{urn:xmpp:delay}delay")
    assert d is not None, f"no XEP-0203 <delay/>: {xml_str(m)}"
    stamp = m["delay"]["stamp"]
    assert stamp is not None and stamp.tzinfo is not None, f"bad delay stamp: {xml_str(m)}"
    assert not_before - timedelta(seconds=2) <= stamp <= not_after + timedelta(seconds=2), \
        f"delay stamp {stamp} outside [{not_before}, {not_after}]: {xml_str(m)}"
    assert str(m["delay"]["from"]) == by, f"delay from should be the server ({by}): {xml_str(m)}"
    return stamp


# ----------------------------------------------------------------------------------------
# 1. XEP-0160 offline storage with XEP-0203 delay


def test_offline_messages_delivered_in_order_with_delay(server):
    async def t(h):
        a = await h.online(f"{ALICE}/a")
        t0 = utcnow()
        sent = send_batch(a, BOB, unique("offline"), 5)
        await a.barrier()
        t1 = utcnow()
        assert not errors_received(a), f"alice got errors: {errors_received(a)}"

        b = await h.login(f"{BOB}/b", plugins=plugins())
        await b.barrier()
        assert not seen_bodies(b), "offline messages delivered before initial presence (XEP-0160 §4)"
        await b.presence(priority=0)
        await wait_bodies(b, sent)
        await sentinel(a, b)
        got = [m for m in b.messages.seen if m["body"] in sent]
        assert [m["body"] for m in got] == sent, \
            f"order/duplicates: {[m['body'] for m in got]} != {sent}"
        stamps = []
        for m in got:
            assert str(m["from"]) == f"{ALICE}/a", xml_str(m)
            assert m["to"].bare == BOB, xml_str(m)
            assert m["type"] == "chat", xml_str(m)
            stamps.append(assert_delayed(m, t0, t1))
        assert stamps == sorted(stamps), f"delay stamps not in send order: {stamps}"

        # Delivered means deleted: a later session gets nothing again.
        await b.close()
        b2 = await h.online(f"{BOB}/b2")
        await sentinel(a, b2)
        assert not [x for x in seen_bodies(b2) if x in sent], \
            f"offline messages delivered twice: {seen_bodies(b2)}"

    run(t, server)


# ----------------------------------------------------------------------------------------
# 2. XEP-0198 stream management


def bob_target(i: int) -> str:
    """Alternate the bare and the full JID: while bob's session waits for resumption it is
    still available (docs/configuration.md, sm_resume_timeout_secs), so both reach it."""
    return BOB if i % 2 else f"{BOB}/phone"


async def cut_mid_batch(alice, bob, prefix: str, n: int, after: int) -> list[str]:
    """Alice sends n messages; bob's connection is cut as soon as he has the first `after`,
    so the rest are in flight (read or not, queued or written) at the moment of loss."""
    sent = send_batch(alice, bob_target, prefix, n)
    await wait_bodies(bob, sent[:after])
    await cut(bob)
    return sent


async def resume_and_check(b, smb, sm_id) -> None:
    kind = await reconnect(b, smb)
    assert kind == "resumed", (f"expected resumption, got a new session; <failed/>: "
                               f"{[xml_str(f) for f in smb.failed.seen]}")
    resumed = smb.resumed.seen[-1]
    assert resumed["previd"] == sm_id, xml_str(resumed)
    assert str(b.boundjid) == f"{BOB}/phone"
    assert len(smb.started.seen) == 1, "session_start fired again: not a resumption"


def test_sm_resumption_delivers_everything_exactly_once(server):
    async def t(h):
        a = await h.online(f"{ALICE}/a")
        b, smb = await sm_client(h, f"{BOB}/phone")
        sm_id = smb.sm.sm_id

        # Round 1. Handled by bob (not necessarily acknowledged yet): never again.
        before = send_batch(a, bob_target, unique("handled"), 10)
        await wait_bodies(b, before)
        # Written by the server, lost with the connection: must be resent on resumption.
        lost = await lose_in_transit(a, b, bob_target, unique("lost"), 20)
        # Sent while bob has no connection at all: queued for the waiting session.
        during = send_batch(a, bob_target, unique("during"), 10)
        await a.barrier()
        assert not errors_received(a), f"alice got errors while bob was away: {errors_received(a)}"
        await resume_and_check(b, smb, sm_id)
        round1 = before + lost + during
        await wait_bodies(b, round1)

        # Round 2, on the resumed stream: cut while a batch is half read.
        inflight = await cut_mid_batch(a, b, unique("inflight"), 30, after=3)
        during2 = send_batch(a, bob_target, unique("during2"), 10)
        await a.barrier()
        await resume_and_check(b, smb, sm_id)

        everything = round1 + inflight + during2
        await wait_bodies(b, everything)
        await sentinel(a, b)
        got = seen_bodies(b)
        dup = duplicates(got)
        assert not dup, (f"delivered more than once across resumptions (<resumed/>: "
                         f"{[xml_str(x) for x in smb.resumed.seen]}): {dup}")
        assert [x for x in got if x in set(everything)] == everything, \
            "messages reordered across the resumption"
        assert not errors_received(a), f"alice got errors: {errors_received(a)}"
        # Nothing went to offline storage as well.
        await ack_and_close(b, smb)
        b2 = await h.online(f"{BOB}/laptop")
        await sentinel(a, b2)
        assert not [x for x in seen_bodies(b2) if x in set(everything)], \
            f"messages also stored offline after a successful resumption: {seen_bodies(b2)}"

    run(t, server)


@pytest.mark.server_opts(c2s={"sm_resume_timeout_secs": 1})
def test_sm_resumption_refused_after_timeout_falls_back_to_offline(server):
    async def t(h):
        a = await h.online(f"{ALICE}/a")
        b, smb = await sm_client(h, f"{BOB}/phone")

        acked = send_batch(a, bob_target, unique("acked"), 10)
        await wait_bodies(b, acked)
        # An unsolicited <a/> (XEP-0198 §4) tells the server these were handled.
        smb.sm.send_ack()
        await b.barrier()
        handled = send_batch(a, bob_target, unique("handled"), 5)  # read, maybe not acked
        await wait_bodies(b, handled)
        lost = await lose_in_transit(a, b, bob_target, unique("lost"), 20)

        # Past sm_resume_timeout_secs = 1: the session ends for good.
        await asyncio.sleep(3.0)
        t0 = utcnow()
        during = send_batch(a, bob_target, unique("during"), 10)
        await a.barrier()
        t1 = utcnow()
        assert not errors_received(a), f"alice got errors: {errors_received(a)}"

        kind = await reconnect(b, smb)
        assert kind == "new-session", "resumed a session that should have expired"
        assert smb.failed.seen, "no <failed/> for the expired session"
        assert failed_condition(smb.failed.seen[-1]) == ["item-not-found"], \
            f"XEP-0198 §5: unknown/expired previd -> <item-not-found/>: {xml_str(smb.failed.seen[-1])}"
        await b.presence(priority=0)

        await wait_bodies(b, lost + during)
        await sentinel(a, b)
        got = seen_bodies(b)
        counts = {x: got.count(x) for x in acked + handled + lost + during}
        # Acknowledged before the loss: never again.
        assert all(counts[x] == 1 for x in acked), \
            f"acknowledged messages delivered again: {[x for x in acked if counts[x] != 1]}"
        # Read but perhaps not acknowledged: XEP-0198 allows one more delivery, no more.
        assert all(1 <= counts[x] <= 2 for x in handled), {x: counts[x] for x in handled}
        # Never read: from offline storage, exactly once, in order.
        assert all(counts[x] == 1 for x in lost), \
            ("lost-in-transit messages not delivered exactly once", {x: counts[x] for x in lost})
        # Sent after the session ended: offline storage, exactly once, with a delay stamp.
        assert all(counts[x] == 1 for x in during), {x: counts[x] for x in during}
        order = [x for x in got if x in set(lost + during)]
        assert order == lost + during, "offline redelivery out of order"
        for x in during:
            (m,) = messages_with_body(b, x)
            assert_delayed(m, t0, t1)

    run(t, server)


# ----------------------------------------------------------------------------------------
# 3. XEP-0280 carbons


def forwarded(carbon, kind: str):
    """The message inside a carbon_received / carbon_sent copy (slixmpp's carbon stanzas are
    extensions: `msg['carbon_received']` is the forwarded message itself)."""
    fwd = carbon[kind]
    assert fwd is not None and fwd != "" and fwd.xml.tag == "{jabber:client}message", xml_str(carbon)
    return fwd


def test_carbons_between_two_resources_both_directions(server):
    async def t(h):
        a1 = h.client(f"{ALICE}/a1", plugins=plugins("xep_0280"))
        a2 = h.client(f"{ALICE}/a2", plugins=plugins("xep_0280"))
        rx = {c: event_inbox(c, "carbon_received") for c in (a1, a2)}
        tx = {c: event_inbox(c, "carbon_sent") for c in (a1, a2)}
        for c, prio in ((a1, 5), (a2, 1)):
            await c.start_session()
            res = await c.plugin["xep_0280"].enable(timeout=10)
            assert res["type"] == "result", xml_str(res)
            await c.presence(priority=prio)
        a3 = await h.online(f"{ALICE}/a3", priority=0)  # carbons not enabled
        b = await h.online(f"{BOB}/b")

        async def check_received(target, other, body_to):
            body = unique("rx")
            b.chat(body_to, body)
            direct = await target.expect_message(body)
            assert direct.xml.find("{urn:xmpp:carbons:2}received") is None, xml_str(direct)
            copy = await rx[other].get(lambda x: forwarded(x, "carbon_received")["body"] == body,
                                       timeout=10, what=f"carbon_received for {body}")
            assert str(copy["from"]) == ALICE, xml_str(copy)
            assert str(copy["to"]) == str(other.boundjid), xml_str(copy)
            inner = forwarded(copy, "carbon_received")
            assert inner["body"] == body, xml_str(copy)
            assert str(inner["from"]) == f"{BOB}/b", xml_str(copy)
            assert inner["to"].bare == ALICE, xml_str(copy)
            return body

        async def check_sent(sender, other):
            body = unique("tx")
            sender.chat(f"{BOB}/b", body)
            await b.expect_message(body)
            copy = await tx[other].get(lambda x: forwarded(x, "carbon_sent")["body"] == body,
                                       timeout=10, what=f"carbon_sent for {body}")
            assert str(copy["from"]) == ALICE, xml_str(copy)
            inner = forwarded(copy, "carbon_sent")
            assert inner["body"] == body, xml_str(copy)
            assert str(inner["from"]) == str(sender.boundjid), xml_str(copy)
            assert str(inner["to"]) == f"{BOB}/b", xml_str(copy)
            return body

        bodies = [
            await check_received(a1, a2, f"{ALICE}/a1"),
            await check_received(a2, a1, f"{ALICE}/a2"),
            await check_received(a1, a2, ALICE),  # bare JID: highest priority gets it
            await check_sent(a1, a2),
            await check_sent(a2, a1),
        ]
        for c in (a1, a2, a3):
            await sentinel(b, c)
        # No resource got a copy of its own traffic, and no copy went twice. (The sentinels
        # themselves are copied to the other resources, rightly: ignore those.)
        for c in (a1, a2):
            extra = ([x for x in rx[c].items if forwarded(x, "carbon_received")["body"] in bodies]
                     + [x for x in tx[c].items if forwarded(x, "carbon_sent")["body"] in bodies])
            assert not extra, f"extra carbons at {c.boundjid}: {[xml_str(x) for x in extra]}"
            rx[c].clear()
            tx[c].clear()
        # A resource that did not enable carbons gets no copies at all.
        assert not [m for m in a3.messages.seen
                    if m.xml.find("{urn:xmpp:carbons:2}received") is not None
                    or m.xml.find("{urn:xmpp:carbons:2}sent") is not None], \
            f"copies at a resource without carbons: {[xml_str(m) for m in a3.messages.seen]}"
        assert len(bodies) == len(set(bodies))

        # <private/> (XEP-0280 §7) is not copied.
        m = a1.make_message(mto=f"{BOB}/b", mbody=unique("private"), mtype="chat")
        m.enable("carbon_private")
        m.send()
        await b.expect_message(m["body"])
        await sentinel(b, a2)
        assert not tx[a2].items, f"<private/> message copied: {xml_str(tx[a2].items[0])}"
        rx[a2].clear()

        # After <disable/>, no more copies.
        res = await a2.plugin["xep_0280"].disable(timeout=10)
        assert res["type"] == "result", xml_str(res)
        b.chat(f"{ALICE}/a1", unique("after-disable"))
        a1.chat(f"{BOB}/b", unique("after-disable"))
        await sentinel(b, a1)
        await sentinel(a1, b)
        await sentinel(b, a2)
        assert not rx[a2].items and not tx[a2].items, \
            f"carbons after <disable/>: {[xml_str(x) for x in rx[a2].items + tx[a2].items]}"

    run(t, server)


# ----------------------------------------------------------------------------------------
# 4. XEP-0313 archive: 1,000 messages, paging both ways, with/start/end filters

N_ALICE = 1000
N_CAROL = 20
PAGE = 100


async def mam_pages(client, *, reverse=False, **kw):
    """Every page of a query through xep_0313's RSM iterator (max PAGE), until the server
    says `complete`.

    Client workaround, not a server issue: slixmpp 1.17's ResultIterator (xep_0059) stops when
    `<first index=i>` + page size == `<count/>`, which is the test for the *last forward* page;
    paging backwards, the first page (the newest items) already satisfies it, so slixmpp would
    stop after one page. We keep slixmpp's iterator (it builds every query, `before`/`after`
    included) and only take the stop decision from XEP-0313's `complete` flag instead."""
    pages = []
    it = client.plugin["xep_0313"].retrieve(iterator=True, reverse=reverse,
                                            rsm={"max": PAGE}, **kw)
    while True:
        try:
            page = await it.next()
        except StopAsyncIteration:
            break
        pages.append(page)
        if fin_complete(page):
            break
        it._stop = False
        assert len(pages) <= 2 * (N_ALICE + N_CAROL) // PAGE, "paging does not end"
    return pages


def page_bodies(page):
    return [r["mam_result"]["forwarded"]["stanza"]["body"] for r in page["mam"]["results"]]


def fin_complete(page) -> bool:
    return page["mam_fin"].xml.get("complete") in ("true", "1")


def test_mam_paging_and_filters(server):
    async def t(h):
        started = time.monotonic()
        a = await h.online(f"{ALICE}/a")
        c = await h.online("carol@localhost/c")
        b = await h.login(f"{BOB}/b", plugins=plugins("xep_0313"))
        await b.presence()

        prefix = unique("mam")

        async def batch(lo, hi):
            bodies = [f"{prefix}-{i:04d}" for i in range(lo, hi)]
            for x in bodies:
                a.chat(BOB, x)
            await wait_bodies(b, bodies, timeout=60)
            return bodies

        # Three time windows separated by >1 s gaps; carol writes in the middle one.
        w1 = await batch(0, 400)
        await asyncio.sleep(1.2)
        start = utcnow()
        await asyncio.sleep(1.2)
        w2 = await batch(400, 700)
        carol = send_batch(c, BOB, prefix + "-carol", N_CAROL)
        await wait_bodies(b, carol)
        await asyncio.sleep(1.2)
        end = utcnow()
        await asyncio.sleep(1.2)
        w3 = await batch(700, N_ALICE)
        all_alice = w1 + w2 + w3
        print(f"sent {N_ALICE + N_CAROL} messages in {time.monotonic() - started:.1f}s")

        # Delivered messages carry the archive's stanza-id (XEP-0359), by = bob's bare JID.
        delivered_ids = {}
        for m in b.messages.seen:
            if m["body"] and m["body"].startswith(prefix):
                sids = [s for s in m.xml.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == BOB]
                assert len(sids) == 1, f"expected one stanza-id by {BOB}: {xml_str(m)}"
                delivered_ids[m["body"]] = sids[0].get("id")

        # Forward through everything.
        pages = await mam_pages(b)
        fwd = [x for p in pages for x in page_bodies(p)]
        assert len(fwd) == N_ALICE + N_CAROL and not duplicates(fwd), \
            f"{len(fwd)} results, duplicates: {duplicates(fwd)}"
        assert fwd == w1 + w2 + carol + w3, "forward paging out of chronological order"
        assert [len(page_bodies(p)) for p in pages] == [PAGE] * 10 + [20], \
            [len(page_bodies(p)) for p in pages]
        assert [fin_complete(p) for p in pages] == [False] * 10 + [True], \
            f"complete flags: {[fin_complete(p) for p in pages]}"
        counts = {p["mam_fin"]["rsm"]["count"] for p in pages}
        assert counts == {str(N_ALICE + N_CAROL)}, f"RSM <count/> on an unfiltered query: {counts}"
        # Archive ids are the stanza-ids the messages were delivered with.
        result_ids = {r["mam_result"]["forwarded"]["stanza"]["body"]: r["mam_result"]["id"]
                      for p in pages for r in p["mam"]["results"]}
        assert result_ids == delivered_ids, \
            "archive ids differ from the delivered stanza-ids"

        # The same through xep_0313's message-level iterator (forward; see mam_pages for why
        # not backward).
        it_bodies = [m["mam_result"]["forwarded"]["stanza"]["body"]
                     async for m in b.plugin["xep_0313"].iterate(rsm={"max": PAGE})]
        assert it_bodies == fwd, f"xep_0313.iterate: {len(it_bodies)} results"

        # Backward from the end: newest page first, each page still oldest-to-newest.
        back = await mam_pages(b, reverse=True)
        assert [len(page_bodies(p)) for p in back] == [PAGE] * 10 + [20], \
            f"backward page sizes {[len(page_bodies(p)) for p in back]}"
        assert [fin_complete(p) for p in back] == [False] * 10 + [True], \
            f"backward complete flags: {[fin_complete(p) for p in back]}"
        assert [x for p in reversed(back) for x in page_bodies(p)] == fwd, \
            "backward paging does not mirror forward paging"
        # XEP-0059: <first index/> (optional) is the position of the page's first item in the
        # whole set; where the server gives it, it must be right.
        for pgs, want in ((pages, range(0, 1001, 100)), (back, [*range(920, 19, -100), 0])):
            idx = [p["mam_fin"]["rsm"]["first_index"] for p in pgs]
            bad = [(i, w) for i, w in zip(idx, want) if i not in ("", None) and i != str(w)]
            assert not bad, f"wrong <first index/> (got, expected): {bad}; all: {idx}"

        # Filtered by peer.
        with_carol = [x for p in await mam_pages(b, with_jid="carol@localhost")
                      for x in page_bodies(p)]
        assert with_carol == carol, with_carol
        with_alice = await mam_pages(b, with_jid=ALICE)
        assert [x for p in with_alice for x in page_bodies(p)] == all_alice
        assert fin_complete(with_alice[-1]) and not any(fin_complete(p) for p in with_alice[:-1])

        # Filtered by time window: exactly the middle batch (alice's and carol's).
        window = [x for p in await mam_pages(b, start=start, end=end) for x in page_bodies(p)]
        assert window == w2 + carol, (len(window), window[:3], window[-3:])
        only_start = [x for p in await mam_pages(b, start=end) for x in page_bodies(p)]
        assert only_start == w3, len(only_start)
        only_end = [x for p in await mam_pages(b, end=start) for x in page_bodies(p)]
        assert only_end == w1, len(only_end)
        # Peer and time together, backwards.
        both = await mam_pages(b, with_jid=ALICE, start=start, end=end, reverse=True)
        assert [x for p in reversed(both) for x in page_bodies(p)] == w2
        assert fin_complete(both[-1])

        # Alice's archive has her 1,000 sent messages too.
        alice_mam = h.client(f"{ALICE}/mam", plugins=plugins("xep_0313"))
        await alice_mam.start_session()
        sent_pages = await mam_pages(alice_mam, with_jid=BOB)
        assert [x for p in sent_pages for x in page_bodies(p)] == all_alice
        print(f"test body took {time.monotonic() - started:.1f}s")

    run(t, server, timeout=110)


# ----------------------------------------------------------------------------------------
# 5. XEP-0184 receipts and XEP-0333 markers across offline storage and resumption


def receipt_client(h, jid, *extra):
    c = h.client(jid, plugins=plugins("xep_0184", *extra))
    c.plugin["xep_0184"].auto_request = True   # requests on every chat message with a body
    c.plugin["xep_0184"].auto_ack = True       # answers every request (slixmpp's default)
    return c


def receipts_for(inbox, msg, seen=False) -> list[str]:
    """Receipts for `msg` in an event inbox (not yet taken, or ever seen). Receipts for other
    messages are expected: both clients auto-request and auto-acknowledge, sentinels too."""
    return [xml_str(x) for x in (inbox.seen if seen else inbox.items) if x["receipt"] == msg["id"]]


def test_receipt_request_and_receipt_survive_offline_storage(server):
    async def t(h):
        a = receipt_client(h, f"{ALICE}/a")
        receipts = event_inbox(a, "receipt_received")
        await a.start_session()
        await a.presence()

        msg = a.make_message(mto=BOB, mbody=unique("ask-receipt"), mtype="chat")
        msg.send()
        await a.barrier()
        await asyncio.sleep(0.3)
        assert not receipts.seen, \
            f"a receipt before bob ever logged in (fabricated): {xml_str(receipts.seen[0])}"

        # bob was offline: the request comes out of offline storage, slixmpp answers it.
        b = receipt_client(h, f"{BOB}/b")
        await b.start_session()
        await b.presence()
        got = await b.expect_message(msg["body"])
        assert got["request_receipt"], f"<request/> lost in offline storage: {xml_str(got)}"
        assert got["id"] == msg["id"], xml_str(got)
        r = await receipts.get(lambda x: x["receipt"] == msg["id"], timeout=10,
                               what="the receipt from bob")
        assert r["receipt"] == msg["id"] and str(r["from"]) == f"{BOB}/b", xml_str(r)
        await sentinel(b, a)
        assert not receipts_for(receipts, msg), f"receipt twice: {receipts_for(receipts, msg)}"

        # Now alice is the one offline when the receipt is sent.
        msg2 = a.make_message(mto=f"{BOB}/b", mbody=unique("ask-receipt"), mtype="chat")
        msg2["request_receipt"] = True  # full JID: slixmpp's auto_request would ask disco first
        b.plugin["xep_0184"].auto_ack = False
        msg2.send()
        req = await b.expect_message(msg2["body"])
        await a.close()
        await asyncio.sleep(0.3)
        t0 = utcnow()
        b.plugin["xep_0184"].ack(req)  # to alice/a, who is gone: stored offline
        await b.barrier()
        t1 = utcnow()
        assert not errors_received(b), f"receipt bounced: {errors_received(b)}"

        a2 = receipt_client(h, f"{ALICE}/a2")
        receipts2 = event_inbox(a2, "receipt_received")
        await a2.start_session()
        await a2.presence()
        r = await receipts2.get(lambda x: x["receipt"] == msg2["id"], timeout=10,
                                what="the receipt stored offline")
        assert str(r["from"]) == f"{BOB}/b", xml_str(r)
        assert not r["body"], f"the server added a body to a receipt: {xml_str(r)}"
        assert_delayed(r, t0, t1)
        await sentinel(b, a2)
        assert not receipts_for(receipts2, msg2), f"receipt twice: {receipts_for(receipts2, msg2)}"

    run(t, server)


def test_receipt_survives_sm_resumption(server):
    async def t(h):
        a = receipt_client(h, f"{ALICE}/a", "xep_0198")
        sma = SMClient(a)
        receipts = event_inbox(a, "receipt_received")
        await a.start_session()
        await sma.enabled.get(timeout=10, what="<enabled/>")
        await a.presence()

        msg = a.make_message(mto=BOB, mbody=unique("ask-receipt"), mtype="chat")
        msg.send()
        await a.barrier()
        await cut(a)

        # bob logs in while alice's session waits for resumption; his client answers.
        b = receipt_client(h, f"{BOB}/b")
        await b.start_session()
        await b.presence()
        got = await b.expect_message(msg["body"])
        assert got["request_receipt"], xml_str(got)
        await b.barrier()  # bob's receipt has been routed (to alice's detached session)

        assert await reconnect(a, sma) == "resumed"
        r = await receipts.get(lambda x: x["receipt"] == msg["id"], timeout=10,
                               what="the receipt after resumption")
        assert str(r["from"]) == f"{BOB}/b", xml_str(r)
        await sentinel(b, a)
        assert not receipts_for(receipts, msg), f"receipt twice: {receipts_for(receipts, msg)}"
        # alice's message itself reached bob exactly once (slixmpp resent only what the
        # server had not acknowledged in <resumed h=.../>).
        await sentinel(a, b)
        assert len(messages_with_body(b, msg["body"])) == 1, "message duplicated by resumption"

        # And it is not also waiting in offline storage.
        await ack_and_close(a, sma)
        a2 = receipt_client(h, f"{ALICE}/a2")
        receipts2 = event_inbox(a2, "receipt_received")
        await a2.start_session()
        await a2.presence()
        await sentinel(b, a2)
        assert not receipts_for(receipts2, msg, seen=True), \
            f"receipt also stored offline: {receipts_for(receipts2, msg, seen=True)}"

    run(t, server)


def test_chat_markers_survive_offline_storage_and_resumption(server):
    async def t(h):
        def marker_client(jid, *extra):
            return h.client(jid, plugins=plugins("xep_0333", *extra))

        a = marker_client(f"{ALICE}/a", "xep_0198")
        sma = SMClient(a)
        markers = event_inbox(a, "marker")
        await a.start_session()
        await sma.enabled.get(timeout=10, what="<enabled/>")
        await a.presence()

        # 1. The markable message waits offline for bob; the markers wait offline for alice.
        msg = a.make_message(mto=BOB, mbody=unique("markable"), mtype="chat")
        msg.enable("markable")
        msg.send()
        await a.barrier()
        await ack_and_close(a, sma)

        b = marker_client(f"{BOB}/b")
        await b.start_session()
        await b.presence()
        got = await b.expect_message(msg["body"])
        assert got.xml.find("{urn:xmpp:chat-markers:0}markable") is not None, \
            f"<markable/> lost in offline storage: {xml_str(got)}"
        t0 = utcnow()
        b.plugin["xep_0333"].send_marker(got["from"], got["id"], "received", mtype="chat")
        b.plugin["xep_0333"].send_marker(got["from"], got["id"], "displayed", mtype="chat")
        await b.barrier()
        t1 = utcnow()
        assert not errors_received(b), f"markers bounced: {errors_received(b)}"

        a = marker_client(f"{ALICE}/a", "xep_0198")
        sma = SMClient(a)
        markers = event_inbox(a, "marker")
        await a.start_session()
        await sma.enabled.get(timeout=10, what="<enabled/>")
        await a.presence()
        m1 = await markers.get(timeout=10, what="<received/> marker from offline storage")
        m2 = await markers.get(timeout=10, what="<displayed/> marker from offline storage")
        assert m1["received"]["id"] == msg["id"] and m1.xml.find(
            "{urn:xmpp:chat-markers:0}received") is not None, xml_str(m1)
        assert m2["displayed"]["id"] == msg["id"] and m2.xml.find(
            "{urn:xmpp:chat-markers:0}displayed") is not None, xml_str(m2)
        for m in (m1, m2):
            assert_delayed(m, t0, t1)
        await sentinel(b, a)
        assert not markers.items, f"markers twice: {[xml_str(x) for x in markers.items]}"

        # 2. Across a resumption of alice's stream.
        msg = a.make_message(mto=f"{BOB}/b", mbody=unique("markable"), mtype="chat")
        msg.enable("markable")
        msg.send()
        got = await b.expect_message(msg["body"])
        await cut(a)
        b.plugin["xep_0333"].send_marker(got["from"], got["id"], "displayed", mtype="chat")
        await b.barrier()
        assert await reconnect(a, sma) == "resumed"
        m = await markers.get(timeout=10, what="<displayed/> marker after resumption")
        assert m["displayed"]["id"] == msg["id"] and str(m["from"]) == f"{BOB}/b", xml_str(m)
        await sentinel(b, a)
        assert not markers.items, f"marker twice: {[xml_str(x) for x in markers.items]}"

    run(t, server)
