"""RFC 6120 §8.2.3 / RFC 6121 §8.5: IQs nobody handles are answered with <service-unavailable/>
(type cancel), from the address they were sent to, with the same id."""

from __future__ import annotations

import pytest

from harness import NS_UNKNOWN, error_condition, run, xml_str


def unknown_iq(client, to: str | None, itype: str = "get"):
    return client.iq(itype, f"<query xmlns='{NS_UNKNOWN}'><x>1</x></query>", to=to)


async def assert_service_unavailable(client, iq, expected_from: str):
    resp = await client.request(iq)
    assert resp["type"] == "error", f"expected an error, got {xml_str(resp)}"
    assert resp["id"] == iq["id"]
    assert str(resp["from"]) == expected_from, f"error from {resp['from']!s}: {xml_str(resp)}"
    assert error_condition(resp) == ("cancel", ["service-unavailable"]), xml_str(resp)
    return resp


@pytest.mark.parametrize("itype", ["get", "set"])
def test_unknown_payload_to_server(server, itype):
    async def t(h):
        a = await h.login("alice@localhost/a")
        await assert_service_unavailable(a, unknown_iq(a, "localhost", itype), "localhost")

    run(t, server)


@pytest.mark.parametrize("bob_state", ["online", "offline"])
def test_unknown_payload_to_other_users_bare_jid(server, bob_state):
    """An IQ to a bare JID is answered by the server on the account's behalf (§8.5.2.1.3 /
    §8.5.2.2.3); it is never delivered to one of the account's resources."""
    async def t(h):
        bob = await h.online("bob@localhost/b") if bob_state == "online" else None
        a = await h.login("alice@localhost/a")
        await assert_service_unavailable(a, unknown_iq(a, "bob@localhost"), "bob@localhost")
        await assert_service_unavailable(a, unknown_iq(a, "bob@localhost", "set"), "bob@localhost")
        if bob is not None:
            await bob.barrier()
            assert not bob.iq_requests.find(), \
                f"IQ to the bare JID was delivered to a resource: {xml_str(bob.iq_requests.items[0])}"

    run(t, server)


def test_unknown_payload_to_own_bare_jid(server):
    """No 'to' means the user's own bare JID (RFC 6120 §10.3.3)."""
    async def t(h):
        a = await h.login("alice@localhost/a")
        resp = await a.request(unknown_iq(a, None))
        assert resp["type"] == "error", xml_str(resp)
        assert error_condition(resp) == ("cancel", ["service-unavailable"]), xml_str(resp)
        assert str(resp["from"]) in ("", "alice@localhost"), xml_str(resp)

    run(t, server)


def test_iq_to_unknown_account(server):
    """§8.5.1: an IQ to an account that does not exist gets <service-unavailable/>."""
    async def t(h):
        a = await h.login("alice@localhost/a")
        await assert_service_unavailable(a, unknown_iq(a, "nobody@localhost"), "nobody@localhost")

    run(t, server)


def test_iq_to_offline_full_jid(server):
    """§8.5.3.2.1: no session with that resource: <service-unavailable/> for an IQ."""
    async def t(h):
        await h.online("bob@localhost/b")
        a = await h.login("alice@localhost/a")
        await assert_service_unavailable(a, unknown_iq(a, "bob@localhost/elsewhere"),
                                         "bob@localhost/elsewhere")

    run(t, server)


def test_iq_to_full_jid_is_delivered(server):
    """An IQ to an online full JID reaches that client, and its answer comes back."""
    async def t(h):
        bob = await h.online("bob@localhost/b")
        a = await h.login("alice@localhost/a")
        iq = unknown_iq(a, "bob@localhost/b")
        resp = await a.request(iq)
        got = bob.iq_requests.find(lambda x: x["id"] == iq["id"])
        assert got, "bob/b never saw the IQ"
        assert str(got[0]["from"]) == "alice@localhost/a", xml_str(got[0])
        # slixmpp (bob) answers unknown payloads itself; the answer is routed back.
        assert resp["type"] == "error" and str(resp["from"]) == "bob@localhost/b", xml_str(resp)

    run(t, server)
