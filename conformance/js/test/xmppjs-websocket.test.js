// xmpp.js (@xmpp/client) over WebSocket (RFC 7395, wss:// with the test CA) against the real
// binary: login with SASL, chat with a slixmpp account on TCP, and XEP-0198 resumption after
// the socket is dropped.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import WS from "ws";
import { client, xml } from "@xmpp/client";

import { startTern, startEchoBot, ACCOUNTS } from "./tern.js";

let tern;
let bot;

before(async () => {
  tern = await startTern();
  bot = await startEchoBot(tern);
  // xmpp.js opens `new WebSocket(url, ["xmpp"])`; give it one that trusts the test CA.
  const ca = readFileSync(tern.ca);
  globalThis.WebSocket = class extends WS {
    constructor(url, protocols) {
      super(url, protocols, { ca, servername: "localhost" });
    }
  };
});

after(async () => {
  bot?.stop();
  await tern?.stop();
});

function waitFor(xmpp, pred, what, ms = 15000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    const on = (stanza) => {
      if (pred(stanza)) {
        clearTimeout(t);
        xmpp.removeListener("stanza", on);
        resolve(stanza);
      }
    };
    xmpp.on("stanza", on);
  });
}

const echoOf = (text) => (s) => s.is("message") && s.getChildText("body") === `echo: ${text}`;

function newClient(resource) {
  return client({
    service: `wss://localhost:${tern.ports.https}/xmpp-websocket`,
    domain: "localhost",
    resource,
    username: "alice",
    password: ACCOUNTS.alice,
  });
}

test("xmpp.js logs in over WebSocket and chats with a slixmpp client on TCP", async () => {
  const xmpp = newClient("xmppjs");
  xmpp.on("error", () => {});
  const online = new Promise((r) => xmpp.once("online", r));
  await xmpp.start();
  const jid = await online;
  assert.equal(jid.toString(), "alice@localhost/xmppjs");
  const reply = waitFor(xmpp, echoOf("hello from xmpp.js"), "the echo");
  await xmpp.send(xml("message", { to: "bob@localhost", type: "chat" }, xml("body", {}, "hello from xmpp.js")));
  const m = await reply;
  assert.equal(m.attrs.from.split("/")[0], "bob@localhost");
  await xmpp.stop();
});

test("xmpp.js resumes its stream-management session after the WebSocket drops", async () => {
  const xmpp = newClient("resume");
  xmpp.on("error", () => {});
  const online = new Promise((r) => xmpp.once("online", r));
  await xmpp.start();
  await online;
  const sm = xmpp.streamManagement;
  // <enabled/> follows binding; wait until the server confirmed resumption.
  for (let i = 0; i < 100 && !sm.id; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(sm.enabled && sm.id, "stream management enabled with a resumption id");
  const resumed = new Promise((r) => sm.once("resumed", r));
  const late = waitFor(xmpp, echoOf("later: while the socket is down"), "the answer sent while away", 30000);
  await xmpp.send(xml("message", { to: "bob@localhost", type: "chat" }, xml("body", {}, "later: while the socket is down")));
  // Drop the socket without a closing handshake; @xmpp/reconnect connects again and resumes.
  xmpp.socket.socket.terminate();
  await resumed;
  const m = await late;
  assert.equal(m.attrs.from.split("/")[0], "bob@localhost");
  assert.match(tern.log(), /session resumed/);
  await xmpp.stop();
});
