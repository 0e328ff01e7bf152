"""Helpers for test_reliability.py: slixmpp clients with the reliability plugins, event
inboxes, abrupt connection loss and XEP-0198 resumption, and counting what arrived.

Everything stays a real slixmpp client: the connection is cut under slixmpp's feet (the TCP
socket is aborted, no `</stream:stream>`, no TLS close_notify) and slixmpp itself resumes
with its xep_0198 plugin when it is told to connect again, as an application would do from
its `disconnected` handler.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from typing import Callable, Iterable

from harness import WAIT, Client, Inbox, Harness, unique, xml_str

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SID = "urn:xmpp:sid:0"

#: Plugins every reliability client loads (delay and stanza-id parsing are passive).
BASE_PLUGINS = ("xep_0030", "xep_0203", "xep_0359")


def plugins(*extra: str) -> tuple[str, ...]:
    return BASE_PLUGINS + tuple(extra)


def event_inbox(client: Client, *names: str) -> Inbox:
    """An Inbox that collects the data of the named slixmpp events, in order."""
    inbox = Inbox(f"{client.requested_jid} events {'/'.join(names)}")
    for name in names:
        client.add_event_handler(name, lambda data, _n=name: inbox.put(data))
    return inbox


async def wait_until(pred: Callable[[], bool], timeout: float, what: str,
                     detail: Callable[[], str] = lambda: "") -> None:
    """Polls `pred` until it holds; AssertionError naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            extra = detail()
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"\n{extra}" if extra else ""))
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------------------
# Messages and bodies


def send_batch(sender: Client, to: str | Callable[[int], str], prefix: str, n: int) -> list[str]:
    """Sends n chat messages with bodies `prefix-0000`...; returns the bodies in send order.
    `to` may be a function of the index (to alternate bare and full JIDs)."""
    out = []
    for i in range(n):
        body = f"{prefix}-{i:04d}"
        sender.chat(to(i) if callable(to) else to, body)
        out.append(body)
    return out


def seen_bodies(client: Client, prefix: str | None = None, *, incl_errors: bool = False) -> list[str]:
    """Bodies of every message stanza the client received on any of its connections, in
    arrival order (duplicates kept)."""
    out = []
    for m in client.messages.seen:
        if m["type"] == "error" and not incl_errors:
            continue
        b = m["body"]
        if b and (prefix is None or b.startswith(prefix)):
            out.append(b)
    return out


def messages_with_body(client: Client, body: str) -> list:
    return [m for m in client.messages.seen if m["body"] == body and m["type"] != "error"]


async def wait_bodies(client: Client, expected: Iterable[str], timeout: float = WAIT) -> None:
    """Waits until every body in `expected` was received at least once."""
    want = set(expected)

    def missing():
        return want - set(seen_bodies(client))

    await wait_until(lambda: not missing(), timeout,
                     f"{client.requested_jid} to receive {len(want)} messages",
                     lambda: f"missing {len(missing())}: {sorted(missing())[:20]}")


def duplicates(bodies: Iterable[str]) -> dict[str, int]:
    return {b: n for b, n in Counter(bodies).items() if n > 1}


async def sentinel(sender: Client, target: Client, timeout: float = WAIT) -> str:
    """A chat message to `target`'s full JID. Once it arrived, everything the server queued
    for that session before it has arrived too (one session, one FIFO queue)."""
    body = unique("sentinel")
    sender.chat(str(target.boundjid), body)
    await target.expect_message(body, timeout)
    return body


def errors_received(client: Client) -> list[str]:
    return [xml_str(m) for m in client.messages.seen if m["type"] == "error"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------------------
# Stream management


class SMClient:
    """Records the XEP-0198 events of one slixmpp client across its connections."""

    def __init__(self, client: Client):
        assert "xep_0198" in client.plugin, "client has no xep_0198 plugin"
        self.c = client
        self.sm = client.plugin["xep_0198"]
        self.enabled = event_inbox(client, "sm_enabled")
        self.resumed = event_inbox(client, "session_resumed")
        self.failed = event_inbox(client, "sm_failed")
        self.started = event_inbox(client, "session_start")
        self.disconnects = event_inbox(client, "disconnected")


async def sm_client(h: Harness, jid: str, *extra_plugins: str, priority: int | None = 0,
                    available: bool = True) -> tuple[Client, SMClient]:
    """A logged-in slixmpp client with stream management enabled (resumption requested)."""
    c = h.client(jid, plugins=plugins("xep_0198", *extra_plugins))
    smc = SMClient(c)
    await c.start_session()
    # slixmpp enables SM right after binding, before session_start; wait for <enabled/>.
    enabled = await smc.enabled.get(timeout=WAIT, what="<enabled/> (XEP-0198)")
    assert enabled["resume"] in (True, "true", "1"), f"resumption not granted: {xml_str(enabled)}"
    assert smc.sm.sm_id, f"no SM id in {xml_str(enabled)}"
    if available:
        await c.presence(priority=priority)
    return c, smc


async def cut(client: Client, timeout: float = WAIT) -> None:
    """Drops the client's TCP connection abruptly, as a network failure would: no
    `</stream:stream>`, no TLS close_notify (the socket is aborted under the TLS layer).
    slixmpp keeps its stream-management state because the session was not ended."""
    assert client.transport is not None, "not connected"
    done = asyncio.get_running_loop().create_future()

    def on_disc(_e):
        if not done.done():
            done.set_result(None)

    client.add_event_handler("disconnected", on_disc, disposable=True)
    client.transport.abort()
    try:
        await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{client.boundjid}: no `disconnected` event after abort") from None
    assert client.end_session_on_disconnect is False, \
        "slixmpp would end the session on disconnect: stream management was not enabled"


async def lose_in_transit(sender: Client, target: Client, to: str | Callable[[int], str],
                          prefix: str, n: int, settle: float = 0.5) -> list[str]:
    """Sends n messages that the server writes to `target`'s connection but that never reach
    `target`'s XML parser: `target` stops reading (asyncio `pause_reading()`), the server
    routes and writes the batch, then the connection is cut, so what sat in the socket
    buffers is lost with it. To the server these are sent and unacknowledged."""
    assert target.transport is not None, "not connected"
    target.transport.pause_reading()
    sent = send_batch(sender, to, prefix, n)
    await sender.barrier()          # routed into target's session
    await asyncio.sleep(settle)     # and written by the server to the dead-to-be socket
    assert not [b for b in seen_bodies(target) if b in set(sent)], "target read while paused"
    await cut(target)
    return sent


async def reconnect(client: Client, smc: SMClient, timeout: float = 20.0) -> str:
    """Connects again (slixmpp's xep_0198 then sends <resume/>). Returns "resumed" on
    `session_resumed`, or "new-session" when resumption failed and slixmpp bound a new
    session (`session_start`)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def finish(kind):
        def cb(_e):
            if not fut.done():
                fut.set_result(kind)
        return cb

    handlers = {
        "session_resumed": finish("resumed"),
        "session_start": finish("new-session"),
        "failed_all_auth": finish("auth-failed"),
        "stream_error": finish("stream-error"),
    }
    for name, hd in handlers.items():
        client.add_event_handler(name, hd)
    try:
        client.connect(*client.tern_address)
        try:
            kind = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{client.requested_jid}: neither resumed nor re-bound within "
                                 f"{timeout}s; received lately:\n  "
                                 + "\n  ".join(xml_str(x) for x in client.received.seen[-10:])) from None
    finally:
        for name, hd in handlers.items():
            client.del_event_handler(name, hd)
    assert kind in ("resumed", "new-session"), f"{client.requested_jid}: reconnect ended in {kind}"
    return kind


def failed_condition(failed) -> list[str]:
    return [c.tag.split("}", 1)[1] for c in failed.xml if c.tag.startswith(f"{{{NS_STANZAS}}}")]


async def ack_and_close(client: Client, smc: SMClient | None = None) -> None:
    """Ends a stream cleanly. With stream management on, first acknowledges everything handled
    (an unsolicited <a/>, XEP-0198 §4) as XEP-0198 §7 asks before `</stream:stream>`:
    slixmpp does not do this by itself, and what stays unacknowledged on a final end is, rightly,
    redelivered (to other resources or offline storage)."""
    if smc is not None and client.transport is not None:
        smc.sm.send_ack()
        await client.barrier()
    await client.close()
