// chathub client module: one user's connection to a chathub daemon, for any web page.
// A dependency-free ES module; served by the daemon at /chathub.js. docs/js-client.md
// shows how to embed it; chathub's own page (app.js) is built on it.
//
//   import { ChatHub } from "https://chat.example.com/chathub.js";
//   const hub = new ChatHub("wss://chat.example.com/ws", { user: "alice" });
//   hub.addEventListener("message", (e) => console.log(e.detail.from, e.detail.text));
//   hub.connect();
//   await hub.chat("hello");
//
// Events are CustomEvents; `detail` is the server frame of docs/protocol.md:
//   welcome       first frame of each connection; detail.history holds only messages
//                 not delivered before; detail.reconnected is true after a reconnect
//   message       a chat or whisper (detail.type says which), each id delivered once
//   join, leave, users, history, subscribed, unsubscribed, channels, shutdown
//   delete        {id, channel}: an operator removed message id (channel absent for a
//                 whisper); take it off the screen. History never returns it again
//   error         an error frame no request was waiting for (a ChatHubError in detail)
//   muted         {reason, until}: an operator muted this user (chats are refused until
//                 then; also right after each welcome while it lasts)
//   unmuted       an operator lifted the mute early
//   kicked        terminal: an operator kicked this user (close 4001); no reconnect
//   banned        terminal: reserved close 4004 / frame "banned"; no reconnect
//   gap           {channel, since}: the server could not recover what was missed;
//                 the view of that channel was reset (page back with history())
//   unknown       a frame of a type this module does not know (never dropped)
//   connecting    {reconnect}: a socket is being opened
//   disconnect    {code, reason, delayMs, attempt}: dropped; reconnecting in delayMs
//   closed        terminal: {code, reason, neverConnected, reachable, refused}; the
//                 first connection failed, or reconnects were refused, or the token expired
//
// Everything from the network is data: this module never touches the DOM.

/** first reconnect delay; doubles per failed attempt up to maxMs, ±jitter */
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 10000, factor: 2, jitter: 0.25 };
/** ms a request (chat, users, history, ...) waits for its reply before rejecting */
const REPLY_TIMEOUT_MS = 10000;
/** reconnects in a row refused while the server is reachable before giving up */
const MAX_REFUSALS = 3;
/** ids remembered per channel to drop repeats (a reconnect's recovery overlaps at most
 *  the server's recent history; this is well above it) */
const SEEN_IDS = 4096;
/** close codes after which reconnecting cannot help */
const KICKED = 4001;
const TOKEN_EXPIRED = 4003;
const BANNED = 4004;

/** An error the server sent (code as in docs/protocol.md) or one of this module:
 *  "not_connected" (nothing sent), "disconnected" (no reply before the drop), "timeout". */
export class ChatHubError extends Error {
  constructor(code, message, retryAfterMs) {
    super(message || code);
    this.name = "ChatHubError";
    this.code = code;
    /** ms to wait before trying again, when the server said so */
    this.retryAfterMs = retryAfterMs ?? null;
  }
}

/** Compare two ids "<ms>-<seq>" numerically, without losing precision. */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(trimZeros);
  const [bm, bs] = b.split("-").map(trimZeros);
  return cmpDigits(am, bm) || cmpDigits(as, bs);
}
function trimZeros(s) { return (s || "0").replace(/^0+(?=\d)/, ""); }
function cmpDigits(a, b) {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What was seen in one channel: the highest id (the `since` to resume from) and recent ids. */
class ChannelView {
  constructor() { this.reset(); }
  reset() {
    this.lastId = null;
    this.ids = new Set();
  }
  /** Record an id; false when it was seen before. */
  admit(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > SEEN_IDS) this.ids.delete(this.ids.values().next().value);
    if (this.lastId === null || compareIds(id, this.lastId) > 0) this.lastId = id;
    return true;
  }
}

const KEY_DEFAULT = "";  // the default channel (and whispers) in the views map

export class ChatHub extends EventTarget {
  /**
   * @param {string} url  the WebSocket endpoint, "ws(s)://host:port/ws"
   * @param {{user?: string, token?: string}} creds  one of them
   * @param {{since?: string, backoff?: object, healthUrl?: string|null}} [options]
   *   since: resume the default channel after this id on the first connect;
   *   backoff: {initialMs, maxMs, factor, jitter}; healthUrl: fetched to tell a
   *   refused reconnect from an unreachable server (default: /healthz of url's host).
   */
  constructor(url, creds, options = {}) {
    super();
    if (!creds || Boolean(creds.user) === Boolean(creds.token)) {
      throw new TypeError("ChatHub needs exactly one of {user} or {token}");
    }
    this.url = url;
    this.creds = creds;
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.healthUrl = options.healthUrl !== undefined ? options.healthUrl
      : url.replace(/^ws/, "http").replace(/\/ws(\?.*)?$/, "/healthz");
    /** our user name, from the last welcome */
    this.user = creds.user || null;
    /** the last welcome */
    this.welcome = null;
    this._since = options.since || null;
    this._views = new Map([[KEY_DEFAULT, new ChannelView()]]);
    /** the default channel's name (protocol v2: the welcome's first channel) */
    this._defaultChannel = null;
    /** subscribed channel -> since given to subscribe() */
    this._channels = new Map();
    this._ws = null;
    this._ready = false;
    this._stopped = true;
    this._attempt = 0;
    this._refusals = 0;
    this._timer = null;
    this._pending = new Map();
    this._seq = 0;
    this._sentSince = null;
  }

  // -- state --------------------------------------------------------------------

  /** A connection is open and welcomed: requests can be sent. */
  get connected() { return this._ready; }
  /** The channels subscribed (resubscribed after each reconnect). */
  get channels() { return Array.from(this._channels.keys()); }
  /** The id of the last message seen in `channel` (default channel when omitted). */
  lastId(channel) {
    const v = this._views.get(this._key(channel));
    return v ? v.lastId : null;
  }

  // -- lifecycle ------------------------------------------------------------------

  /** Open a connection now (also: reconnect at once while waiting, or after a kick). */
  connect() {
    clearTimeout(this._timer);
    this._timer = null;
    this._stopped = false;
    this._drop();
    const params = this.creds.token ? { token: this.creds.token } : { user: this.creds.user };
    const since = this.lastId() || this._since;
    if (since) params.since = since;
    this._emit("connecting", { reconnect: this.welcome !== null });
    let ws;
    try {
      ws = new WebSocket(this.url + "?" + new URLSearchParams(params).toString());
    } catch (err) {
      this._stop("closed", { code: null, reason: String(err.message || err), neverConnected: true,
                             reachable: false, refused: false });
      return;
    }
    this._ws = ws;
    this._sentSince = since || null;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && typeof frame === "object" && !Array.isArray(frame)) this._handle(frame);
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._closed(ev.code, ev.reason, opened);
    };
  }

  /** Close for good (until connect() is called again). */
  close(code = 1000, reason = "left") {
    this._stopped = true;
    clearTimeout(this._timer);
    this._drop(code, reason);
  }

  /** Forget the current socket without waiting for it, closing it with `code`. */
  _drop(code = 1000, reason = "") {
    const old = this._ws;
    this._ws = null;
    this._ready = false;
    this._failPending("disconnected", "the connection closed before the reply came");
    if (old) {
      old.onopen = old.onmessage = old.onclose = null;
      old.close(code, reason);
    }
  }

  async _closed(code, reason, opened) {
    const wasReady = this._ready;
    this._ready = false;
    this._failPending("disconnected", "the connection closed before the reply came");
    if (this._stopped) return;
    if (code === KICKED) return this._stop("kicked", { reason });
    if (code === BANNED) return this._stop("banned", { reason });
    if (code === TOKEN_EXPIRED) return this._stop("closed", { code, reason, refused: false });
    if (this.welcome === null) {  // never got in: report, do not retry
      const reachable = await this._reachable();
      return this._stop("closed", { code, reason, neverConnected: true, reachable, refused: reachable });
    }
    if (!opened && !wasReady) {
      if (await this._reachable()) {
        if (++this._refusals >= MAX_REFUSALS) {
          return this._stop("closed", { code, reason, refused: true, reachable: true });
        }
      } else {
        this._refusals = 0;
      }
    }
    if (this._stopped) return;  // closed while checking
    const b = this.backoff;
    const base = Math.min(b.maxMs, b.initialMs * b.factor ** Math.min(this._attempt, 64));
    const delayMs = Math.round(base * (1 + b.jitter * (2 * Math.random() - 1)));
    this._emit("disconnect", { code, reason, delayMs, attempt: this._attempt });
    this._attempt++;
    this._timer = setTimeout(() => this.connect(), delayMs);
  }

  /** Is the server there? A resolved fetch, whatever its status, says it is. */
  async _reachable() {
    if (!this.healthUrl) return false;
    try {
      await fetch(this.healthUrl, { cache: "no-store" });
      return true;
    } catch {
      return false;
    }
  }

  _stop(type, detail) {
    this._stopped = true;
    clearTimeout(this._timer);
    this._drop();
    this._emit(type, detail);
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // -- requests -------------------------------------------------------------------

  /** Send a public message; resolves with it as stamped by the server (id, ts). */
  chat(text, { channel } = {}) {
    const frame = { type: "chat", text };
    if (channel != null) frame.channel = channel;
    return this._request(frame, "chat");
  }

  /** Send a private message to `to`; resolves with it stamped. */
  whisper(to, text) { return this._request({ type: "whisper", to, text }, "whisper"); }

  /** Who is online (in `channel`, protocol v2); resolves with sorted names. */
  async users(channel) {
    const frame = { type: "users" };
    if (channel != null) frame.channel = channel;
    return (await this._request(frame, "users")).users;
  }

  /** One page of public chat older than `before` (the newest when omitted), oldest
   *  first; an empty list means there is nothing older. */
  async history({ before, limit = 50, channel } = {}) {
    const frame = { type: "history", limit };
    if (before) frame.before = before;
    if (channel != null) frame.channel = channel;
    return (await this._request(frame, "history")).messages;
  }

  /** Protocol v2: the public channels, sorted, each `{name, users}` (users: how many are in it). */
  async listChannels() {
    const reply = await this._request({ type: "channels" }, "channels");
    return Array.isArray(reply.channels) ? reply.channels : [];
  }

  /** Protocol v2: receive `channel` too; a v1 server rejects with code "unknown_type". */
  async subscribe(channel, { since } = {}) {
    const s = since || this.lastId(channel);
    const frame = { type: "subscribe", channel };
    if (s) frame.since = s;
    const reply = await this._request(frame, "subscribed");
    if (!this._channels.has(channel)) this._channels.set(channel, s || null);
    return reply;
  }

  /** Protocol v2: stop receiving `channel`. */
  async unsubscribe(channel) {
    const reply = await this._request({ type: "unsubscribe", channel }, "unsubscribed");
    this._channels.delete(channel);
    return reply;
  }

  _request(frame, replyType) {
    if (!this._ready || !this._ws) {
      return Promise.reject(new ChatHubError("not_connected", "not connected right now; nothing was sent"));
    }
    const ref = "js" + (++this._seq);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new ChatHubError("timeout", "no reply within " + REPLY_TIMEOUT_MS / 1000 + " s"));
      }, REPLY_TIMEOUT_MS);
      this._pending.set(ref, { resolve, reject, timer, replyType, frame });
      this._ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  _reply(ref, frame, error) {
    const p = ref ? this._pending.get(ref) : undefined;
    if (!p) return false;
    this._pending.delete(ref);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else if (frame.type === p.replyType) p.resolve(frame);
    else p.reject(new ChatHubError("bad_reply", "unexpected reply " + frame.type));
    return true;
  }

  _failPending(code, message) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ChatHubError(code, message));
    }
    this._pending.clear();
  }

  // -- frames ---------------------------------------------------------------------

  /** The views map's key: the default channel (and whispers) under KEY_DEFAULT. */
  _key(channel) {
    return channel == null || channel === this._defaultChannel ? KEY_DEFAULT : channel;
  }

  _view(channel) {
    const key = this._key(channel);
    let v = this._views.get(key);
    if (!v) this._views.set(key, (v = new ChannelView()));
    return v;
  }

  /** Keep the messages of `list` not seen before, in order. */
  _fresh(list, channel) {
    if (!Array.isArray(list)) return [];
    return list.filter((m) => m && typeof m.id === "string" &&
      this._view(m.type === "whisper" ? null : (m.channel ?? channel)).admit(m.id));
  }

  _handle(f) {
    switch (f.type) {
      case "welcome": return this._onWelcome(f);
      case "chat":
      case "whisper": {
        this._reply(f.ref, f);
        if (typeof f.id === "string" && this._view(f.type === "whisper" ? null : f.channel).admit(f.id)) {
          this._emit("message", f);
        }
        return undefined;
      }
      case "error": {
        const err = new ChatHubError(String(f.code || "error"), String(f.message || ""), f.retry_after_ms);
        if (!this._reply(f.ref, f, err)) this._emit("error", err);
        return undefined;
      }
      case "subscribed": return this._onSubscribed(f);
      case "users":
      case "history":
      case "channels":
        if (!this._reply(f.ref, f)) this._emit(f.type, f);
        return undefined;
      case "unsubscribed":
        this._reply(f.ref, f);
        return this._emit(f.type, f);
      case "join":
      case "leave":
      case "shutdown":
      case "delete":
      case "muted":
      case "unmuted":
        return this._emit(f.type, f);
      case "kicked":
        return this._stop(f.type, { reason: String(f.reason || "") });
      case "banned":
        return this._stop(f.type, { reason: String(f.reason || ""),
                                    until: typeof f.until === "number" ? f.until : null });
      default:
        return this._emit("unknown", f);
    }
  }

  _onWelcome(f) {
    const reconnected = this.welcome !== null;
    const joined = Array.isArray(f.channels) ? f.channels.filter((c) => typeof c === "string") : [];
    if (joined.length) this._defaultChannel = joined[0];
    if (f.recovered === false) {
      // what was missed is out of the server's reach, or our ids came from another
      // message cache: start this view over (docs/protocol.md, welcome)
      this._view(null).reset();
    }
    const welcome = { ...f, history: this._fresh(f.history, null), reconnected };
    this.welcome = welcome;
    if (typeof f.user === "string") this.user = f.user;
    this._ready = true;
    this._attempt = 0;
    this._refusals = 0;
    if (f.recovered === false) this._emit("gap", { channel: null, since: this._sentSince });
    this._emit("welcome", welcome);
    // the other auto-joined channels are joined again by the server, but only a
    // subscribe carries their since: ask again where something was seen
    const resume = new Map(joined.slice(1).filter((c) => this.lastId(c)).map((c) => [c, null]));
    for (const [channel, since] of this._channels) resume.set(channel, since);
    for (const [channel, since] of resume) {
      this.subscribe(channel, { since: this.lastId(channel) || since }).catch((err) => {
        if (err.code !== "disconnected" && err.code !== "not_connected") this._emit("error", err);
      });
    }
  }

  _onSubscribed(f) {
    const p = f.ref ? this._pending.get(f.ref) : undefined;
    const since = p && p.frame.since;
    if (f.recovered === false) this._view(f.channel).reset();
    const reply = { ...f, history: this._fresh(f.history, f.channel) };
    if (f.recovered === false && since) this._emit("gap", { channel: f.channel, since });
    this._reply(f.ref, reply);
    this._emit("subscribed", reply);
  }
}
