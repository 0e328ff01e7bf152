"""A raw XMPP client stream on asyncio sockets, no XMPP library: for sending what a library
never would (bad XML, DOCTYPEs, floods) and reading exactly what the server answers.

The server's output is parsed incrementally with ElementTree; every top-level child of the
server's stream arrives in `elements`, and the raw bytes are kept for failure messages.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from pathlib import Path
from xml.etree import ElementTree as ET

from harness import NS_CLIENT, NS_STREAM, NS_STREAMS, Inbox, conditions, q, xml_str

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"

#: Markers put into `elements` when the connection ends or the server's XML cannot be parsed.
EOF = "{urn:tern-test}eof"
PARSE_ERROR = "{urn:tern-test}parse-error"


def header(to: str | None = "localhost", *, default_ns: str = NS_CLIENT,
           stream_ns: str = NS_STREAM, version: str | None = "1.0", prolog: bool = True) -> str:
    attrs = f"xmlns='{default_ns}' xmlns:stream='{stream_ns}'"
    if to is not None:
        attrs += f" to='{to}'"
    if version is not None:
        attrs += f" version='{version}'"
    return ("<?xml version='1.0'?>" if prolog else "") + f"<stream:stream {attrs}>"


def tls_context(ca: Path, max_tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class NoAnswer(AssertionError):
    """The server sent nothing matching within the timeout (it did not close the stream
    either): the stream is hanging."""


class _Protocol(asyncio.Protocol):
    """Plain TCP; hands every received byte to the RawStream (TLS, if any, is done by the
    RawStream on memory BIOs) and implements write flow control.

    Nothing the server sent is lost when the connection fails: if a write fails (the server
    reset the connection after its stream error), asyncio stops reading and closes the socket,
    so `connection_lost` first reads what is still queued in the kernel."""

    def __init__(self, owner: "RawStream"):
        self.owner = owner
        self.transport = None
        self.closed = False
        self._paused = False
        self._drain: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.owner._on_raw(data)

    def eof_received(self):
        self.owner._on_eof("end of file")
        return False  # close our side too

    def connection_lost(self, exc):
        self.closed = True
        self._drain_socket()
        self.owner._on_eof(repr(exc) if exc else "connection closed")
        self._wake(exc or ConnectionResetError("connection closed"))

    def _drain_socket(self) -> None:
        # The transport closes the socket only after this callback returns.
        try:
            fd = self.transport.get_extra_info("socket").fileno()
        except Exception:  # noqa: BLE001
            return
        if fd < 0:
            return
        for _ in range(1024):
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # BlockingIOError (nothing queued), ECONNRESET, EBADF
                return
            if not data:
                return
            self.owner._on_raw(data)

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        self._wake(None)

    def _wake(self, exc):
        if self._drain is not None and not self._drain.done():
            if exc is None:
                self._drain.set_result(None)
            else:
                self._drain.set_exception(exc)
        self._drain = None

    async def drain(self):
        if self.closed:
            raise ConnectionResetError("connection closed")
        if self._paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain


class RawStream:
    def __init__(self, port: int, ca: Path, *, direct_tls: bool = False, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self.ca = ca
        self.direct_tls = direct_tls
        self.raw = bytearray()
        self.elements = Inbox(f"raw stream :{port}")
        self.server_header: ET.Element | None = None
        self.header_count = 0
        self.stream_closed = False  # the server sent </stream:stream>
        self.eof = False
        self.tls = False
        self.tls_version: str | None = None
        self.bytes_sent = 0
        self._proto: _Protocol | None = None
        self._transport = None
        self._parsing = True
        self._ssl: ssl.SSLObject | None = None
        self._bio_in = self._bio_out = None
        self._handshake_progress: asyncio.Event | None = None
        self._new_parser()

    # -- connection ----------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> "RawStream":
        loop = asyncio.get_running_loop()
        self._transport, self._proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port), timeout)
        if self.direct_tls:
            await self._start_tls(tls_context(self.ca), timeout)
        return self

    async def _start_tls(self, ctx: ssl.SSLContext, timeout: float) -> None:
        """TLS on memory BIOs over our own TCP protocol (see _Protocol for why)."""
        self._bio_in, self._bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._bio_in, self._bio_out, server_side=False,
                                 server_hostname="localhost")
        self._handshake_progress = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush_tls()
                if self.eof:
                    raise AssertionError(f"connection closed during the TLS handshake:\n{self.raw_tail()}")
                self._handshake_progress.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise NoAnswer("TLS handshake timed out")
                try:
                    await asyncio.wait_for(self._handshake_progress.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        self._flush_tls()
        self._handshake_progress = None
        self.tls = True
        self.tls_version = self._ssl.version()
        self._on_raw(b"")  # anything that arrived with the last handshake message

    def _flush_tls(self) -> None:
        out = self._bio_out.read()
        if out and not self._proto.closed:
            self._transport.write(out)

    def _on_raw(self, data: bytes) -> None:
        if self._ssl is None:
            self._on_data(data)
            return
        self._bio_in.write(data)
        if self._handshake_progress is not None:
            self._handshake_progress.set()
            return
        while True:
            try:
                chunk = self._ssl.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                break
            except ssl.SSLError as e:
                self._on_eof(f"TLS error: {e!r}")
                break
            if not chunk:
                break
            self._on_data(chunk)
        self._flush_tls()

    def _new_parser(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self._parsing = True

    def _on_eof(self, reason: str) -> None:
        if self._handshake_progress is not None:
            self._handshake_progress.set()
        if not self.eof:
            self.eof = True
            self.elements.put(ET.Element(EOF, {"reason": reason}))

    def _on_data(self, data: bytes) -> None:
        self.raw += data
        if not self._parsing:
            return
        try:
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                if event == "start":
                    if self.depth == 0:
                        self.server_header = el
                        self.header_count += 1
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 0:
                        self.stream_closed = True
                    elif self.depth == 1:
                        self.elements.put(el)
                        if self.server_header is not None:
                            self.server_header.remove(el)
        except ET.ParseError as e:
            self._parsing = False
            self.elements.put(ET.Element(PARSE_ERROR, {"error": str(e)}))

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode()
        if self._proto.closed:
            raise ConnectionResetError("connection closed")
        if self._ssl is not None:
            self._ssl.write(data)
            self._flush_tls()
        else:
            self._transport.write(data)
        self.bytes_sent += len(data)

    async def drain(self) -> None:
        await self._proto.drain()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def raw_tail(self, n: int = 3000) -> str:
        return bytes(self.raw[-n:]).decode(errors="replace")

    # -- reading -------------------------------------------------------------------------

    async def next(self, tag: str | None = None, timeout: float = 10.0, what: str | None = None) -> ET.Element:
        """The next top-level element (with `tag` if given); fails at EOF or on bad XML."""
        what = what or (f"<{tag}>" if tag else "an element")

        def pred(e):
            return e.tag in (EOF, PARSE_ERROR) or tag is None or e.tag == tag

        try:
            el = await self.elements.get(pred, timeout, what=what)
        except AssertionError as e:
            raise NoAnswer(f"{e}\nraw bytes from the server:\n{self.raw_tail()}") from None
        if el.tag in (EOF, PARSE_ERROR):
            self.elements.put(el)  # stays visible to later waits
            raise AssertionError(f"waiting for {what}: {el.tag} {el.attrib}\n"
                                 f"raw bytes from the server:\n{self.raw_tail()}")
        return el

    async def wait_eof(self, timeout: float = 5.0) -> bool:
        try:
            await self.elements.get(lambda e: e.tag == EOF, timeout, what="end of connection")
        except AssertionError:
            return False
        self.elements.put(ET.Element(EOF))
        return True

    async def expect_stream_error(self, condition: str | set[str], timeout: float = 10.0) -> ET.Element:
        """Waits for <stream:error/>; asserts its condition, then that the server closes the
        stream (</stream:stream>) and the connection. Returns the error element."""
        wanted = {condition} if isinstance(condition, str) else set(condition)
        err = await self.next(q(NS_STREAM, "error"), timeout, what=f"<stream:error> {sorted(wanted)}")
        conds = conditions(err, NS_STREAMS)
        assert len(conds) == 1 and conds[0] in wanted, (
            f"expected stream error {sorted(wanted)}, got {conds}: {xml_str(err)}")
        assert self.header_count >= 1 and self.server_header is not None and \
            self.server_header.tag == q(NS_STREAM, "stream"), \
            f"stream error without a stream header first (RFC 6120 §4.9.1.2):\n{self.raw_tail()}"
        closed = await self.wait_eof(10.0)
        assert closed, f"server did not close the connection after <{conds[0]}/>"
        assert self.stream_closed, (
            f"server closed the TCP connection without </stream:stream> after <{conds[0]}/>:\n"
            f"{self.raw_tail()}")
        return err

    # -- negotiation ---------------------------------------------------------------------

    async def open(self, to: str | None = "localhost", timeout: float = 10.0) -> ET.Element:
        """Sends a stream header; returns the server's <stream:features/>."""
        self._new_parser()
        self.send(header(to))
        return await self.next(q(NS_STREAM, "features"), timeout)

    async def starttls(self, timeout: float = 10.0, max_tls12: bool = False) -> ET.Element:
        """STARTTLS (RFC 6120 §5.4.2) and the restarted stream's features."""
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        await self.next(q(NS_TLS, "proceed"), timeout)
        await self._start_tls(tls_context(self.ca, max_tls12), timeout)
        return await self.open(timeout=timeout)

    async def auth_plain(self, user: str, password: str, timeout: float = 10.0) -> ET.Element:
        """SASL PLAIN; returns <success/> or <failure/>."""
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        return await self.next(None, timeout, what="<success/> or <failure/>")

    async def bind(self, resource: str | None, timeout: float = 10.0) -> ET.Element:
        """Binds a resource; returns the <iq/> answer (result or error)."""
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind-1'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        return await self.next(q(NS_CLIENT, "iq"), timeout, what="bind answer")

    async def login(self, user: str, password: str, resource: str | None = "raw",
                    timeout: float = 10.0) -> str:
        """Connect, (STARTTLS,) PLAIN, bind; returns the bound full JID."""
        if self._transport is None:
            await self.connect(timeout)
        features = await self.open(timeout=timeout)
        if not self.tls:
            assert features.find(q(NS_TLS, "starttls")) is not None, xml_str(features)
            await self.starttls(timeout)
        answer = await self.auth_plain(user, password, timeout)
        assert answer.tag == q(NS_SASL, "success"), f"PLAIN login failed: {xml_str(answer)}"
        await self.open(timeout=timeout)
        iq = await self.bind(resource, timeout)
        assert iq.get("type") == "result", f"bind failed: {xml_str(iq)}"
        jid = iq.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid is not None and jid.text, f"bind result without <jid/>: {xml_str(iq)}"
        return jid.text

    async def flood(self, prefix: str, total: int, chunk: int = 1 << 16, filler: bytes = b"A") -> int:
        """Sends `prefix` then `total` filler bytes, stopping early once the server answered
        with anything or dropped the connection. Returns the filler bytes sent."""
        self.send(prefix)
        block = filler * chunk
        sent = 0
        try:
            while sent < total:
                if self.elements.items or self.eof:
                    break
                n = min(chunk, total - sent)
                self.send(block[:n])
                sent += n
                await asyncio.wait_for(self.drain(), 30)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        return sent


def mechanisms(features: ET.Element) -> list[str]:
    m = features.find(q(NS_SASL, "mechanisms"))
    if m is None:
        return []
    return [x.text for x in m.findall(q(NS_SASL, "mechanism"))]
