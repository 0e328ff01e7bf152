"""slixmpp as the client under test, wrapped so that tests can wait for and assert on stanzas.

Every wait has a timeout: a stanza that never comes is an AssertionError naming what was
awaited and listing what did arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.util import sasl as slix_sasl
from slixmpp.util.sasl.mechanisms import SCRAM as SlixSCRAM

from tern_server import ACCOUNTS

log = logging.getLogger("harness")

NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_REGISTER = "jabber:iq:register"
#: A payload namespace nobody implements.
NS_UNKNOWN = "urn:example:tern-conformance:unknown"

#: Default wait for a stanza that is expected to arrive.
WAIT = 10.0


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def xml_str(stanza) -> str:
    el = stanza.xml if hasattr(stanza, "xml") else stanza
    return ET.tostring(el, encoding="unicode")


def conditions(el: ET.Element, ns: str) -> list[str]:
    """Local names of the children of `el` in namespace `ns` other than <text/>."""
    return [c.tag.split("}", 1)[1] for c in el if c.tag.startswith(f"{{{ns}}}") and not c.tag.endswith("}text")]


# ----------------------------------------------------------------------------------------
# Waiting for things


class Inbox:
    """Received items that tests can wait for by predicate; unmatched items stay queued."""

    def __init__(self, name: str):
        self.name = name
        self.items: list[Any] = []
        self.seen: list[Any] = []
        self._waiters: list[asyncio.Future] = []

    def put(self, item) -> None:
        self.items.append(item)
        self.seen.append(item)
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    def find(self, pred: Callable[[Any], bool] = lambda _: True) -> list:
        return [x for x in self.items if pred(x)]

    def clear(self) -> None:
        self.items.clear()

    async def get(self, pred: Callable[[Any], bool] = lambda _: True, timeout: float = WAIT,
                  what: str = "a matching stanza"):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, x in enumerate(self.items):
                if pred(x):
                    return self.items.pop(i)
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = "\n  ".join(xml_str(x) for x in self.seen[-20:]) or "(nothing)"
                raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what}; "
                                     f"received so far:\n  {got}")
            w = loop.create_future()
            self._waiters.append(w)
            try:
                await asyncio.wait_for(w, remaining)
            except asyncio.TimeoutError:
                pass


class SessionFailed(AssertionError):
    """The client did not reach session_start."""

    def __init__(self, reason: str, client: "Client"):
        self.reason = reason
        self.client = client
        super().__init__(f"{client.requested_jid}: {reason}; SASL failures seen: "
                         f"{client.auth_failures}; stream errors: {client.stream_error_conditions()}")


# ----------------------------------------------------------------------------------------
# SCRAM-*-PLUS with tls-server-end-point (RFC 5929 §4).
#
# Python's ssl module offers only tls-unique (not defined for TLS 1.3, and not offered by
# rustls), and slixmpp uses it or gives up on -PLUS. This subclass keeps slixmpp's SCRAM code
# and only swaps the channel-binding type and data, so the exchange is still slixmpp's.


def end_point_hash(der_cert: bytes) -> bytes:
    """RFC 5929 §4.1: the certificate's signature hash, with MD5/SHA-1 upgraded to SHA-256."""
    oids = {
        # ecdsa-with-SHA384, ecdsa-with-SHA512, sha384WithRSA, sha512WithRSA
        bytes.fromhex("06082a8648ce3d040303"): hashlib.sha384,
        bytes.fromhex("06082a8648ce3d040304"): hashlib.sha512,
        bytes.fromhex("06092a864886f70d01010c"): hashlib.sha384,
        bytes.fromhex("06092a864886f70d01010d"): hashlib.sha512,
    }
    for oid, fn in oids.items():
        if oid in der_cert:
            return fn(der_cert).digest()
    return hashlib.sha256(der_cert).digest()


class ScramServerEndPoint(SlixSCRAM):
    """slixmpp's SCRAM with `p=tls-server-end-point` for the -PLUS names."""

    def process_1(self, challenge):
        out = super().process_1(challenge)
        if self.use_channel_binding and self.credentials["channel_binding"]:
            rest = out.split(b",", 1)[1]  # drop slixmpp's gs2 cbind flag
            self.gs2_header = b"p=tls-server-end-point," + rest[: rest.index(b",") + 1]
            self.client_first_message = self.gs2_header + self.client_first_message_bare
            return self.client_first_message
        return out


def use_end_point_binding(monkeypatch) -> None:
    """Make slixmpp's SCRAM-SHA-1-PLUS / SCRAM-SHA-256-PLUS use tls-server-end-point."""
    for name in ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"):
        monkeypatch.setitem(slix_sasl.MECHANISMS, name, ScramServerEndPoint)


# ----------------------------------------------------------------------------------------
# The client


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, *, ca: Path, host: str, port: int,
                 direct_tls: bool, mech: str | None = None, end_point_binding: bool = False,
                 plugins: tuple[str, ...] = ()):
        super().__init__(jid, password, sasl_mech=mech)
        self.tern_address = (host, port)
        # Trust exactly the suite's test CA; hostname checking stays on (server_hostname is
        # the JID's domain, `localhost`).
        self.ca_certs = Path(ca)
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.whitespace_keepalive = False
        self.use_ipv6 = False
        # Subscriptions are answered by the tests themselves, never automatically.
        self.auto_authorize = None
        self.auto_subscribe = False
        for p in plugins:
            self.register_plugin(p)

        self.received = Inbox(f"{jid} (all)")
        self.messages = Inbox(f"{jid} messages")
        self.presences = Inbox(f"{jid} presences")
        self.roster_pushes = Inbox(f"{jid} roster pushes")
        self.iq_requests = Inbox(f"{jid} iq get/set")
        self.stream_errors = Inbox(f"{jid} stream errors")
        self.auth_failures: list[str] = []
        self.sasl_mechanism: str | None = None
        self.end_point_binding = end_point_binding
        self.add_filter("in", self._record)
        self.add_event_handler("failed_auth", lambda s: self.auth_failures.append(s["condition"]))
        self.add_event_handler("auth_success", self._on_auth_success)
        if end_point_binding:
            fm = self.plugin["feature_mechanisms"]
            fm.sasl_callback = self._credentials_with_end_point

    def _credentials_with_end_point(self, required, optional):
        fm = self.plugin["feature_mechanisms"]
        creds = fm._default_credentials(required, optional)
        if "channel_binding" in (set(required) | set(optional)):
            der = self.socket.getpeercert(True) if self.socket is not None else None
            creds["channel_binding"] = end_point_hash(der) if der else None
        return creds

    def _on_auth_success(self, _stanza):
        mech = self.plugin["feature_mechanisms"].mech
        self.sasl_mechanism = mech.name if mech is not None else None

    def _record(self, stanza):
        tag = stanza.xml.tag
        self.received.put(stanza)
        if tag == q(NS_CLIENT, "message"):
            self.messages.put(stanza)
        elif tag == q(NS_CLIENT, "presence"):
            self.presences.put(stanza)
        elif tag == q(NS_CLIENT, "iq") and stanza["type"] in ("get", "set"):
            if stanza.xml.find(q(NS_ROSTER, "query")) is not None and stanza["type"] == "set":
                self.roster_pushes.put(stanza)
            else:
                self.iq_requests.put(stanza)
        elif tag == q(NS_STREAM, "error"):
            self.stream_errors.put(stanza)
        return stanza

    def stream_error_conditions(self) -> list[list[str]]:
        return [conditions(e.xml, NS_STREAMS) for e in self.stream_errors.seen]

    # -- session -------------------------------------------------------------------------

    async def start_session(self, timeout: float = 20.0) -> "Client":
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def finish(exc: BaseException | None = None):
            if fut.done():
                return
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

        handlers = {
            "session_start": lambda _e: finish(),
            "failed_all_auth": lambda _e: finish(SessionFailed("SASL authentication failed", self)),
            "stream_error": lambda e: finish(SessionFailed(f"stream error {xml_str(e)}", self)),
            "disconnected": lambda e: finish(SessionFailed(f"disconnected ({e})", self)),
            "connection_failed": lambda e: finish(SessionFailed(f"connection failed ({e})", self)),
            "ssl_invalid_chain": lambda e: finish(SessionFailed(f"TLS certificate rejected ({e})", self)),
        }
        for name, h in handlers.items():
            self.add_event_handler(name, h)
        try:
            self.connect(*self.tern_address)
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise SessionFailed(f"no session within {timeout}s", self) from None
        except BaseException:
            self.abort()
            self.cancel_connection_attempt()
            raise
        finally:
            for name, h in handlers.items():
                self.del_event_handler(name, h)
        return self

    async def close(self, wait: float = 2.0) -> None:
        """Ends the stream cleanly (</stream:stream>), then drops the connection."""
        if self.transport is not None:
            try:
                await asyncio.wait_for(self.disconnect(wait=wait), wait + 1)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort
                pass
        self.abort()
        self.cancel_connection_attempt()

    async def wait_disconnected(self, timeout: float = WAIT) -> None:
        if self.transport is None:
            return
        try:
            await self.wait_until("disconnected", timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.boundjid}: still connected after {timeout}s") from None

    # -- stanzas -------------------------------------------------------------------------

    def iq(self, itype: str, payload: str | ET.Element | None = None, to: str | None = None):
        iq = self.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        if payload is not None:
            iq.set_payload(ET.fromstring(payload) if isinstance(payload, str) else payload)
        return iq

    async def request(self, iq, timeout: float = WAIT):
        """Sends an IQ; returns the result stanza or the error stanza (never raises on error)."""
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise AssertionError(
                f"{self.boundjid}: no answer within {timeout}s to {xml_str(iq)} (or only answers "
                f"whose id/from did not match, RFC 6120 §8.1.2.1); received lately:\n  "
                + "\n  ".join(xml_str(x) for x in self.received.seen[-10:])) from None

    async def barrier(self) -> None:
        """A round trip through the server: everything sent before it has been processed."""
        resp = await self.request(self.iq("get", f"<query xmlns='{NS_UNKNOWN}'/>", to="localhost"))
        assert resp["type"] == "error", f"unexpected barrier answer {xml_str(resp)}"

    async def presence(self, priority: int | None = None, show: str | None = None,
                       status: str | None = None, to: str | None = None,
                       ptype: str | None = None) -> None:
        self.send_presence(pto=to, ptype=ptype, pshow=show, pstatus=status, ppriority=priority)
        await self.barrier()

    def chat(self, to: str, body: str, mtype: str = "chat") -> None:
        self.send_message(mto=to, mbody=body, mtype=mtype)

    async def expect_message(self, body: str, timeout: float = WAIT):
        return await self.messages.get(lambda m: m["body"] == body, timeout,
                                       what=f"message with body {body!r}")

    async def expect_presence(self, pred: Callable[[Any], bool], what: str, timeout: float = WAIT):
        return await self.presences.get(pred, timeout, what=what)

    # -- roster --------------------------------------------------------------------------

    async def roster_get(self, ver: str | None = None):
        """Returns (items, ver, stanza); items maps bare JID -> dict(subscription, ask, name, groups)."""
        attrs = f" ver='{ver}'" if ver is not None else ""
        resp = await self.request(self.iq("get", f"<query xmlns='{NS_ROSTER}'{attrs}/>"))
        assert resp["type"] == "result", f"roster get failed: {xml_str(resp)}"
        query = resp.xml.find(q(NS_ROSTER, "query"))
        items = parse_roster_items(query) if query is not None else None
        return items, (query.get("ver") if query is not None else None), resp

    async def roster_set(self, jid: str, name: str | None = None, groups: tuple[str, ...] = (),
                         remove: bool = False):
        item = ET.Element(q(NS_ROSTER, "item"), {"jid": jid})
        if name is not None:
            item.set("name", name)
        if remove:
            item.set("subscription", "remove")
        for g in groups:
            ET.SubElement(item, q(NS_ROSTER, "group")).text = g
        query = ET.Element(q(NS_ROSTER, "query"))
        query.append(item)
        resp = await self.request(self.iq("set", query))
        assert resp["type"] == "result", f"roster set failed: {xml_str(resp)}"
        return resp


def parse_roster_items(query: ET.Element) -> dict[str, dict]:
    items = {}
    for it in query.findall(q(NS_ROSTER, "item")):
        items[it.get("jid")] = {
            "subscription": it.get("subscription", "none"),
            "ask": it.get("ask"),
            "name": it.get("name"),
            "groups": sorted(g.text or "" for g in it.findall(q(NS_ROSTER, "group"))),
        }
    return items


def assert_not_authorized(client) -> None:
    """SASL failed, every attempt with <not-authorized/> (slixmpp tries each mechanism the
    server offers unless one was chosen)."""
    assert client.auth_failures, "no SASL <failure/> seen"
    assert set(client.auth_failures) == {"not-authorized"}, client.auth_failures


def error_condition(stanza) -> tuple[str | None, list[str]]:
    """(error type, [defined conditions]) of an error stanza."""
    err = stanza.xml.find(q(NS_CLIENT, "error"))
    if err is None:
        return None, []
    return err.get("type"), conditions(err, NS_STANZAS)


# ----------------------------------------------------------------------------------------
# A set of clients against one server


class Harness:
    def __init__(self, server):
        self.server = server
        self.clients: list[Client] = []

    def client(self, jid: str, password: str | None = None, *, direct_tls: bool = False,
               **kw) -> Client:
        if password is None:
            password = ACCOUNTS[jid.split("@", 1)[0]]
        port = self.server.tls_port if direct_tls else self.server.port
        c = Client(jid, password, ca=self.server.ca, host="127.0.0.1", port=port,
                   direct_tls=direct_tls, **kw)
        self.clients.append(c)
        return c

    async def login(self, jid: str, password: str | None = None, *, timeout: float = 20.0,
                    **kw) -> Client:
        return await self.client(jid, password, **kw).start_session(timeout)

    async def online(self, jid: str, priority: int | None = None, **kw) -> Client:
        """Logged in, bound, and available (initial presence sent and processed)."""
        c = await self.login(jid, **kw)
        await c.presence(priority=priority)
        return c

    async def close(self) -> None:
        await asyncio.gather(*(c.close(wait=1.0) for c in self.clients), return_exceptions=True)
        self.clients.clear()


def run(test_coro: Callable[[Harness], Any], server, timeout: float = 90.0):
    """Runs `await test_coro(harness)` in a fresh event loop, with a hard timeout, and always
    closes every client it made."""

    async def main():
        h = Harness(server)
        try:
            return await asyncio.wait_for(test_coro(h), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"test did not finish within {timeout}s") from None
        finally:
            await asyncio.wait_for(h.close(), 15)

    return asyncio.run(main())


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
