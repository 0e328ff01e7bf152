"""XEP-0077 in-band registration with slixmpp's xep_0077 plugin: create an account before
authentication, then log in with it; change the password and remove the account afterwards."""

from __future__ import annotations

import asyncio

import pytest

from harness import NS_REGISTER, SessionFailed, assert_not_authorized, error_condition, q, run, xml_str
from rawxmpp import RawStream

NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"


def registering_client(h, jid: str, password: str, fields: dict | None = None):
    """A slixmpp client that registers `jid` when the server offers in-band registration.
    Returns (client, future of (form, answer))."""
    c = h.client(jid, password, plugins=("xep_0077",))
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_register(form):
        iq = c.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = jid.split("@", 1)[0]
        iq["register"]["password"] = password
        for k, v in (fields or {}).items():
            iq["register"][k] = v
        answer = await c.request(iq)
        if not done.done():
            done.set_result((form, answer))

    c.add_event_handler("register", on_register)
    return c, done


@pytest.mark.parametrize("policy", ["loopback", "open"])
def test_register_then_login(server_factory, policy):
    server = server_factory(server={"registration": policy})

    async def t(h):
        c, done = registering_client(h, "dave@localhost/reg", "dave-Pa55word")
        await c.start_session()
        assert done.done(), "slixmpp never saw the in-band registration stream feature"
        form, answer = done.result()
        query = form.xml.find(q(NS_REGISTER, "query"))
        assert query is not None, f"registration form: {xml_str(form)}"
        for field in ("username", "password"):
            assert query.find(q(NS_REGISTER, field)) is not None, f"form lacks <{field}/>: {xml_str(form)}"
        assert answer["type"] == "result", f"registration refused: {xml_str(answer)}"
        # The same stream then authenticated with the new account...
        assert str(c.boundjid) == "dave@localhost/reg"
        await c.close()
        # ...and a fresh login works too, as does the administration view.
        c2 = await h.login("dave@localhost/again", "dave-Pa55word")
        await c2.barrier()
        assert "dave@localhost" in server.list_users()

    run(t, server)


def test_register_existing_account_conflict(server_factory):
    """XEP-0077 §3.1.1: registering a taken username is a <conflict/>."""
    server = server_factory(server={"registration": "open"})

    async def t(h):
        c, done = registering_client(h, "alice@localhost/reg", "something-else")
        with pytest.raises(SessionFailed):  # the SASL attempt with the new password fails
            await c.start_session()
        assert done.done(), "slixmpp never saw the in-band registration stream feature"
        _form, answer = done.result()
        assert answer["type"] == "error", xml_str(answer)
        assert error_condition(answer)[1] == ["conflict"], xml_str(answer)
        # alice's password is unchanged.
        c2 = await h.login("alice@localhost/still")
        await c2.barrier()

    run(t, server)


def test_registration_closed(server_factory):
    """With registration closed the feature is not offered and no account can be created."""
    server = server_factory(server={"registration": "closed"})

    async def t(h):
        raw = RawStream(server.port, server.ca)
        await raw.connect()
        await raw.open()
        features = await raw.starttls()
        assert features.find(q(NS_REGISTER_FEATURE, "register")) is None, xml_str(features)
        raw.send(f"<iq type='set' id='r1'><query xmlns='{NS_REGISTER}'>"
                 "<username>mallory</username><password>mallory-pw</password></query></iq>")
        # Either an IQ error or the end of the stream; never success.
        el = await raw.next(None, what="an answer to the registration attempt")
        assert not (el.get("type") == "result" and el.get("id") == "r1"), xml_str(el)
        await raw.close()
        assert "mallory@localhost" not in server.list_users()
        c = h.client("mallory@localhost/x", "mallory-pw")
        with pytest.raises(SessionFailed):
            await c.start_session()
        assert_not_authorized(c)

    run(t, server)


def test_change_password(server):
    """XEP-0077 §3.3 after authentication: the new password works, the old one no longer."""
    async def t(h):
        c = await h.login("alice@localhost/pw", plugins=("xep_0077",))
        answer = await c.request(_password_iq(c, "alice", "alice-New-Pa55"))
        assert answer["type"] == "result", xml_str(answer)
        await c.close()
        c2 = await h.login("alice@localhost/new", "alice-New-Pa55")
        await c2.barrier()
        old = h.client("alice@localhost/old")  # the original password
        with pytest.raises(SessionFailed):
            await old.start_session()
        assert_not_authorized(old)

    run(t, server)


def test_cancel_registration(server):
    """XEP-0077 §3.2: <remove/> deletes the account; it can no longer log in."""
    async def t(h):
        c = await h.login("carol@localhost/bye", plugins=("xep_0077",))
        iq = c.iq("set", f"<query xmlns='{NS_REGISTER}'><remove/></query>", to="localhost")
        try:
            answer = await c.request(iq)
            assert answer["type"] == "result", xml_str(answer)
        except AssertionError as e:
            # The server may close the stream right after removing the account.
            assert c.transport is None, str(e)
        again = h.client("carol@localhost/again")
        with pytest.raises(SessionFailed):
            await again.start_session()
        assert_not_authorized(again)
        assert "carol@localhost" not in server.list_users()

    run(t, server)


def _password_iq(c, user: str, password: str):
    return c.iq("set", f"<query xmlns='{NS_REGISTER}'><username>{user}</username>"
                       f"<password>{password}</password></query>", to="localhost")
