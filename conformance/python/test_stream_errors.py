"""Bad input on raw sockets (RFC 6120 §4.9 stream errors, §11 restricted XML, size limits).

Each test asserts the exact <stream:error/> condition the server sends, that it sends a stream
header first when it had not yet (§4.9.1.2) and closes the stream and the connection
afterwards. Then `assert_survived` checks that nothing else was hurt: a client that logged in
before the attack still gets a message from a third client, the server shuts down cleanly on
SIGTERM, and after a restart on the same data directory the account logs in and its roster
item is still there.
"""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from harness import q, run, unique, xml_str
from rawxmpp import NS_SASL, NS_TLS, NoAnswer, RawStream, header, mechanisms
from tern_server import ACCOUNTS

#: Most memory the server may use after an attack (debug build, a handful of sessions).
MAX_RSS_KIB = 512 * 1024

BILLION_LAUGHS_DTD = (
    "<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
    + "".join(
        f" <!ENTITY lol{i} \"{(f'&lol{i - 1};' if i > 1 else '&lol;') * 10}\">\n" for i in range(1, 10)
    )
    + "]>\n"
)


# ----------------------------------------------------------------------------------------
# Before and after each attack


def attack_test(server, attack, *, check_rss: bool = False):
    """Runs `await attack(h)` between a bystander's login and the survival checks."""

    async def t(h):
        alice = await h.online("alice@localhost/bystander")
        await alice.roster_set("bob@localhost", name="Bob", groups=("Friends",))
        await attack(h)
        await assert_survived(h, server, alice, check_rss=check_rss)

    run(t, server)


async def assert_survived(h, server, alice, *, check_rss: bool = False):
    assert server.running, f"the server exited during the attack:\n{server.log_tail(50)}"
    if check_rss:
        rss = server.rss_kib()
        assert rss is not None and rss < MAX_RSS_KIB, f"server RSS {rss} KiB after the attack"
    # The bystander's session is untouched and still receives messages.
    assert alice.transport is not None, "the bystander lost its connection"
    assert not alice.stream_errors.seen, f"bystander got {alice.stream_error_conditions()}"
    carol = await h.online("carol@localhost/witness")
    body = unique("after-attack")
    carol.chat("alice@localhost/bystander", body)
    m = await alice.expect_message(body)
    assert str(m["from"]) == "carol@localhost/witness", xml_str(m)
    # Accounts and rosters survive a clean restart on the same data directory.
    await h.close()
    code = await asyncio.to_thread(server.stop)
    assert code == 0, f"tern exited with {code} on SIGTERM"
    await asyncio.to_thread(server.start)
    alice2 = await h.login("alice@localhost/after-restart")
    items, _, _ = await alice2.roster_get()
    assert items.get("bob@localhost", {}).get("name") == "Bob", f"roster after restart: {items}"
    assert items["bob@localhost"]["groups"] == ["Friends"], items


async def stream_in(server, phase: str) -> RawStream:
    """A raw stream in the given phase:
    pre-tls        connected to the STARTTLS port, stream open, features read
    authenticated  STARTTLS, PLAIN, bound as bob@localhost/attacker
    authenticated-direct-tls   the same over XEP-0368 direct TLS
    """
    if phase == "pre-tls":
        raw = RawStream(server.port, server.ca)
        await raw.connect()
        await raw.open()
        return raw
    direct = phase == "authenticated-direct-tls"
    raw = RawStream(server.tls_port if direct else server.port, server.ca, direct_tls=direct)
    jid = await raw.login("bob", ACCOUNTS["bob"], "attacker")
    assert jid == "bob@localhost/attacker", jid
    return raw


async def fresh_connection(server) -> RawStream:
    raw = RawStream(server.port, server.ca)
    return await raw.connect()


# ----------------------------------------------------------------------------------------
# Well-formedness


@pytest.mark.parametrize("followed_by", [
    pytest.param("", id="alone"),
    pytest.param("</message><presence/>", id="more-input"),
])
@pytest.mark.parametrize("phase", ["pre-tls", "authenticated"])
def test_malformed_xml(server, phase, followed_by):
    """A mismatched end tag is <not-well-formed/>."""
    async def attack(h):
        raw = await stream_in(server, phase)
        raw.send("<message to='alice@localhost' type='chat'><body>hi</message>" + followed_by)
        await raw.expect_stream_error("not-well-formed", timeout=5)
        await raw.close()

    attack_test(server, attack)


@pytest.mark.parametrize("phase", ["pre-tls", "authenticated"])
def test_bare_less_than_in_text(server, phase):
    async def attack(h):
        raw = await stream_in(server, phase)
        raw.send("<message to='alice@localhost' type='chat'><body>1 < 2</body></message>")
        await raw.expect_stream_error("not-well-formed", timeout=5)
        await raw.close()

    attack_test(server, attack)


def test_malformed_stream_header(server):
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' <<>>")
        await raw.expect_stream_error("not-well-formed")
        await raw.close()

    attack_test(server, attack)


def test_invalid_utf8(server):
    async def attack(h):
        raw = await stream_in(server, "pre-tls")
        raw.send(b"<message to='alice@localhost'><body>\xff\xfe\xc3\x28</body></message>")
        # RFC 6120 §11.6: only UTF-8; an invalid sequence is not well-formed XML.
        await raw.expect_stream_error({"not-well-formed", "unsupported-encoding"})
        await raw.close()

    attack_test(server, attack)


# ----------------------------------------------------------------------------------------
# Restricted XML (RFC 6120 §11.1): no DTD, comments, processing instructions, entities


def test_doctype(server):
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ELEMENT stream:stream ANY>]>"
                 + header(prolog=False))
        await raw.expect_stream_error("restricted-xml")
        await raw.close()

    attack_test(server, attack)


def test_doctype_with_external_entity(server):
    """An XXE attempt: a SYSTEM entity pointing at a local file."""
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
                 + header(prolog=False)
                 + "<message to='alice@localhost'><body>&xxe;</body></message>")
        await raw.expect_stream_error("restricted-xml")
        assert b"root:" not in raw.raw, "file contents echoed back"
        await raw.close()

    attack_test(server, attack)


def test_billion_laughs(server):
    """The entity bomb is refused at the DTD, quickly and without memory growth."""
    async def attack(h):
        raw = await fresh_connection(server)
        started = time.monotonic()
        raw.send("<?xml version='1.0'?>\n" + BILLION_LAUGHS_DTD + header(prolog=False)
                 + "<message to='alice@localhost' type='chat'><body>&lol9;</body></message>")
        await raw.expect_stream_error("restricted-xml", timeout=5)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"took {elapsed:.1f}s to refuse the entity bomb"
        await raw.close()
        # Still responsive to a new connection right away.
        probe = await fresh_connection(server)
        features = await probe.open(timeout=5)
        assert features.find(q(NS_TLS, "starttls")) is not None, xml_str(features)
        await probe.close()

    attack_test(server, attack, check_rss=True)


def test_entity_reference_without_dtd(server):
    """A reference to an undeclared entity is refused (undeclared: not well-formed; or refused
    as restricted XML)."""
    async def attack(h):
        raw = await stream_in(server, "pre-tls")
        raw.send("<message to='alice@localhost'><body>&lol9;</body></message>")
        await raw.expect_stream_error({"not-well-formed", "restricted-xml"})
        await raw.close()

    attack_test(server, attack)


def test_doctype_inside_stream(server):
    """A DTD after the stream opened is both not well-formed and restricted."""
    async def attack(h):
        raw = await stream_in(server, "pre-tls")
        raw.send("<!DOCTYPE x [<!ENTITY a 'b'>]><message><body>&a;</body></message>")
        await raw.expect_stream_error({"restricted-xml", "not-well-formed"})
        await raw.close()

    attack_test(server, attack)


RESTRICTED = {
    "comment": {
        "prolog": "<!-- a comment before the stream -->",
        "top-level": "<!-- a comment between stanzas -->",
        "in-stanza": "<message to='alice@localhost' type='chat'><!-- hidden --><body>{body}</body></message>",
    },
    "processing-instruction": {
        "prolog": "<?xml-stylesheet href='evil.xsl'?>",
        "top-level": "<?tern-test between stanzas?>",
        "in-stanza": "<message to='alice@localhost' type='chat'><?tern-test inside?><body>{body}</body></message>",
    },
}


@pytest.mark.parametrize("phase,position", [
    ("pre-tls", "prolog"), ("pre-tls", "top-level"), ("pre-tls", "in-stanza"),
    ("authenticated", "top-level"), ("authenticated", "in-stanza"),
])
@pytest.mark.parametrize("kind", ["comment", "processing-instruction"])
def test_restricted_xml(server, kind, phase, position):
    snippet = RESTRICTED[kind][position]
    body = unique("restricted")

    async def attack(h):
        if position == "prolog":
            raw = await fresh_connection(server)
            raw.send("<?xml version='1.0'?>" + snippet + header(prolog=False))
        else:
            raw = await stream_in(server, phase)
            raw.send(snippet.format(body=body))
        await raw.expect_stream_error("restricted-xml")
        await raw.close()
        alice = h.clients[0]
        await alice.barrier()
        assert not alice.messages.find(lambda m: m["body"] == body), "the message was delivered"

    attack_test(server, attack)


# ----------------------------------------------------------------------------------------
# Limits


@pytest.mark.parametrize("phase", ["pre-tls", "authenticated", "authenticated-direct-tls"])
def test_ten_megabyte_stanza(server, phase):
    """`max_stanza_bytes` (256 KiB): a 10 MB stanza ends the stream with <policy-violation/>
    while it is still arriving (its end tag is never sent)."""
    async def attack(h):
        raw = await stream_in(server, phase)
        started = time.monotonic()
        sent = await raw.flood("<message to='alice@localhost' type='chat'><body>", 10 * 1024 * 1024)
        await raw.expect_stream_error("policy-violation", timeout=20)
        print(f"{phase}: stream error after {sent} filler bytes, "
              f"{time.monotonic() - started:.2f}s")
        await raw.close()

    attack_test(server, attack, check_rss=True)


def test_too_deep_nesting(server):
    """`max_depth` (32): deeper nesting is <policy-violation/>."""
    async def attack(h):
        raw = await stream_in(server, "authenticated")
        raw.send("<message to='alice@localhost'>" + "<x xmlns='urn:example:deep'>" * 100)
        await raw.expect_stream_error("policy-violation")
        await raw.close()

    attack_test(server, attack)


def test_too_many_attributes(server):
    """`max_attributes` (64): more attributes on one element is <policy-violation/>."""
    async def attack(h):
        raw = await stream_in(server, "authenticated")
        attrs = " ".join(f"a{i}='{i}'" for i in range(200))
        raw.send(f"<message to='alice@localhost'><x xmlns='urn:example:attrs' {attrs}/></message>")
        await raw.expect_stream_error("policy-violation")
        await raw.close()

    attack_test(server, attack)


# ----------------------------------------------------------------------------------------
# Stream header


def test_wrong_stream_namespace(server):
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send(header(stream_ns="http://example.com/not-streams"))
        await raw.expect_stream_error("invalid-namespace")
        await raw.close()

    attack_test(server, attack)


def test_wrong_default_namespace(server):
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send(header(default_ns="jabber:example-wrong"))
        await raw.expect_stream_error("invalid-namespace")
        await raw.close()

    attack_test(server, attack)


@pytest.mark.parametrize("transport", ["starttls", "direct_tls"])
def test_wrong_to_domain(server, transport):
    async def attack(h):
        raw = RawStream(server.tls_port if transport == "direct_tls" else server.port, server.ca,
                        direct_tls=transport == "direct_tls")
        await raw.connect()
        raw.send(header(to="not-served.example"))
        await raw.expect_stream_error("host-unknown")
        await raw.close()

    attack_test(server, attack)


def test_unsupported_version(server):
    """§4.9.3.25: a major version other than 1 is <unsupported-version/>."""
    async def attack(h):
        raw = await fresh_connection(server)
        raw.send(header(version="2.0"))
        await raw.expect_stream_error("unsupported-version")
        await raw.close()

    attack_test(server, attack)


def test_unknown_top_level_element(server):
    """§4.9.3.24: an unknown first-level child after authentication is
    <unsupported-stanza-type/>."""
    async def attack(h):
        raw = await stream_in(server, "authenticated")
        raw.send("<frobnicate xmlns='jabber:client'/>")
        await raw.expect_stream_error("unsupported-stanza-type")
        await raw.close()

    attack_test(server, attack)


# ----------------------------------------------------------------------------------------
# Authentication before TLS


def _plain_token(user: str) -> str:
    return base64.b64encode(f"\0{user}\0{ACCOUNTS[user]}".encode()).decode()


def test_plain_before_starttls_when_required(server):
    """With STARTTLS required (the default) any <auth/> before TLS is a <policy-violation/>,
    even with the right password."""
    async def attack(h):
        raw = await stream_in(server, "pre-tls")
        raw.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{_plain_token('bob')}</auth>")
        await raw.expect_stream_error("policy-violation")
        assert b"<success" not in raw.raw
        await raw.close()

    attack_test(server, attack)


PLAIN_REFUSAL_SEEN: list[str] = []


@pytest.mark.server_opts(c2s={"require_encryption": False})
def test_plain_before_tls_when_not_required(server):
    """require_encryption = false: SASL is offered before TLS, but PLAIN is not; asking for it
    gets <failure><invalid-mechanism/></failure> or <failure><encryption-required/></failure>.
    The stream stays usable: STARTTLS and PLAIN then work."""
    async def attack(h):
        raw = await fresh_connection(server)
        features = await raw.open()
        mechs = mechanisms(features)
        assert mechs, f"no SASL offered before TLS with require_encryption=false: {xml_str(features)}"
        assert "PLAIN" not in mechs, f"PLAIN offered before TLS: {mechs}"
        assert not [m for m in mechs if m.endswith("-PLUS")], f"-PLUS offered without TLS: {mechs}"
        st = features.find(q(NS_TLS, "starttls"))
        assert st is not None and st.find(q(NS_TLS, "required")) is None, xml_str(features)

        raw.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{_plain_token('bob')}</auth>")
        ans = await raw.next(None, what="<failure/>")
        assert ans.tag == q(NS_SASL, "failure"), xml_str(ans)
        conds = [c.tag.split("}", 1)[1] for c in ans if not c.tag.endswith("}text")]
        assert conds in (["invalid-mechanism"], ["encryption-required"]), xml_str(ans)
        PLAIN_REFUSAL_SEEN.append(conds[0])
        print(f"PLAIN before TLS (require_encryption=false) answered with <{conds[0]}/>")

        features = await raw.starttls()
        assert "PLAIN" in mechanisms(features), xml_str(features)
        ans = await raw.auth_plain("bob", ACCOUNTS["bob"])
        assert ans.tag == q(NS_SASL, "success"), xml_str(ans)
        await raw.close()

    attack_test(server, attack)
