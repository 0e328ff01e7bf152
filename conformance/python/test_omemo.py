"""XEP-0384 OMEMO end to end through Tern's PEP, with the `slixmpp-omemo` plugin as the client.

Two (or three) real OMEMO clients publish their device lists and bundles to their own PEP
services on Tern, learn each other's devices from PEP notifications (or by fetching the open
nodes, for a stranger), and exchange encrypted messages that must decrypt to the plaintext on
the other side. Both protocol versions are covered:

* `eu.siacs.conversations.axolotl` (OMEMO 0.3, what Conversations and most clients speak) through
  the plugin's own `encrypt_message` / `decrypt_message`;
* `urn:xmpp:omemo:2` through the plugin's session manager: slixmpp-omemo 2.2 publishes the
  omemo:2 device list and bundles, but its message layer waits for XEP-0420 (SCE) support in
  slixmpp, so the test wraps the body in a minimal SCE envelope itself and uses the library's
  omemo:2 encrypt/serialize/parse/decrypt on that.

The server's side is asserted as well: which nodes exist with which access model, which items they
hold, and that a contact and a stranger may read them while the configuration says `open`.
"""

from __future__ import annotations

import asyncio
from typing import FrozenSet, Optional
from xml.etree import ElementTree as ET

import omemo
import oldmemo
import oldmemo.etree
import twomemo
import twomemo.etree
from omemo.storage import Just, Maybe, Nothing
from omemo.types import DeviceInformation, JSONType
from slixmpp.jid import JID
from slixmpp.plugins.base import register_plugin
from slixmpp_omemo import XEP_0384

from harness import Client, error_condition, q, run, xml_str

A, B, C = "alice@localhost", "bob@localhost", "carol@localhost"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_DATA = "jabber:x:data"
NS_OLD = oldmemo.oldmemo.NAMESPACE  # eu.siacs.conversations.axolotl
NS_TWO = twomemo.twomemo.NAMESPACE  # urn:xmpp:omemo:2
OLD_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
TWO_DEVICES = "urn:xmpp:omemo:2:devices"
TWO_BUNDLES = "urn:xmpp:omemo:2:bundles"
NS_SCE = "urn:xmpp:sce:1"
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0280",
           "xep_0334", "xep_0384")
#: Generating keys and uploading two device lists and three bundles takes a while on a busy CI.
INIT_WAIT = 30.0


def old_bundle_node(device_id: int) -> str:
    return f"eu.siacs.conversations.axolotl.bundles:{device_id}"


# ----------------------------------------------------------------------------------------
# The client side of OMEMO: storage and the plugin subclass slixmpp-omemo asks for


class MemoryStorage(omemo.Storage):
    """python-omemo's key/value storage kept in a dict: each test client is new, so nothing
    needs to outlive the process."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, JSONType] = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class TestOmemo(XEP_0384):
    """slixmpp-omemo's plugin with in-memory storage and Blind Trust Before Verification: a
    first-seen device is trusted, which is what clients do by default and what lets a test run
    without a person confirming fingerprints."""

    __test__ = False  # not a pytest test class
    name = "xep_0384"

    def plugin_init(self) -> None:
        self._memory = MemoryStorage()
        self.blindly_trusted: list[DeviceInformation] = []
        super().plugin_init()

    @property
    def storage(self) -> omemo.Storage:
        return self._memory

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
        self.blindly_trusted.extend(blindly_trusted)

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation],
                                   identifier: Optional[str]) -> None:
        raise AssertionError(f"unexpected manual trust prompt for {manually_trusted}")


# The registry is keyed by name: clients that load "xep_0384" get this subclass.
register_plugin(TestOmemo)


async def omemo_client(h, jid: str, *, preconditions_ok: bool = False) -> tuple[Client, int]:
    """Logged in with OMEMO, its data generated and published, caps (with the device list
    +notify interests the plugin added) announced, available. Returns the client and its
    device id. Refused pubsub requests fail the test, except `precondition-not-met` on a
    publication when `preconditions_ok` (the plugin then reconfigures the node)."""
    c = h.client(jid, plugins=PLUGINS)
    initialized = asyncio.get_running_loop().create_future()
    c.add_event_handler("omemo_initialized",
                        lambda *_: initialized.done() or initialized.set_result(None))
    await c.start_session()
    try:
        await asyncio.wait_for(initialized, INIT_WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"{jid}: OMEMO not initialized within {INIT_WAIT}s (device list or "
                             "bundle upload failed?)") from None
    assert_no_refused_requests(c, preconditions_ok)
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    await c.roster_get()
    await c.presence()
    sm = await c.plugin["xep_0384"].get_session_manager()
    own, _ = await sm.get_own_device_information()
    return c, own.device_id


def assert_no_refused_requests(c: Client, preconditions_ok: bool = False) -> None:
    """Every pubsub request of the client was accepted, except reading a node that does not
    exist yet (the plugin reads its own device lists before the first publication). The
    plugin retries refused publications with fewer options and gives up quietly on refused
    subscriptions, so a refusal would otherwise go unnoticed."""
    refused = []
    for s in c.received.seen:
        if s.xml.tag != q("jabber:client", "iq") or s["type"] != "error":
            continue
        ps = s.xml.find(q(NS_PUBSUB, "pubsub"))
        if ps is None and s.xml.find(q(NS_OWNER, "pubsub")) is None:
            continue  # not a pubsub request (e.g. the harness's barrier)
        reading = ps is not None and ps.find(q(NS_PUBSUB, "items")) is not None
        if reading and error_condition(s)[1] == ["item-not-found"]:
            continue
        if preconditions_ok and s.xml.find(f".//{q(NS_ERRORS, 'precondition-not-met')}") is not None:
            continue
        refused.append(xml_str(s))
    assert not refused, f"{c.boundjid}: refused pubsub requests:\n  " + "\n  ".join(refused)


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription (both online), so each is the other's PEP contact."""
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
        await y.presences.get(lambda p: p["type"] == "subscribe", what="subscribe")
        y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        await x.presences.get(lambda p: p["type"] == "subscribed", what="subscribed")
        await x.presences.get(lambda p: p["from"] == y.boundjid and p["type"] == "available",
                              what="presence after subscribed")


async def known_devices(c: Client, jid: str, namespace: str, want: int,
                        timeout: float = 10.0) -> set[int]:
    """Waits until `c`'s OMEMO library knows device `want` of `jid` under `namespace` without
    fetching anything itself: the knowledge must come from PEP notifications."""
    sm = await c.plugin["xep_0384"].get_session_manager()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        devices = {d.device_id for d in await sm.get_device_information(jid)
                   if namespace in d.namespaces}
        if want in devices:
            return devices
        if loop.time() > deadline:
            raise AssertionError(f"{c.boundjid}: never learnt {jid}'s {namespace} device {want} "
                                 f"from PEP (knows {devices})")
        await asyncio.sleep(0.1)


async def items(c: Client, owner: str, node: str, **kw) -> list[ET.Element]:
    """The `<item/>`s of `owner`'s PEP node as `c` sees them (XEP-0060 §6.5)."""
    attrs = "".join(f" {k}='{v}'" for k, v in kw.items() if k != "ids")
    inner = "".join(f"<item id='{i}'/>" for i in kw.get("ids", ()))
    r = await c.request(c.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}'{attrs}>"
                                    f"{inner}</items></pubsub>", to=owner))
    assert r["type"] == "result", f"{c.boundjid} cannot read {owner}'s {node}: {xml_str(r)}"
    return r.xml.findall(f"{q(NS_PUBSUB, 'pubsub')}/{q(NS_PUBSUB, 'items')}/{q(NS_PUBSUB, 'item')}")


async def node_config(c: Client, node: str) -> dict[str, list[str]]:
    """The owner's view of one of its nodes' configuration (XEP-0060 §8.2)."""
    r = await c.request(c.iq("get", f"<pubsub xmlns='{NS_OWNER}'><configure node='{node}'/>"
                                    "</pubsub>"))
    assert r["type"] == "result", xml_str(r)
    form = r.xml.find(f".//{q(NS_DATA, 'x')}")
    return {f.get("var"): [v.text or "" for v in f.findall(q(NS_DATA, "value"))]
            for f in form.findall(q(NS_DATA, "field"))}


def device_ids_in(item: ET.Element) -> set[int]:
    """Device ids of a device list item of either version."""
    old = item.findall(f"{q(NS_OLD, 'list')}/{q(NS_OLD, 'device')}")
    two = item.findall(f"{q(NS_TWO, 'devices')}/{q(NS_TWO, 'device')}")
    return {int(d.get("id")) for d in old + two}


async def assert_published(owner: Client, owner_device: int, reader: Client) -> None:
    """What the server stores for `owner`'s device, as `reader` (another account) and the
    owner see it."""
    jid = owner.boundjid.bare
    # Device lists: one item "current" listing the device, in both versions.
    for node in (OLD_DEVICES, TWO_DEVICES):
        got = await items(reader, jid, node)
        assert [i.get("id") for i in got] == ["current"], [xml_str(i) for i in got]
        assert owner_device in device_ids_in(got[0]), xml_str(got[0])
    # oldmemo: one node per device, one item; omemo:2: one node, one item per device id.
    got = await items(reader, jid, old_bundle_node(owner_device))
    assert len(got) == 1, [xml_str(i) for i in got]
    bundle = oldmemo.etree.parse_bundle(got[0][0], jid, owner_device)
    assert bundle.device_id == owner_device
    got = await items(reader, jid, TWO_BUNDLES, ids=[owner_device])
    assert [i.get("id") for i in got] == [str(owner_device)], [xml_str(i) for i in got]
    assert twomemo.etree.parse_bundle(got[0][0], jid, owner_device).device_id == owner_device
    # The configuration the clients asked for with publish-options (XEP-0223) is what is kept.
    for node, max_items in ((OLD_DEVICES, "1"), (TWO_DEVICES, "1"),
                            (old_bundle_node(owner_device), "1"), (TWO_BUNDLES, "max")):
        cfg = await node_config(owner, node)
        assert cfg["pubsub#access_model"] == ["open"], (node, cfg)
        assert cfg["pubsub#persist_items"] in (["true"], ["1"]), (node, cfg)
        assert cfg["pubsub#max_items"] == [max_items], (node, cfg)


def sce_envelope(body: str, to: str) -> bytes:
    """A minimal XEP-0420 envelope for omemo:2 (§4 of XEP-0384 puts the stanza content in one)."""
    env = ET.Element(q(NS_SCE, "envelope"))
    content = ET.SubElement(env, q(NS_SCE, "content"))
    ET.SubElement(content, "{jabber:client}body").text = body
    ET.SubElement(env, q(NS_SCE, "rpad")).text = "pad"
    ET.SubElement(env, q(NS_SCE, "to"), {"jid": to})
    return ET.tostring(env)


def sce_body(plaintext: bytes) -> str:
    env = ET.fromstring(plaintext)
    return env.find(f"{q(NS_SCE, 'content')}/{{jabber:client}}body").text


def omemo_of(m, ns: str) -> Optional[ET.Element]:
    return m.xml.find(q(ns, "encrypted"))


def carries_payload(m, ns: str) -> bool:
    """An OMEMO message with content, as opposed to the empty key-exchange completion message
    (XEP-0384 §7.5 heartbeat) the recipient of a first message sends back by itself."""
    enc = omemo_of(m, ns)
    return enc is not None and enc.find(q(ns, "payload")) is not None


# ----------------------------------------------------------------------------------------


def test_omemo_contacts_exchange_encrypted_messages(server):
    async def t(h):
        a, a_dev = await omemo_client(h, f"{A}/phone")
        b, b_dev = await omemo_client(h, f"{B}/laptop")
        await befriend(a, b)

        # Each learns the other's devices through PEP alone (caps +notify and last-item
        # delivery on presence): with a mutual subscription the plugin never fetches them.
        await known_devices(a, B, NS_OLD, b_dev)
        await known_devices(b, A, NS_OLD, a_dev)
        await known_devices(b, A, NS_TWO, a_dev)
        await assert_published(a, a_dev, b)
        await assert_published(b, b_dev, a)

        # eu.siacs.conversations.axolotl through the plugin: alice → bob.
        plain = "the owl flies at midnight ✓"
        msg = a.make_message(mto=JID(B), mbody=plain, mtype="chat")
        enc, errors = await a.plugin["xep_0384"].encrypt_message(msg, JID(B))
        assert enc is not None and not errors, errors
        assert plain not in xml_str(enc)
        enc.send()
        m = await b.messages.get(lambda m: carries_payload(m, NS_OLD),
                                 what="oldmemo message from alice")
        assert m["from"].bare == A and plain not in xml_str(m), xml_str(m)
        header = omemo_of(m, NS_OLD).find(q(NS_OLD, "header"))
        assert header.get("sid") == str(a_dev), xml_str(m)
        assert str(b_dev) in {k.get("rid") for k in header.findall(q(NS_OLD, "key"))}, xml_str(m)
        dec, sender = await b.plugin["xep_0384"].decrypt_message(m)
        assert dec["body"] == plain, xml_str(dec)
        assert (sender.bare_jid, sender.device_id) == (A, a_dev)

        # And the answer, on the session bob now has: bob → alice.
        reply = "understood"
        msg = b.make_message(mto=JID(A), mbody=reply, mtype="chat")
        enc, errors = await b.plugin["xep_0384"].encrypt_message(msg, JID(A))
        assert enc is not None and not errors, errors
        enc.send()
        m = await a.messages.get(lambda m: carries_payload(m, NS_OLD) and m["from"].bare == B,
                                 what="oldmemo reply from bob")
        dec, sender = await a.plugin["xep_0384"].decrypt_message(m)
        assert dec["body"] == reply and sender.device_id == b_dev, xml_str(dec)

        # urn:xmpp:omemo:2 through the session manager: a new session, from the omemo:2 bundle
        # fetched by item id out of bob's shared bundles node.
        await known_devices(a, B, NS_TWO, b_dev)
        sm_a = await a.plugin["xep_0384"].get_session_manager()
        secret = "omemo 2 says hello"
        messages, errors = await sm_a.encrypt(frozenset({B}), {NS_TWO: sce_envelope(secret, B)},
                                              backend_priority_order=[NS_TWO])
        assert not errors, errors
        [two] = [x for x in messages if x.namespace == NS_TWO]
        out = a.make_message(mto=JID(B), mtype="chat", mbody="[OMEMO 2]")
        out.append(twomemo.etree.serialize_message(two))
        out.enable("store")
        out.send()
        m = await b.messages.get(lambda m: carries_payload(m, NS_TWO),
                                 what="omemo:2 message from alice")
        assert secret not in xml_str(m)
        parsed = twomemo.etree.parse_message(omemo_of(m, NS_TWO), A)
        sm_b = await b.plugin["xep_0384"].get_session_manager()
        plaintext, sender, _ = await sm_b.decrypt(parsed)
        assert sce_body(plaintext) == secret and sender.device_id == a_dev

        # Blind trust saw exactly the other side's device.
        assert {d.device_id for d in b.plugin["xep_0384"].blindly_trusted} == {a_dev}
        assert_no_refused_requests(a)
        assert_no_refused_requests(b)

    run(t, server, timeout=120)


def test_omemo_to_a_stranger_through_open_nodes(server):
    """No presence subscription: the sender fetches the recipient's open device list and bundle
    itself and subscribes to the device list node (XEP-0384 §5.3.1 / §5.3.2)."""

    async def t(h):
        a, a_dev = await omemo_client(h, f"{A}/phone")
        c, c_dev = await omemo_client(h, f"{C}/desk")
        await assert_published(c, c_dev, a)

        plain = "hello stranger"
        msg = a.make_message(mto=JID(C), mbody=plain, mtype="chat")
        enc, errors = await a.plugin["xep_0384"].encrypt_message(msg, JID(C))
        assert enc is not None and not errors, errors
        enc.send()
        m = await c.messages.get(lambda m: carries_payload(m, NS_OLD),
                                 what="oldmemo message from alice")
        # Carol has no roster entry for alice, so her client fetches alice's bundle to decrypt.
        dec, sender = await c.plugin["xep_0384"].decrypt_message(m)
        assert dec["body"] == plain and sender.device_id == a_dev, xml_str(dec)

        # The plugin subscribed alice to carol's device list nodes; a new device of carol's
        # is announced to her without a presence subscription.
        subs = await c.request(c.iq("get", f"<pubsub xmlns='{NS_OWNER}'>"
                                           f"<subscriptions node='{OLD_DEVICES}'/></pubsub>"))
        assert subs["type"] == "result", xml_str(subs)
        subscribers = {s.get("jid") for s in subs.xml.iter(q(NS_OWNER, "subscription"))}
        assert any(JID(j).bare == A for j in subscribers), xml_str(subs)
        a.messages.clear()
        new_list = ET.Element(q(NS_OLD, "list"))
        for d in (c_dev, 4242):
            ET.SubElement(new_list, q(NS_OLD, "device"), {"id": str(d)})
        await c.plugin["xep_0060"].publish(None, OLD_DEVICES, id="current", payload=new_list)
        m = await a.messages.get(
            lambda m: (ev := m.xml.find(q(NS_EVENT, "event"))) is not None
            and any(4242 in device_ids_in(i) for i in ev.iter(q(NS_EVENT, "item"))),
            what="carol's new device list")
        assert m["from"] == C, xml_str(m)
        assert_no_refused_requests(a)
        assert_no_refused_requests(c)

    run(t, server, timeout=120)


def test_omemo_reconfigures_a_device_list_node_made_without_options(server):
    """An account whose device list node exists with the PEP default (presence access), e.g.
    from an older client: the plugin's publish with `access_model=open` hits
    `precondition-not-met` (XEP-0223 §3), reconfigures the node as its owner (XEP-0060 §8.2)
    and publishes again — and a stranger can then read the list."""

    async def t(h):
        old = h.client(f"{A}/old", plugins=("xep_0030", "xep_0004", "xep_0060"))
        await old.start_session()
        stale = ET.Element(q(NS_OLD, "list"))
        ET.SubElement(stale, q(NS_OLD, "device"), {"id": "1"})
        await old.plugin["xep_0060"].publish(None, OLD_DEVICES, id="current", payload=stale)
        assert (await node_config(old, OLD_DEVICES))["pubsub#access_model"] == ["presence"]
        await old.close()

        a, a_dev = await omemo_client(h, f"{A}/phone", preconditions_ok=True)
        c, _ = await omemo_client(h, f"{C}/desk")
        cfg = await node_config(a, OLD_DEVICES)
        assert cfg["pubsub#access_model"] == ["open"], cfg
        got = await items(c, A, OLD_DEVICES)
        assert a_dev in device_ids_in(got[0]) and 1 in device_ids_in(got[0]), xml_str(got[0])
        # The precondition failure really happened and was the only refusal.
        refused = [s for s in a.received.seen if s.xml.tag == q("jabber:client", "iq")
                   and s["type"] == "error"
                   and s.xml.find(f".//{q(NS_ERRORS, 'precondition-not-met')}") is not None]
        assert refused, "expected a precondition-not-met on the old node"

    run(t, server, timeout=120)
