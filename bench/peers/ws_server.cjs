// A bare Node `ws` broadcast server speaking just enough of chathub's protocol:
// the same job as bench/reference.py, run by the benchmark as a peer.
//
// It answers a `welcome` first and sends every `chat` frame to every open
// connection in the shape of chathub's chat frame. GET /healthz reports the open
// connections. `ws` is loaded from the folder in CHATHUB_BENCH_NODE_DIR, where the
// benchmark installed it (never from the repository).
//
//     node bench/peers/ws_server.cjs --port 8765
"use strict";
const http = require("http");
const path = require("path");

const dir = process.env.CHATHUB_BENCH_NODE_DIR || ".";
const { WebSocketServer, WebSocket } = require(path.join(dir, "node_modules", "ws"));

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] || 8765);
let seq = 0;

const server = http.createServer((req, res) => {
  if (req.url.startsWith("/healthz")) {
    const body = JSON.stringify({ status: "ok", connections: wss.clients.size }) + "\n";
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(404, { "content-length": 0 });
  res.end();
});
server.listen(port, "127.0.0.1", 2048);

const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true });

wss.on("connection", (ws, req) => {
  const m = /[?&]user=([^&]*)/.exec(req.url);
  const user = (m && m[1]) || "anon";
  ws.send(JSON.stringify({ type: "welcome", user, session: "ref", users: [], history: [], protocol: 1 }));
  ws.on("message", (data, isBinary) => {
    let msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    if (!msg || msg.type !== "chat") return;
    const ms = Date.now();
    const frame = JSON.stringify({ type: "chat", id: `${ms}-${seq++}`, from: user, text: msg.text, ts: ms });
    for (const c of wss.clients) {
      if (c.readyState === WebSocket.OPEN) c.send(frame);
    }
  });
  ws.on("error", () => {});
});

// keepalive like the other servers: a ping every 20 s; a connection that missed a pong is dropped
const alive = new WeakSet();
wss.on("connection", (ws) => { alive.add(ws); ws.on("pong", () => alive.add(ws)); });
const timer = setInterval(() => {
  for (const ws of wss.clients) {
    if (!alive.has(ws)) { ws.terminate(); continue; }
    alive.delete(ws);
    ws.ping();
  }
}, 20000);

function stop() {
  clearInterval(timer);
  for (const ws of wss.clients) ws.close(1001);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
