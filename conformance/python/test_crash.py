"""Crash durability (DESIGN.md §4): a message the server acknowledged must survive `kill -9`.

alice sends a steady stream of chat messages to bob, who is offline, over a raw stream with
XEP-0198 stream management, asking for acknowledgements (`<r/>`) every few messages. At a
random moment the server gets SIGKILL. The first `h` messages of the stream are the ones the
server acknowledged (XEP-0198 §4: counted once handled, i.e. routed or durably stored). This
repeats ITERATIONS times on one data directory; then the server is started normally and every
acknowledged message must be found

  * in alice's archive (XEP-0313, `with` bob),
  * in bob's archive (XEP-0313, `with` alice), and
  * delivered to bob from offline storage (XEP-0160) when he sends initial presence,

because the server writes all three before it counts the message. A message found in none of
them is *lost*; the test reports how many (it must be 0) with their ids, and fails as well on
any acknowledged message missing from one of the three places.

So that the test can fail and not pass vacuously, it also checks that every message found was
one alice sent, that the server really was running when it was killed (exit by SIGKILL), that
`h` never exceeds what was sent nor goes backwards, and that most iterations got
acknowledgements at all; `test_checker_counts_losses` feeds the checker a made-up loss.

The random seed is printed first; TERN_CRASH_SEED=<seed> replays the same kill moments and
acknowledgement intervals (how far the server gets before each kill still depends on timing).
TERN_CRASH_ITERATIONS raises the iteration count (never below 20). The totals are printed even
without `-s`, so the CI log shows them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

import pytest

from harness import NS_CLIENT, q, xml_str
from rawxmpp import EOF, PARSE_ERROR, RawStream
from tern_server import ACCOUNTS, free_port

NS_SM = "urn:xmpp:sm:3"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_PING = "urn:xmpp:ping"

ALICE = "alice@localhost"
BOB = "bob@localhost"

#: Crash/restart cycles (the issue asks for at least 20).
ITERATIONS = max(20, int(os.environ.get("TERN_CRASH_ITERATIONS", "20")))
#: Most messages alice sends in one iteration.
MAX_PER_ITERATION = 500
#: The kill comes this many seconds after alice's first message (uniformly).
KILL_WINDOW = (0.2, 1.5)
#: Pause between two messages: "steadily", not one burst.
SEND_INTERVAL = 0.002
#: `<r/>` after every this many messages; one is drawn per iteration.
R_EVERY_CHOICES = (1, 2, 5, 10)
#: Page size of the archive queries (the server's default max_page).
MAM_PAGE = 250
#: Whole test, as a hard bound (it takes about 30 s on a debug build).
TEST_TIMEOUT = 120.0

SERVER_OPTS = {
    # 20 iterations can leave thousands of messages for bob; the default cap (1000) would
    # refuse some with <resource-constraint/>, which is not what this test is about.
    "offline_max_per_user": 1_000_000,
}


# ----------------------------------------------------------------------------------------
# Bookkeeping and the checker (pure, so that it can be tested on made-up data)


@dataclass
class Iteration:
    index: int
    kill_at: float
    r_every: int
    sent: list[str] = field(default_factory=list)
    h: int = 0
    #: Each <a/> count in arrival order.
    acks: list[int] = field(default_factory=list)
    #: Stanzas the server sent alice after <enabled/> (none are expected).
    received: list[str] = field(default_factory=list)
    #: How the server process ended (-9 for SIGKILL).
    exit_code: int | None = None
    #: When the connection ended, relative to the first message.
    eof_after: float | None = None

    @property
    def acked(self) -> list[str]:
        return self.sent[: self.h]


def tally(iterations: list[Iteration], found: dict[str, list[str]]) -> dict:
    """Compares what was sent and acknowledged with what each place holds afterwards.

    `found` maps a place ("alice archive", "bob archive", "bob offline delivery") to the
    message ids found there, in order, duplicates included.
    """
    sent = [m for it in iterations for m in it.sent]
    sent_set = set(sent)
    acked = [m for it in iterations for m in it.acked]
    acked_set = set(acked)
    anywhere = set().union(*(set(v) for v in found.values())) if found else set()
    places = {}
    for name, ids in found.items():
        have = set(ids)
        counts = Counter(ids)
        places[name] = {
            "found": len(ids),
            "missing_acked": [m for m in acked if m not in have],
            "duplicates": sorted(m for m, n in counts.items() if n > 1),
            "phantoms": sorted(have - sent_set),
            "unacked_stored": len(have & (sent_set - acked_set)),
        }
    return {
        "iterations": len(iterations),
        "sent": len(sent),
        "acked": len(acked),
        "iterations_with_acks": sum(1 for it in iterations if it.h > 0),
        "lost": [m for m in acked if m not in anywhere],
        "places": places,
    }


def summary(t: dict) -> str:
    lines = [
        f"iterations={t['iterations']} sent={t['sent']} acknowledged={t['acked']} "
        f"iterations_with_acks={t['iterations_with_acks']} LOST={len(t['lost'])}"
    ]
    for name, p in t["places"].items():
        lines.append(
            f"  {name}: found={p['found']} missing_acknowledged={len(p['missing_acked'])} "
            f"duplicates={len(p['duplicates'])} not_sent={len(p['phantoms'])} "
            f"unacknowledged_but_stored={p['unacked_stored']}"
        )
    return "\n".join(lines)


def test_checker_counts_losses():
    """The checker itself: a made-up loss, a gap in one place, a duplicate and a phantom."""
    a = Iteration(0, 0.5, 1, sent=["m0", "m1", "m2", "m3"], h=3)
    b = Iteration(1, 0.5, 1, sent=["m4", "m5"], h=0)
    t = tally([a, b], {
        "x": ["m0", "m1", "m4"],           # m2 acknowledged and missing
        "y": ["m0", "m0", "m1", "zz"],     # duplicate m0, phantom zz, m2 missing
    })
    assert t["acked"] == 3 and t["sent"] == 6 and t["iterations_with_acks"] == 1
    assert t["lost"] == ["m2"]
    assert t["places"]["x"]["missing_acked"] == ["m2"]
    assert t["places"]["x"]["unacked_stored"] == 1
    assert t["places"]["y"]["duplicates"] == ["m0"]
    assert t["places"]["y"]["phantoms"] == ["zz"]
    t = tally([a], {"x": ["m0", "m1", "m2"], "y": ["m0"]})
    assert t["lost"] == [] and t["places"]["y"]["missing_acked"] == ["m1", "m2"]


# ----------------------------------------------------------------------------------------
# The client side


def message(mid: str) -> str:
    return (f"<message to='{BOB}' type='chat' id='{mid}'>"
            f"<body>{mid}</body></message>")


def body_of(el: ET.Element | None) -> str | None:
    if el is None:
        return None
    b = el.find(q(NS_CLIENT, "body"))
    return b.text if b is not None else None


async def login(srv, user: str, resource: str) -> RawStream:
    raw = RawStream(srv.port, srv.ca)
    jid = await raw.login(user, ACCOUNTS[user], resource)
    assert jid == f"{user}@localhost/{resource}", jid
    return raw


def absorb(raw: RawStream, it: Iteration, problems: list[str]) -> None:
    """Takes the server's <a/>, <r/> and stanzas out of the inbox; EOF markers stay."""
    keep = []
    for el in raw.elements.items:
        if el.tag == q(NS_SM, "a"):
            h = int(el.get("h", "-1"))
            if h < it.h:
                problems.append(f"iteration {it.index}: h went backwards {it.h} -> {h}")
            if h > len(it.sent):
                problems.append(f"iteration {it.index}: h={h} but only {len(it.sent)} sent")
            it.acks.append(h)
            it.h = max(it.h, min(h, len(it.sent)))
        elif el.tag == q(NS_SM, "r"):
            try:
                raw.send(f"<a xmlns='{NS_SM}' h='{len(it.received)}'/>")
            except (ConnectionError, OSError, ssl.SSLError):
                pass
        elif el.tag in (EOF, PARSE_ERROR):
            keep.append(el)
        elif el.tag.startswith("{" + NS_CLIENT + "}"):
            it.received.append(xml_str(el))
        else:
            problems.append(f"iteration {it.index}: unexpected {xml_str(el)}")
    raw.elements.items[:] = keep


async def crash_iteration(srv, it: Iteration, tag: str, problems: list[str]) -> None:
    """alice logs in, enables SM and sends until the server is killed under her."""
    raw = await login(srv, "alice", f"crash{it.index}")
    raw.send(f"<enable xmlns='{NS_SM}'/>")
    await raw.next(q(NS_SM, "enabled"), what="<enabled/>")
    loop = asyncio.get_running_loop()
    proc = srv.proc
    killed = loop.create_future()

    def kill():
        # poll() first: never signal a pid that was already reaped (and could be reused).
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        killed.set_result(time.monotonic())

    t0 = time.monotonic()
    timer = loop.call_later(it.kill_at, kill)
    try:
        seq = 0
        while not raw.eof:
            absorb(raw, it, problems)
            if raw.eof:
                break
            try:
                if seq < MAX_PER_ITERATION:
                    mid = f"{tag}-{it.index}-{seq}"
                    raw.send(message(mid))
                    it.sent.append(mid)
                    seq += 1
                    if seq % it.r_every == 0 or seq == MAX_PER_ITERATION:
                        raw.send(f"<r xmlns='{NS_SM}'/>")
                elif not killed.done():
                    # All sent: keep asking until the kill comes.
                    raw.send(f"<r xmlns='{NS_SM}'/>")
                    await asyncio.sleep(0.05)
            except (ConnectionError, OSError, ssl.SSLError):
                break
            await asyncio.sleep(SEND_INTERVAL)
        # Whatever arrived before the connection ended counts.
        await raw.wait_eof(timeout=max(0.0, it.kill_at - (time.monotonic() - t0)) + 10.0)
        it.eof_after = time.monotonic() - t0
        absorb(raw, it, problems)
    finally:
        timer.cancel()
        await raw.close()
    if not killed.done():
        problems.append(f"iteration {it.index}: connection ended {it.eof_after:.2f}s in, "
                        f"before the kill at {it.kill_at:.2f}s")
        kill()
    it.exit_code = await asyncio.to_thread(proc.wait, 15)


async def wait_stanza(raw: RawStream, pred, timeout: float, what: str) -> ET.Element:
    el = await raw.elements.get(lambda e: e.tag in (EOF, PARSE_ERROR) or pred(e), timeout, what=what)
    if el.tag in (EOF, PARSE_ERROR):
        raise AssertionError(f"waiting for {what}: {el.tag} {el.attrib}\n{raw.raw_tail()}")
    return el


async def archive_ids(srv, user: str, with_jid: str) -> list[str]:
    """Every message in `user`'s archive `with` the other account, oldest first (by body)."""
    raw = await login(srv, user, "verify-mam")
    ids: list[str] = []
    after = None
    try:
        for page in range(10_000):
            qid = f"mam{page}"
            rsm_after = f"<after>{after}</after>" if after else ""
            raw.send(
                f"<iq type='set' id='{qid}'><query xmlns='{NS_MAM}' queryid='{qid}'>"
                "<x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
                f"<field var='with'><value>{with_jid}</value></field></x>"
                f"<set xmlns='{NS_RSM}'><max>{MAM_PAGE}</max>{rsm_after}</set>"
                "</query></iq>")
            iq = await wait_stanza(raw, lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == qid,
                                   30, f"archive page {page} of {user}")
            assert iq.get("type") == "result", f"archive query failed: {xml_str(iq)}"
            results = raw.elements.find(
                lambda e: e.tag == q(NS_CLIENT, "message")
                and e.find(q(NS_MAM, "result")) is not None
                and e.find(q(NS_MAM, "result")).get("queryid") == qid)
            for m in results:
                raw.elements.items.remove(m)
                fwd = m.find(f"{q(NS_MAM, 'result')}/{q(NS_FORWARD, 'forwarded')}/{q(NS_CLIENT, 'message')}")
                mid = body_of(fwd)
                assert mid is not None, f"archived message without a body: {xml_str(m)}"
                ids.append(mid)
            fin = iq.find(q(NS_MAM, "fin"))
            assert fin is not None, f"archive answer without <fin/>: {xml_str(iq)}"
            assert len(results) <= MAM_PAGE, f"{len(results)} results on one page"
            if fin.get("complete") == "true" or not results:
                break
            last = fin.find(f"{q(NS_RSM, 'set')}/{q(NS_RSM, 'last')}")
            assert last is not None and last.text, f"incomplete page without <last/>: {xml_str(fin)}"
            after = last.text
    finally:
        await raw.close()
    return ids


async def drain_offline(srv) -> list[str]:
    """bob logs in and sends initial presence until a login brings no stored message (a
    session's queue takes only so many at once; the rest stays stored for the next login)."""
    ids: list[str] = []
    for rnd in range(1000):
        raw = await login(srv, "bob", f"drain{rnd}")
        got = 0
        try:
            raw.send("<presence/>")
            ping = f"ping{rnd}"
            raw.send(f"<iq type='get' id='{ping}' to='localhost'><ping xmlns='{NS_PING}'/></iq>")
            while True:
                try:
                    # The flush happens while the presence is handled, so the ping's answer
                    # follows the stored messages; 3 s of silence ends the round too.
                    el = await raw.elements.get(lambda e: True, 3.0, what="offline messages")
                except AssertionError:
                    break
                if el.tag in (EOF, PARSE_ERROR):
                    raise AssertionError(f"bob's stream ended: {el.attrib}\n{raw.raw_tail()}")
                if el.tag == q(NS_CLIENT, "iq") and el.get("id") == ping:
                    break
                mid = body_of(el) if el.tag == q(NS_CLIENT, "message") else None
                if mid is not None:
                    ids.append(mid)
                    got += 1
        finally:
            await raw.close()
        if got == 0:
            return ids
    raise AssertionError("offline storage never ran dry")


def fresh_ports(srv) -> None:
    srv.port = free_port()
    srv.tls_port = free_port()
    while srv.tls_port == srv.port:
        srv.tls_port = free_port()
    srv.write_config()


# ----------------------------------------------------------------------------------------
# The test


@pytest.mark.timeout(TEST_TIMEOUT + 30)
def test_acknowledged_messages_survive_kill_9(server_factory, capsys):
    seed = int(os.environ.get("TERN_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    tag = f"c{seed:08x}"

    def say(text: str) -> None:
        with capsys.disabled():
            print(f"\n[crash] {text}", end="", flush=True)

    say(f"seed={seed} iterations={ITERATIONS} (rerun with TERN_CRASH_SEED={seed})")
    srv = server_factory(server=SERVER_OPTS,
                         accounts={u: ACCOUNTS[u] for u in ("alice", "bob")}, start=False)
    iterations: list[Iteration] = []
    problems: list[str] = []

    async def main():
        for i in range(ITERATIONS):
            it = Iteration(i, kill_at=rng.uniform(*KILL_WINDOW), r_every=rng.choice(R_EVERY_CHOICES))
            iterations.append(it)
            fresh_ports(srv)
            await asyncio.to_thread(srv.start)
            await crash_iteration(srv, it, tag, problems)
            await asyncio.to_thread(srv.stop)  # reaped already; closes the log
            say(f"#{i:2d} kill at {it.kill_at:.2f}s r every {it.r_every:2d}: sent {len(it.sent):3d} "
                f"acknowledged {it.h:3d} exit {it.exit_code}")
        fresh_ports(srv)
        await asyncio.to_thread(srv.start)
        found = {
            "alice archive": await archive_ids(srv, "alice", BOB),
            "bob archive": await archive_ids(srv, "bob", ALICE),
        }
        # Last: delivery removes the messages from offline storage.
        found["bob offline delivery"] = await drain_offline(srv)
        return found

    started = time.monotonic()
    try:
        found = asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))
    except asyncio.TimeoutError:
        if time.monotonic() - started < TEST_TIMEOUT - 1:
            raise  # a timeout of its own, from inside
        raise AssertionError(
            f"crash test did not finish within {TEST_TIMEOUT}s (seed {seed}); "
            f"{len(iterations)} iterations started; problems so far: {problems}") from None
    t = tally(iterations, found)
    say(summary(t))
    say(f"took {time.monotonic() - started:.1f}s\n")

    # What each iteration must have been: a running server killed by SIGKILL mid-stream.
    for it in iterations:
        if it.exit_code != -signal.SIGKILL:
            problems.append(f"iteration {it.index}: server exit status {it.exit_code}, not SIGKILL")
        if it.received:
            problems.append(f"iteration {it.index}: alice got stanzas: {it.received[:3]}")
    assert not problems, "\n".join(problems)
    assert t["acked"] > 0 and t["iterations_with_acks"] >= len(iterations) // 2, (
        f"too few acknowledgements to test anything (seed {seed}):\n{summary(t)}")
    for name, p in t["places"].items():
        assert not p["phantoms"], f"{name} holds messages alice never sent: {p['phantoms'][:10]}"

    def where(mid: str) -> str:
        _, i, n = mid.rsplit("-", 2)
        it = iterations[int(i)]
        return (f"{mid} (iteration {i}, message {n} of {len(it.sent)}, h={it.h}, "
                f"kill at {it.kill_at:.3f}s, r every {it.r_every})")

    assert not t["lost"], (
        f"{len(t['lost'])} acknowledged messages LOST after kill -9 (seed {seed}):\n"
        + "\n".join(where(m) for m in t["lost"][:50]) + "\n" + summary(t))
    for name, p in t["places"].items():
        assert not p["missing_acked"], (
            f"{len(p['missing_acked'])} acknowledged messages missing from {name} (seed {seed}):\n"
            + "\n".join(where(m) for m in p["missing_acked"][:50]) + "\n" + summary(t))
