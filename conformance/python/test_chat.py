"""One-to-one messages between two accounts with two resources each (RFC 6121 §8.5)."""

from __future__ import annotations

from harness import error_condition, run, unique, xml_str


async def sentinel(sender, target, body_prefix="sentinel"):
    """A message to `target`'s full JID: once it arrived, anything sent earlier by `sender` that
    was routed to `target` has arrived too (one session, one FIFO queue)."""
    body = unique(body_prefix)
    sender.chat(str(target.boundjid), body)
    await target.expect_message(body)


def test_bare_jid_goes_to_highest_priority(server):
    """§8.5.2.1.1: a chat message to the bare JID reaches the highest-priority resource only."""
    async def t(h):
        a1 = await h.online("alice@localhost/a1", priority=5)
        a2 = await h.online("alice@localhost/a2", priority=1)
        b1 = await h.online("bob@localhost/b1", priority=0)
        await h.online("bob@localhost/b2", priority=0)

        body = unique()
        b1.chat("alice@localhost", body)
        m = await a1.expect_message(body)
        assert str(m["from"]) == "bob@localhost/b1", xml_str(m)
        assert m["type"] == "chat"
        await sentinel(b1, a2)
        assert not a2.messages.find(lambda x: x["body"] == body), "lower-priority resource got it too"

        # Priorities change with presence: now a2 is the highest.
        await a2.presence(priority=10)
        body = unique()
        b1.chat("alice@localhost", body)
        await a2.expect_message(body)
        await sentinel(b1, a1)
        assert not a1.messages.find(lambda x: x["body"] == body), "lower-priority resource got it too"

    run(t, server)


def test_equal_priorities(server):
    """With equal priorities the message reaches at least one of them, and no resource twice."""
    async def t(h):
        a1 = await h.online("alice@localhost/a1", priority=3)
        a2 = await h.online("alice@localhost/a2", priority=3)
        b1 = await h.online("bob@localhost/b1")
        body = unique()
        b1.chat("alice@localhost", body)
        await sentinel(b1, a1)
        await sentinel(b1, a2)
        got = [c for c in (a1, a2) for m in c.messages.seen if m["body"] == body]
        assert 1 <= len(got) <= 2 and len(set(id(c) for c in got)) == len(got), \
            f"delivered {len(got)} times: {[str(c.boundjid) for c in got]}"

    run(t, server)


def test_full_jid_reaches_exactly_that_resource(server):
    async def t(h):
        a1 = await h.online("alice@localhost/a1", priority=5)
        a2 = await h.online("alice@localhost/a2", priority=1)
        b1 = await h.online("bob@localhost/b1", priority=5)
        b2 = await h.online("bob@localhost/b2", priority=1)

        # To the lower-priority resource, both ways.
        body = unique()
        b1.chat("alice@localhost/a2", body)
        m = await a2.expect_message(body)
        assert str(m["from"]) == "bob@localhost/b1"
        await sentinel(b1, a1)
        assert not a1.messages.find(lambda x: x["body"] == body)

        body = unique()
        a1.chat("bob@localhost/b2", body)
        m = await b2.expect_message(body)
        assert str(m["from"]) == "alice@localhost/a1"
        assert str(m["to"]) == "bob@localhost/b2"
        await sentinel(a1, b1)
        assert not b1.messages.find(lambda x: x["body"] == body)

        # A conversation: replies go back to the full JID they came from.
        body = unique()
        b2.chat(str(m["from"]), body)
        r = await a1.expect_message(body)
        assert str(r["from"]) == "bob@localhost/b2"

    run(t, server)


def test_negative_priority_never_gets_bare_jid_messages(server):
    """§4.7.2.3: a resource with negative priority never receives messages sent to the bare JID."""
    async def t(h):
        b_pos = await h.online("bob@localhost/zero", priority=0)
        b_neg = await h.online("bob@localhost/negative", priority=-1)
        a = await h.online("alice@localhost/a")
        body = unique()
        a.chat("bob@localhost", body)
        await b_pos.expect_message(body)
        await sentinel(a, b_neg)
        assert not b_neg.messages.find(lambda x: x["body"] == body)
        # ...but its full JID is reachable.
        body = unique()
        a.chat("bob@localhost/negative", body)
        await b_neg.expect_message(body)

    run(t, server)


def test_chat_to_offline_account_is_stored_or_bounced(server):
    """§8.5.2.2.1: with no available resource a chat message is stored offline or bounced with
    <service-unavailable/>; it is not silently lost."""
    async def t(h):
        a = await h.online("alice@localhost/a")
        body = unique()
        a.chat("bob@localhost", body)
        await a.barrier()
        try:
            bounced = await a.messages.get(lambda m: m["type"] == "error", timeout=2)
        except AssertionError:
            bounced = None
        if bounced is not None:
            assert error_condition(bounced)[1] == ["service-unavailable"], xml_str(bounced)
            assert str(bounced["from"]) == "bob@localhost", xml_str(bounced)
            print("offline chat message: bounced with <service-unavailable/>")
            return
        # Not bounced: then it must be stored and delivered when bob comes online.
        b = await h.online("bob@localhost/b")
        try:
            await b.expect_message(body, timeout=5)
            print("offline chat message: stored and delivered at login")
        except AssertionError:
            raise AssertionError("chat message to an offline account was neither bounced with "
                                 "<service-unavailable/> nor delivered later") from None

    run(t, server)
