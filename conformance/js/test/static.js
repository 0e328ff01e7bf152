// A static file server for the browser tests: the test pages, Converse.js and strophe.js
// from node_modules, on a loopback port of its own (so the pages are cross-origin to Tern,
// as in a real deployment, and BOSH goes through CORS).

import http from "node:http";
import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const JS = path.resolve(HERE, "..");
const MOUNTS = {
  "/converse/": path.join(JS, "node_modules", "converse.js", "dist"),
  "/strophe/": path.join(JS, "node_modules", "strophe.js", "dist"),
  "/": path.join(JS, "web"),
};
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".svg": "image/svg+xml",
  ".png": "image/png", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
  ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".map": "application/json",
};

export function startStatic() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    for (const [prefix, dir] of Object.entries(MOUNTS)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (!file.startsWith(dir)) break;
      try {
        if (!statSync(file).isFile()) break;
      } catch {
        break;
      }
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
      createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404).end("not found");
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
    }));
  });
}
