// Start, administer and stop a real `tern` binary for the JS suite, and the slixmpp echo bot
// that answers its clients. Everything goes through the binary's CLI, config file, log and
// loopback sockets, as in conformance/python/tern_server.py.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, existsSync, openSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "..", "..", "..");
export const ACCOUNTS = { alice: "alice-Pa55word", bob: "bob-Pa55word" };

export function ternBinary() {
  if (process.env.TERN_BIN) return process.env.TERN_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, "target");
  return path.join(path.isAbsolute(target) ? target : path.join(ROOT, target), "debug", "tern");
}

export function pythonBinary() {
  return process.env.PYTHON_VENV_BIN || path.join(ROOT, "conformance", "python", ".venv", "bin", "python");
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port, proc, logPath, limitMs = 30000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (proc.exitCode !== null) {
      throw new Error(`tern exited (${proc.exitCode}) while starting:\n${readFileSync(logPath, "utf8")}`);
    }
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => { c.destroy(); resolve(true); });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`tern did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A running server with the ACCOUNTS; `http` overrides keys of its [http] table. */
export async function startTern({ http = {} } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tern-js-"));
  const bin = ternBinary();
  if (!existsSync(bin)) throw new Error(`tern binary not found at ${bin} (set TERN_BIN)`);
  const certs = path.join(dir, "certs");
  execFileSync(bin, ["cert", "generate", "--domain", "localhost", "--out", certs, "--ca"], { cwd: dir, stdio: "pipe" });
  const ports = {};
  for (const k of ["c2s", "tls", "http", "https"]) ports[k] = await freePort();
  const httpTable = {
    listen: [`127.0.0.1:${ports.http}`],
    listen_tls: [`127.0.0.1:${ports.https}`],
    ...http,
  };
  const toml = (v) => (Array.isArray(v) ? `[${v.map(toml).join(", ")}]` : typeof v === "string" ? JSON.stringify(v) : String(v));
  const config = [
    "[server]", `data_dir = ${JSON.stringify(path.join(dir, "data"))}`, `log_level = "info"`, "",
    "[[host]]", `domain = "localhost"`,
    `certificate = ${JSON.stringify(path.join(certs, "localhost.crt"))}`,
    `key = ${JSON.stringify(path.join(certs, "localhost.key"))}`, "",
    "[c2s]", `listen = ["127.0.0.1:${ports.c2s}"]`, `listen_tls = ["127.0.0.1:${ports.tls}"]`, "",
    "[storage]", `backend = "sqlite"`, "",
    "[http]", ...Object.entries(httpTable).map(([k, v]) => `${k} = ${toml(v)}`), "",
  ].join("\n");
  const configPath = path.join(dir, "tern.toml");
  writeFileSync(configPath, config);
  for (const [user, pw] of Object.entries(ACCOUNTS)) {
    execFileSync(bin, ["--config", configPath, "user", "add", `${user}@localhost`, "--password", pw], { cwd: dir, stdio: "pipe" });
  }
  const logPath = path.join(dir, "tern.log");
  const log = openSync(logPath, "a");
  const env = { ...process.env, NO_COLOR: "1" };
  delete env.RUST_LOG;
  const proc = spawn(bin, ["--config", configPath, "serve"], { cwd: dir, env, stdio: ["ignore", log, log] });
  for (const p of Object.values(ports)) await waitPort(p, proc, logPath);
  return {
    dir, ports, ca: path.join(certs, "ca.crt"), logPath,
    log: () => readFileSync(logPath, "utf8"),
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 10000);
      await done;
      clearTimeout(t);
    },
  };
}

/** The slixmpp echo bot logged in as bob over TCP (STARTTLS); resolves once it is online. */
export async function startEchoBot(tern) {
  const py = pythonBinary();
  if (!existsSync(py)) throw new Error(`python venv with slixmpp not found at ${py} (run conformance/run.sh)`);
  const proc = spawn(py, [path.join(HERE, "..", "echo_bot.py"), "bob@localhost", ACCOUNTS.bob,
    String(tern.ports.c2s), tern.ca], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`echo bot did not come online: ${lines.join("\n")}`)), 30000);
    proc.stdout.on("data", (d) => {
      lines.push(String(d));
      if (String(d).includes("READY")) { clearTimeout(t); resolve(); }
    });
    proc.once("exit", (c) => { clearTimeout(t); reject(new Error(`echo bot exited ${c}: ${lines.join("")}`)); });
  });
  return {
    lines,
    stop() { proc.kill("SIGTERM"); },
  };
}

/** Puts `jid` on `user`'s roster (an RFC 6121 roster set over WebSocket on the loopback port). */
export async function addRosterItem(tern, user, jid, name) {
  const { client, xml } = await import("@xmpp/client");
  const { default: WS } = await import("ws");
  globalThis.WebSocket ??= WS;
  const xmpp = client({
    service: `ws://127.0.0.1:${tern.ports.http}/xmpp-websocket`,
    domain: "localhost",
    resource: "setup",
    username: user,
    password: ACCOUNTS[user],
  });
  xmpp.on("error", () => {});
  await xmpp.start();
  await xmpp.iqCaller.set(xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid, name })));
  await xmpp.stop();
}
