"""A small SCRAM client (RFC 5802 / RFC 7677) and a blocking XMPP stream over pyOpenSSL, for
the one thing Python's ssl module cannot do: tls-exporter channel binding (RFC 9266) on TLS 1.3.

Also used to send deliberately wrong SCRAM messages (bad flags, bad binding data).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import select
import socket
from pathlib import Path
from xml.etree import ElementTree as ET

from cryptography import x509
from OpenSSL import SSL

from harness import NS_STREAM, q, xml_str
from rawxmpp import NS_BIND, NS_SASL, NS_TLS, header

IO_TIMEOUT = 10.0


class ScramClient:
    """Client side of SCRAM-SHA-1/-256(-PLUS). `gs2_flag` overrides the GS2 channel-binding flag
    ("n", "y" or "p=TYPE"); `cb_data` is the channel-binding data for "p=" flags."""

    def __init__(self, mechanism: str, user: str, password: str, gs2_flag: str = "n",
                 cb_data: bytes = b""):
        self.mechanism = mechanism
        self.hash = hashlib.sha256 if "SHA-256" in mechanism else hashlib.sha1
        self.user = user
        self.password = password.encode()
        self.gs2_header = f"{gs2_flag},,".encode()
        self.cb_data = cb_data if gs2_flag.startswith("p=") else b""
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}".encode()
        self.server_signature: bytes | None = None

    def first(self) -> bytes:
        return self.gs2_header + self.first_bare

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
        assert attrs[b"r"].startswith(self.nonce.encode()), f"server nonce {attrs[b'r']!r}"
        salt = base64.b64decode(attrs[b"s"])
        iterations = int(attrs[b"i"])
        salted = hashlib.pbkdf2_hmac(self.hash().name, self.password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored_key = self.hash(client_key).digest()
        without_proof = b"c=" + base64.b64encode(self.gs2_header + self.cb_data) + b",r=" + attrs[b"r"]
        auth_message = self.first_bare + b"," + server_first + b"," + without_proof
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        self.server_signature = hmac.new(server_key, auth_message, self.hash).digest()
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify(self, server_final: bytes) -> bool:
        attrs = dict(kv.split(b"=", 1) for kv in server_final.split(b","))
        return b"v" in attrs and base64.b64decode(attrs[b"v"]) == self.server_signature


class OsslStream:
    """Blocking XMPP client stream; TLS through pyOpenSSL (TLS 1.3 only unless told)."""

    def __init__(self, port: int, ca: Path, *, direct_tls: bool, tls13: bool = True):
        self.ca = ca
        self.tls13 = tls13
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.settimeout(None)  # pyOpenSSL wants a blocking socket; reads use select()
        self.conn: SSL.Connection | None = None
        self.elements: list[ET.Element] = []
        self.raw = bytearray()
        self._reset()
        if direct_tls:
            self._wrap()

    def _reset(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    def _wrap(self) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(str(self.ca))
        ctx.set_verify(SSL.VERIFY_PEER, lambda _c, _x, _e, _d, ok: bool(ok))
        if self.tls13:
            ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        self.conn = SSL.Connection(ctx, self.sock)
        self.conn.set_tlsext_host_name(b"localhost")
        self.conn.set_connect_state()
        self.conn.do_handshake()
        cert = self.conn.get_peer_certificate().to_cryptography()
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
        assert "localhost" in names, f"certificate names {names}"

    @property
    def tls_version(self) -> str | None:
        return self.conn.get_protocol_version_name() if self.conn else None

    def exporter(self) -> bytes:
        """RFC 9266 tls-exporter channel-binding data."""
        return self.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, None)

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode()
        if self.conn:
            self.conn.sendall(data)
        else:
            self.sock.sendall(data)

    def _recv(self) -> bytes:
        if not (self.conn and self.conn.pending()):
            ready, _, _ = select.select([self.sock], [], [], IO_TIMEOUT)
            if not ready:
                raise AssertionError(f"no data from the server within {IO_TIMEOUT}s; so far:\n"
                                     f"{bytes(self.raw[-2000:])!r}")
        try:
            data = self.conn.recv(65536) if self.conn else self.sock.recv(65536)
        except SSL.WantReadError:
            return b""
        except (SSL.ZeroReturnError, SSL.SysCallError):
            data = b""
        if not data:
            raise AssertionError(f"connection closed; received:\n{bytes(self.raw[-2000:])!r}")
        return data

    def next(self) -> ET.Element:
        while not self.elements:
            data = self._recv()
            self.raw += data
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.elements.append(el)
        return self.elements.pop(0)

    def expect(self, tag: str) -> ET.Element:
        el = self.next()
        assert el.tag == tag, f"expected {tag}, got {xml_str(el)}"
        return el

    def open(self) -> ET.Element:
        self._reset()
        self.send(header())
        return self.expect(q(NS_STREAM, "features"))

    def starttls(self) -> ET.Element:
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.expect(q(NS_TLS, "proceed"))
        self._wrap()
        return self.open()

    def scram(self, client: ScramClient) -> tuple[ET.Element, bool]:
        """Runs the exchange; returns (<success/> or <failure/>, server signature verified)."""
        b64 = base64.b64encode(client.first()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{client.mechanism}'>{b64}</auth>")
        el = self.next()
        if el.tag != q(NS_SASL, "challenge"):
            return el, False
        final = client.final(base64.b64decode(el.text or ""))
        self.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(final).decode()}</response>")
        el = self.next()
        if el.tag == q(NS_SASL, "success"):
            return el, client.verify(base64.b64decode(el.text or ""))
        return el, False

    def bind(self, resource: str) -> ET.Element:
        self.send(f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>{resource}</resource>"
                  "</bind></iq>")
        return self.next()

    def close(self) -> None:
        try:
            self.send("</stream:stream>")
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.sock.close()
