// Real web clients in Debian's Chromium, driven headless by playwright-core: Converse.js over
// WebSocket and over BOSH, and strophe.js over BOSH, each chatting with the slixmpp echo bot
// on TCP. Screenshots of the Converse chats are kept in artifacts/.
//
// The pages reach Tern on its plain-HTTP port on 127.0.0.1, which counts as encrypted for
// loopback clients (http.plain_is_secure = "loopback"), so the browser needs no trust in the
// test CA and no --ignore-certificate-errors.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { startTern, startEchoBot, addRosterItem, ACCOUNTS } from "./tern.js";
import { startStatic } from "./static.js";

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "artifacts");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

let tern;
let bot;
let web;
let browser;

before(async () => {
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  tern = await startTern();
  bot = await startEchoBot(tern);
  // Bob is Alice's contact, so Converse opens the chat from her roster.
  await addRosterItem(tern, "alice", "bob@localhost", "Bob");
  web = await startStatic();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});

after(async () => {
  await browser?.close();
  await web?.close();
  bot?.stop();
  await tern?.stop();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  const console = [];
  page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
  return { context, page, console };
}

/** Logs into Converse, sends `text` to bob from the chat box, and waits for bob's echo. */
async function converseChat(endpoint, text, shot, routeHook) {
  const { context, page, console } = await newPage();
  try {
    if (routeHook) await routeHook(page);
    const q = new URLSearchParams({ ...endpoint, jid: "alice@localhost/converse", password: ACCOUNTS.alice });
    await page.goto(`${web.url}/converse.html?${q}`);
    await page.waitForFunction(() => window.ternApi?.connection?.connected?.(), null, { timeout: 30000 });
    // Open the chat the way a person does: click the contact in the roster.
    await page.getByText("Bob", { exact: true }).first().click({ timeout: 30000 });
    const box = page.locator("textarea.chat-textarea");
    await box.waitFor({ timeout: 30000 });
    await box.fill(text);
    await box.press("Enter");
    const echo = page.locator(".chat-msg__text", { hasText: `echo: ${text}` });
    await echo.first().waitFor({ timeout: 30000 });
    await page.screenshot({ path: path.join(ARTIFACTS, shot), fullPage: true });
    // Our message and the answer are each shown once (a repeated BOSH response must not
    // duplicate anything).
    assert.equal(await page.locator(".chat-msg__text", { hasText: new RegExp(`^${text}$`) }).count(), 1);
    assert.equal(await echo.count(), 1);
    return page;
  } catch (e) {
    await page.screenshot({ path: path.join(ARTIFACTS, `failed-${shot}`), fullPage: true }).catch(() => {});
    e.message += `\nbrowser console:\n${console.slice(-40).join("\n")}`;
    throw e;
  } finally {
    await page.unrouteAll({ behavior: "ignoreErrors" });
    await context.close();
  }
}

test("Converse.js over WebSocket chats with a slixmpp client", async () => {
  await converseChat(
    { ws: `ws://127.0.0.1:${tern.ports.http}/xmpp-websocket` },
    "hello from Converse over WebSocket",
    "converse-websocket.png",
  );
});

test("Converse.js over BOSH chats with a slixmpp client", async () => {
  await converseChat(
    { bosh: `http://127.0.0.1:${tern.ports.http}/http-bind` },
    "hello from Converse over BOSH",
    "converse-bosh.png",
  );
});

test("Converse.js over BOSH recovers a lost response without losing the message", async () => {
  let dropped = 0;
  const text = "lost and found";
  await converseChat(
    { bosh: `http://127.0.0.1:${tern.ports.http}/http-bind` },
    text,
    "converse-bosh-recovered.png",
    async (page) => {
      // The response carrying bob's answer reaches the network and is then lost before the
      // browser sees it; strophe.js repeats the request with the same rid (XEP-0124 §14.3).
      await page.route("**/http-bind", async (route) => {
        try {
          const resp = await route.fetch();
          const body = await resp.text();
          if (!dropped && body.includes(`echo: ${text}`)) {
            dropped++;
            await route.abort("connectionreset");
            return;
          }
          await route.fulfill({ response: resp, body });
        } catch {
          // A long poll still held when the test closes the page; nothing to deliver.
        }
      });
    },
  );
  assert.equal(dropped, 1, "the response with the answer was dropped once");
  assert.match(tern.log(), /BOSH response sent again/);
});

test("strophe.js over BOSH logs in and chats with a slixmpp client", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${web.url}/strophe.html`);
    const got = await page.evaluate(
      ([service, pw]) => window.chatOverBosh(service, "alice@localhost/strophe", pw, "bob@localhost", "hello from strophe.js"),
      [`http://127.0.0.1:${tern.ports.http}/http-bind`, ACCOUNTS.alice],
    );
    assert.equal(got.body, "echo: hello from strophe.js");
    assert.equal(got.from.split("/")[0], "bob@localhost");
    assert.equal(got.jid, "alice@localhost/strophe");
  } finally {
    await context.close();
  }
});
