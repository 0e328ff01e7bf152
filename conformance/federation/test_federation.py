"""Tern federating with Prosody and ejabberd, both directions, with SASL EXTERNAL over a test CA
and with dialback when nobody trusts it; undeliverable stanzas bounce with the RFC 6120
condition and the log says why; an XEP-0114 component (slixmpp's ComponentXMPP) works.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
import slixmpp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from harness import Client, error_condition, xml_str  # noqa: E402
from peers import ADDR, COMPONENT, PASSWORD, REFUSED  # noqa: E402

PEERS = ["prosody.test", "ejabberd.test"]
NS_ROSTER = "jabber:iq:roster"
WAIT = 30.0


def client(servers, jid: str) -> Client:
    domain = jid.split("@", 1)[1]
    return Client(jid, PASSWORD, ca=servers["tern.test"].certs / "ca.crt", host=ADDR[domain],
                  port=5222, direct_tls=False)


def run(coro, timeout: float = 90.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def auth_method(servers) -> str:
    return "SASL EXTERNAL" if servers["scenario"] == "external" else "dialback"


async def close(*clients):
    await asyncio.gather(*(c.close(wait=1.0) for c in clients), return_exceptions=True)


@pytest.mark.parametrize("peer", PEERS)
def test_message_both_ways(servers, peer):
    async def go():
        ours = await client(servers, "alice@tern.test").start_session()
        theirs = await client(servers, f"alice@{peer}").start_session()
        try:
            out_body, back_body = f"to {peer} {uuid.uuid4().hex[:8]}", f"from {peer}"
            ours.send_message(mto=theirs.boundjid.full, mbody=out_body, mtype="chat")
            m = await theirs.expect_message(out_body, timeout=WAIT)
            assert m["from"] == ours.boundjid.full, xml_str(m)
            theirs.send_message(mto=ours.boundjid.full, mbody=back_body, mtype="chat")
            m = await ours.expect_message(back_body, timeout=WAIT)
            assert m["from"] == theirs.boundjid.full, xml_str(m)
        finally:
            await close(ours, theirs)

    run(go())
    tern = servers["tern.test"]
    method = auth_method(servers)
    tern.wait_for_log(rf"s2s stream to {peer} established \({method}\)")
    tern.wait_for_log(rf"incoming s2s stream from {peer} to tern\.test authenticated \({method}\)")


@pytest.mark.parametrize("peer", PEERS)
def test_presence_subscription_across_domains(servers, peer):
    async def go():
        ours = await client(servers, "bob@tern.test").start_session()
        theirs = await client(servers, f"bob@{peer}").start_session()
        try:
            # Roster pushes go to resources that asked for the roster (RFC 6121 §2.1.6).
            await ours.roster_get()
            await theirs.roster_get()
            ours.send_presence()
            theirs.send_presence()
            ours.send_presence(pto=f"bob@{peer}", ptype="subscribe")
            await theirs.expect_presence(
                lambda p: p.xml.get("type") == "subscribe" and p["from"].bare == "bob@tern.test",
                "a subscription request from bob@tern.test", timeout=WAIT)
            theirs.send_presence(pto="bob@tern.test", ptype="subscribed")

            def is_to(push):
                item = push.xml.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
                return (item is not None and item.get("jid") == f"bob@{peer}"
                        and item.get("subscription") == "to")

            await ours.roster_pushes.get(is_to, WAIT, what="roster push with subscription 'to'")
            await ours.expect_presence(
                lambda p: p["from"].bare == f"bob@{peer}" and p.xml.get("type") is None,
                f"bob@{peer}'s available presence", timeout=WAIT)
        finally:
            await close(ours, theirs)

    run(go())


UNDELIVERABLE = [
    ("x@nowhere.invalid", r"cannot deliver to nowhere\.invalid: DNS: "),
    (f"x@{REFUSED[0]}",
     r"cannot deliver to refused\.test: connection failed: 127\.0\.10\.1:5999: .*refused"),
    ("x@rogue.test",
     r"cannot deliver to rogue\.test: TLS: certificate of rogue\.test not trusted: "
     r"issued by an unknown authority"),
]


@pytest.mark.parametrize("to,log", UNDELIVERABLE, ids=["unknown-domain", "refused-port",
                                                      "untrusted-certificate"])
def test_undeliverable_bounces_and_log_says_why(servers, to, log):
    if to.endswith("rogue.test") and servers["scenario"] != "external":
        pytest.skip("with unverified certificates allowed, rogue.test is reachable by dialback")

    async def go():
        c = await client(servers, "alice@tern.test").start_session()
        try:
            mid = uuid.uuid4().hex
            msg = c.make_message(mto=to, mbody="hello?", mtype="chat")
            msg["id"] = mid
            msg.send()
            err = await c.messages.get(lambda m: m["id"] == mid and m["type"] == "error",
                                       WAIT, what=f"the bounce of the message to {to}")
            assert err["from"] == to, xml_str(err)
            etype, conds = error_condition(err)
            assert conds == ["remote-server-not-found"], xml_str(err)
            assert etype == "cancel", xml_str(err)
        finally:
            await close(c)

    run(go())
    servers["tern.test"].wait_for_log(log)


def test_component_receives_and_answers(servers):
    class Bot(slixmpp.ComponentXMPP):
        def __init__(self):
            super().__init__(COMPONENT[0], COMPONENT[1], ADDR["tern.test"], 5347)
            self.got: asyncio.Queue = asyncio.Queue()
            self.add_event_handler("message", self.on_message)

        def on_message(self, msg):
            self.got.put_nowait(msg)
            msg.reply(f"echo: {msg['body']}").send()

    async def go():
        bot = Bot()
        started = asyncio.ensure_future(bot.wait_until("session_start", 15))
        bot.connect()
        await started
        alice = await client(servers, "alice@tern.test").start_session()
        try:
            alice.send_message(mto=f"echo@{COMPONENT[0]}", mbody="ping", mtype="chat")
            got = await asyncio.wait_for(bot.got.get(), WAIT)
            assert got["from"] == alice.boundjid.full and got["body"] == "ping"
            reply = await alice.expect_message("echo: ping", timeout=WAIT)
            assert reply["from"].bare == f"echo@{COMPONENT[0]}", xml_str(reply)

            gone = asyncio.ensure_future(bot.wait_until("disconnected", 10))
            bot.disconnect()
            await gone
            await asyncio.sleep(0.5)
            mid = uuid.uuid4().hex
            msg = alice.make_message(mto=f"echo@{COMPONENT[0]}", mbody="anyone?", mtype="chat")
            msg["id"] = mid
            msg.send()
            err = await alice.messages.get(lambda m: m["id"] == mid and m["type"] == "error",
                                           WAIT, what="service-unavailable while disconnected")
            assert error_condition(err)[1] == ["service-unavailable"], xml_str(err)
        finally:
            await close(alice)

    if servers["scenario"] != "external":
        pytest.skip("components do not depend on the federation scenario; run once")
    run(go())
    servers["tern.test"].wait_for_log(r"component bot\.tern\.test connected")
