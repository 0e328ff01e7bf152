"""XEP-0115 §6.3 server capabilities in stream features, checked by slixmpp's own xep_0115
plugin: it takes the `<c/>` from the stream features, asks the server's disco#info on the
`node#ver` node, recomputes the hash and only then records the ver for the server."""

from __future__ import annotations

import asyncio

import pytest

from harness import q, run

NS_CAPS = "http://jabber.org/protocol/caps"
NS_STREAM = "http://etherx.jabber.org/streams"
PLUGINS = ("xep_0030", "xep_0004", "xep_0115", "xep_0128")


def announced_caps(c):
    """The `<c/>` of the last stream features the client received (after authentication)."""
    feats = [s for s in c.received.seen if s.xml.tag == q(NS_STREAM, "features")]
    assert feats, "no stream features recorded"
    cs = feats[-1].xml.findall(q(NS_CAPS, "c"))
    assert len(cs) == 1, [f.xml for f in feats]
    return cs[0]


async def verified_ver(c, timeout: float = 10.0) -> str:
    """Waits until slixmpp has verified and recorded the server's ver."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ver = await c.plugin["xep_0115"].get_verstring("localhost")
        if ver:
            return str(ver)
        assert loop.time() < deadline, "slixmpp never verified the server's caps"
        await asyncio.sleep(0.1)


async def check(h):
    c = await h.login("alice@localhost/a", plugins=PLUGINS)
    caps = announced_caps(c)
    assert caps.get("hash") == "sha-1" and caps.get("node"), caps.attrib
    assert await verified_ver(c) == caps.get("ver")
    info = await c.plugin["xep_0115"].get_caps(jid="localhost")
    features = info["features"]
    assert NS_CAPS in features and "urn:xmpp:ping" in features, features
    # Nothing else in the info than what a plain disco#info of the server says.
    live = await c.plugin["xep_0030"].get_info("localhost", cached=False)
    assert sorted(live["disco_info"]["features"]) == sorted(features)
    return caps.get("ver")


def test_server_caps_verified_by_slixmpp(server):
    run(check, server)


@pytest.mark.server_opts(extra_toml="[contact]\nabuse = [\"mailto:abuse@localhost\"]\n")
def test_server_caps_include_extended_info_forms(server):
    async def t(h):
        ver = await check(h)
        c = h.clients[0]
        info = await c.plugin["xep_0030"].get_info("localhost", cached=False)
        forms = [x for x in info["disco_info"].xml if x.tag == "{jabber:x:data}x"]
        assert forms, "the XEP-0157 form is part of what was hashed"
        assert ver

    run(t, server)
