// chathub browser client: plain JavaScript, no build step, no dependencies.
//
// Speaks the wire protocol of docs/protocol.md over ws(s)://<this host>/ws.
// Everything that comes from the network is put on the page with textContent
// (never innerHTML), so a message or a name can never become markup.
"use strict";

(() => {
  /** user names the server accepts (protocol.USER_RE) */
  const NAME_RE = /^[A-Za-z0-9_.\-]{1,32}$/;
  const NAME_RULE = "1–32 characters: letters A–Z a–z, digits 0–9, _ - or .";
  /** messages asked for per `history` page */
  const HISTORY_PAGE = 50;
  /** first reconnect delay; doubles per failed attempt up to BACKOFF_MAX_MS (±25% jitter) */
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  /** refusals in a row (server reachable, upgrade refused) before we stop retrying */
  const REFUSALS_BEFORE_GIVING_UP = 3;
  /** px from the top of the list at which older messages are fetched */
  const LOAD_OLDER_AT_PX = 60;
  /** px from the bottom within which the list follows new messages */
  const STICK_TO_BOTTOM_PX = 80;
  const NAME_KEY = "chathub.name";

  const $ = (id) => document.getElementById(id);
  const ui = {
    me: $("me"), conn: $("conn"), leave: $("leave"),
    loginView: $("login-view"), login: $("login"), name: $("name"), token: $("token"),
    loginError: $("login-error"), join: $("join"),
    chatView: $("chat-view"), banner: $("banner"), bannerText: $("banner-text"),
    reconnect: $("reconnect"), scroller: $("scroller"), older: $("older"),
    olderState: $("older-state"), messages: $("messages"), users: $("users"),
    userCount: $("user-count"), composer: $("composer"), target: $("target"),
    targetText: $("target-text"), targetClear: $("target-clear"), text: $("text"),
    send: $("send"), sendError: $("send-error"),
  };

  const state = {
    /** {user} or {token}: how we connect */
    creds: null,
    /** our name, from the last welcome */
    me: null,
    ws: null,
    /** whether the current socket reached "open" */
    opened: false,
    /** a welcome arrived at least once with these credentials */
    everConnected: false,
    /** no automatic reconnect (kicked, left, gave up) */
    stopped: false,
    /** why the connection dropped, for the banner while reconnecting */
    why: null,
    /** the server said it is shutting down */
    shutdownSeen: false,
    attempt: 0,
    refusals: 0,
    timer: null,
    /** highest message id seen (chat or whisper): ?since= on reconnect */
    lastId: null,
    /** lowest message id shown: `before` of the next history page */
    oldestId: null,
    ids: new Set(),
    olderRef: null,
    olderDone: false,
    users: [],
    /** whisper target chosen by clicking a user, or null */
    target: null,
    /** ref -> {text, to}: sent, not yet echoed */
    pending: new Map(),
    seq: 0,
  };

  // -- message ids --------------------------------------------------------------

  /** Compare two ids "<ms>-<seq>" numerically without losing precision. */
  function cmpId(a, b) {
    const [am, as] = a.split("-").map(trimZeros);
    const [bm, bs] = b.split("-").map(trimZeros);
    return cmpDigits(am, bm) || cmpDigits(as, bs);
  }
  function trimZeros(s) { return s.replace(/^0+(?=\d)/, ""); }
  function cmpDigits(a, b) {
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // -- small DOM helpers ----------------------------------------------------------

  function node(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function show(e, on) { e.hidden = !on; }
  function setError(e, text, code) {
    e.textContent = text || "";
    if (code) e.dataset.code = code; else delete e.dataset.code;
    show(e, Boolean(text));
  }
  function setConn(kind, text) {
    ui.conn.dataset.state = kind;
    ui.conn.textContent = text;
  }
  function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_TO_BOTTOM_PX;
  }
  function toBottom() { ui.scroller.scrollTop = ui.scroller.scrollHeight; }

  function fmtTime(ts) {
    const d = new Date(ts);
    const opts = { hour: "2-digit", minute: "2-digit" };
    if (d.toDateString() !== new Date().toDateString()) {
      opts.month = "short";
      opts.day = "numeric";
    }
    return d.toLocaleString([], opts);
  }

  // -- views ------------------------------------------------------------------

  function showLogin(error) {
    show(ui.chatView, false);
    show(ui.loginView, true);
    show(ui.leave, false);
    show(ui.me, false);
    ui.join.disabled = false;
    setError(ui.loginError, error);
    ui.name.setAttribute("aria-invalid", error ? "true" : "false");
    (state.creds && state.creds.token ? ui.token : ui.name).focus();
  }

  function showChat() {
    const wasHidden = ui.chatView.hidden;
    show(ui.loginView, false);
    show(ui.chatView, true);
    show(ui.leave, true);
    show(ui.me, true);
    ui.me.textContent = state.me;
    if (wasHidden) ui.text.focus();
  }

  function setBanner(text, button) {
    ui.bannerText.textContent = text || "";
    show(ui.banner, Boolean(text));
    ui.reconnect.textContent = button || "Reconnect";
    show(ui.reconnect, Boolean(button));
  }

  // -- the message list ---------------------------------------------------------

  function resetMessages() {
    ui.messages.replaceChildren();
    state.ids.clear();
    state.oldestId = null;
    state.olderRef = null;
    state.olderDone = false;
    ui.olderState.textContent = "";
    ui.older.disabled = false;
    show(ui.older, true);
  }

  function renderMessage(m) {
    const whisper = m.type === "whisper";
    const own = m.from === state.me;
    const li = node("li", "msg " + (whisper ? "whisper" : "chat") + (own ? " own" : ""));
    li.dataset.id = m.id;
    const meta = node("p", "meta");
    meta.append(node("span", "from", m.from));
    if (own) meta.append(" ", node("span", "badge", "you"));
    if (whisper) {
      meta.append(" ", node("span", "arrow", "→"), " ", node("span", "to", m.to));
      meta.append(" ", node("span", "kind", "whisper"));
    }
    const t = node("time", "ts", fmtTime(m.ts));
    t.dateTime = new Date(m.ts).toISOString();
    t.title = new Date(m.ts).toLocaleString();
    meta.append(" ", t);
    li.append(meta, node("p", "text", m.text));
    return li;
  }

  function noteId(id) {
    state.ids.add(id);
    if (state.lastId === null || cmpId(id, state.lastId) > 0) state.lastId = id;
    if (state.oldestId === null || cmpId(id, state.oldestId) < 0) state.oldestId = id;
  }

  /** Add live or recovered messages in id order; skips ids already shown. Returns how many. */
  function addMessages(list) {
    const follow = nearBottom();
    let added = 0;
    for (const m of list) {
      if (!m || typeof m.id !== "string" || state.ids.has(m.id)) continue;
      // Walk back over messages with a higher id (rare: only recovered ones land early).
      let before = null;
      for (let e = ui.messages.lastElementChild; e; e = e.previousElementSibling) {
        if (!e.dataset.id) continue;
        if (cmpId(e.dataset.id, m.id) > 0) before = e; else break;
      }
      ui.messages.insertBefore(renderMessage(m), before);
      noteId(m.id);
      added++;
      if (m.ref) state.pending.delete(m.ref);
    }
    if (added && (follow || list.some((m) => m && m.from === state.me))) toBottom();
    return added;
  }

  /** Prepend a page of older messages, keeping what the reader looks at in place. */
  function addOlder(list) {
    const fresh = list.filter((m) => m && typeof m.id === "string" && !state.ids.has(m.id));
    fresh.sort((a, b) => cmpId(a.id, b.id));
    const frag = document.createDocumentFragment();
    for (const m of fresh) {
      frag.append(renderMessage(m));
      noteId(m.id);
    }
    const s = ui.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    ui.messages.prepend(frag);
    s.scrollTop = s.scrollHeight - fromBottom;
    return fresh.length;
  }

  function systemLine(text, kind) {
    const follow = nearBottom();
    ui.messages.append(node("li", "sys" + (kind ? " " + kind : ""), text));
    if (follow) toBottom();
  }

  function loadOlder() {
    if (state.olderRef || state.olderDone || !isOpen()) return;
    state.olderRef = "h" + (++state.seq);
    const frame = { type: "history", limit: HISTORY_PAGE, ref: state.olderRef };
    if (state.oldestId) frame.before = state.oldestId;
    state.ws.send(JSON.stringify(frame));
    ui.olderState.textContent = "Loading older messages…";
    ui.older.disabled = true;
  }

  /** Keep fetching until the list can scroll (so "scroll up for more" can work). */
  function fillViewport() {
    const s = ui.scroller;
    if (!state.olderDone && s.scrollHeight <= s.clientHeight) loadOlder();
  }

  // -- users ------------------------------------------------------------------

  function renderUsers() {
    const items = state.users.map((name) => {
      const li = node("li");
      if (name === state.me) {
        li.append(node("span", "self", name), " ", node("span", "badge", "you"));
      } else {
        const b = node("button", "user", name);
        b.type = "button";
        b.dataset.user = name;
        b.setAttribute("aria-label", "Whisper to " + name);
        b.setAttribute("aria-pressed", String(state.target === name));
        li.append(b);
      }
      return li;
    });
    ui.users.replaceChildren(...items);
    ui.userCount.textContent = String(state.users.length);
  }

  function setUsers(list) {
    state.users = Array.from(new Set(list)).sort();
    renderUsers();
  }

  function setTarget(name) {
    state.target = name;
    ui.targetText.textContent = name ? "Whispering to " + name : "";
    show(ui.target, Boolean(name));
    ui.text.placeholder = name
      ? "Whisper to " + name + " — Enter sends, Esc stops whispering"
      : "Message everyone — Enter sends, Shift+Enter for a new line, /w name text whispers";
    renderUsers();
  }

  // -- connection -----------------------------------------------------------------

  function isOpen() { return state.ws !== null && state.ws.readyState === WebSocket.OPEN; }

  function wsUrl(params) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/ws?" + new URLSearchParams(params).toString();
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.ws) {  // a "reconnect now" while an attempt is under way: drop that one
      const old = state.ws;
      state.ws = null;
      old.onopen = old.onmessage = old.onclose = null;
      old.close();
    }
    const params = state.creds.token ? { token: state.creds.token } : { user: state.creds.user };
    if (state.lastId) params.since = state.lastId;
    setConn("connecting", state.everConnected ? "Reconnecting…" : "Connecting…");
    if (state.everConnected && state.why) setBanner(state.why + " Reconnecting now…", "Reconnect now");
    let ws;
    try {
      ws = new WebSocket(wsUrl(params));
    } catch (err) {
      showLogin("Could not open a connection: " + err.message);
      return;
    }
    state.ws = ws;
    state.opened = false;
    ws.onopen = () => { if (ws === state.ws) state.opened = true; };
    ws.onmessage = (ev) => {
      if (ws !== state.ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && typeof frame === "object") handle(frame);
    };
    ws.onclose = (ev) => {
      if (ws !== state.ws) return;
      const opened = state.opened;
      state.ws = null;
      closed(ev, opened);
    };
  }

  /** Is the server up? Tells "it refused us" apart from "it is not there". */
  async function serverUp() {
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      return r.status === 200 || r.status === 503;
    } catch {
      return false;
    }
  }

  const REFUSED =
    "The server refused the connection. Check your name (" + NAME_RULE + ") or token; " +
    "the server may also be full or limiting new connections — try again in a moment.";

  async function closed(ev, opened) {
    ui.users.classList.add("stale");  // presence is unknown until the next welcome
    state.pending.clear();
    state.olderRef = null;
    ui.older.disabled = state.olderDone;
    if (state.stopped) return;
    if (ev.code === 4003) {
      stopWith("Your token expired. Paste a new token to join again.");
      return;
    }
    if (!state.everConnected) {
      const up = await serverUp();
      showLogin(up ? REFUSED : "Cannot reach the chat server at " + location.host + ". Is it running?");
      setConn("offline", "Not connected");
      return;
    }
    if (!opened) {
      if (await serverUp()) {
        if (++state.refusals >= REFUSALS_BEFORE_GIVING_UP) {
          stopWith(REFUSED);
          return;
        }
      } else {
        state.refusals = 0;
      }
    }
    let why = "The connection was lost.";
    if (state.shutdownSeen || ev.code === 1001) why = "The server is restarting.";
    else if (ev.code === 4002) why = "The connection fell behind and was closed.";
    else if (ev.code === 1008 || ev.code === 1009) why = "The server closed the connection (" + (ev.reason || ev.code) + ").";
    scheduleReconnect(why);
  }

  function scheduleReconnect(why) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.attempt++;
    state.why = why;
    setConn("reconnecting", "Reconnecting…");
    setBanner(why + " Reconnecting in " + Math.max(1, Math.round(delay / 1000)) + " s…", "Reconnect now");
    state.timer = setTimeout(connect, delay);
  }

  /** Stop for good (until the user acts), back on the login form. */
  function stopWith(message) {
    state.stopped = true;
    clearTimeout(state.timer);
    setConn("offline", "Not connected");
    state.everConnected = false;
    showLogin(message);
  }

  // -- frames from the server -------------------------------------------------------

  function handle(f) {
    switch (f.type) {
      case "welcome": return onWelcome(f);
      case "chat":
      case "whisper": return addMessages([f]);
      case "history": return onHistory(f);
      case "users": return setUsers(Array.isArray(f.users) ? f.users : []);
      case "join":
        if (!state.users.includes(f.user)) setUsers([...state.users, f.user]);
        return systemLine(f.user + " joined", "presence");
      case "leave": {
        setUsers(state.users.filter((u) => u !== f.user));
        const r = f.reason && !["left", "client closed"].includes(f.reason) ? " (" + f.reason + ")" : "";
        return systemLine(f.user + " left" + r, "presence");
      }
      case "error": return onError(f);
      case "kicked": return onKicked(f);
      case "shutdown":
        state.shutdownSeen = true;
        setBanner("The server is restarting. Reconnecting automatically…");
        return undefined;
      default: return undefined;
    }
  }

  function onWelcome(f) {
    const again = state.everConnected;
    const history = Array.isArray(f.history) ? f.history : [];
    state.me = f.user;
    state.everConnected = true;
    state.attempt = 0;
    state.refusals = 0;
    state.shutdownSeen = false;
    state.why = null;
    try { localStorage.setItem(NAME_KEY, state.creds.token ? "" : state.creds.user); } catch { /* private mode */ }
    setBanner(null);
    setConn("online", "Connected");
    setUsers(Array.isArray(f.users) ? f.users : []);
    ui.users.classList.remove("stale");
    showChat();
    if (!again) {
      resetMessages();
      addMessages(history);
      toBottom();
    } else if (f.recovered === true) {
      const n = addMessages(history);
      systemLine("Reconnected" + (n ? " — " + n + " missed message" + (n === 1 ? "" : "s") + " below." : "."), "notice");
    } else {
      resetMessages();
      addMessages(history);
      systemLine("Reconnected. Some messages may be missing: scroll up to load older ones.", "notice");
      toBottom();
    }
    if (document.activeElement === document.body || document.activeElement === ui.reconnect) ui.text.focus();
    fillViewport();
  }

  function onHistory(f) {
    if (!f.ref || f.ref !== state.olderRef) return;
    state.olderRef = null;
    const list = Array.isArray(f.messages) ? f.messages : [];
    if (list.length === 0) {
      state.olderDone = true;
      ui.olderState.textContent = "This is the beginning of the history.";
      if (document.activeElement === ui.older) ui.scroller.focus();
      show(ui.older, false);
      return;
    }
    const n = addOlder(list);
    ui.older.disabled = false;
    ui.olderState.textContent = n ? "" : "No older messages.";
    fillViewport();
  }

  const ERROR_TEXT = {
    rate_limited: (f) => "You are sending too fast: wait " +
      (Math.ceil((f.retry_after_ms || 1000) / 100) / 10) + " s, then send again.",
    too_long: (f) => "Message too long: " + f.message + ".",
    unknown_user: (f, p) => (p && p.to ? p.to : "That user") + " is not online; the whisper was not delivered.",
    blocked: (f) => "Message blocked: " + f.message + ".",
    unavailable: (f) => "The server could not deliver that right now (" + f.message + "). Try again.",
    bad_request: (f) => "The server refused that message: " + f.message + ".",
  };

  function onError(f) {
    const code = String(f.code || "error");
    const message = String(f.message || "");
    if (f.ref && f.ref === state.olderRef) {
      state.olderRef = null;
      ui.older.disabled = false;
      ui.olderState.textContent = "Could not load older messages: " + message;
      return;
    }
    const p = f.ref ? state.pending.get(f.ref) : undefined;
    if (p) {
      state.pending.delete(f.ref);
      if (!ui.text.value) {
        ui.text.value = p.text;
        autosize();
      }
    }
    const explain = ERROR_TEXT[code];
    setError(ui.sendError, explain ? explain({ ...f, message }, p) : "Error (" + code + "): " + message, code);
  }

  function onKicked(f) {
    state.stopped = true;
    clearTimeout(state.timer);
    setConn("offline", "Disconnected");
    setBanner("You were disconnected by an operator" + (f.reason ? " (reason: " + f.reason + ")" : "") +
      ". You will not be reconnected automatically.", "Reconnect");
    ui.reconnect.focus();
  }

  // -- sending ------------------------------------------------------------------

  function sendText(raw) {
    let text = raw;
    let to = state.target;
    const cmd = /^\/(w|whisper|msg)(?:\s+(\S+))?(?:\s([\s\S]*))?$/.exec(raw.trimStart());
    if (cmd) {
      const name = cmd[2] || "";
      text = cmd[3] || "";
      if (!NAME_RE.test(name)) {
        setError(ui.sendError, "Whisper as /w NAME TEXT, where NAME is " + NAME_RULE, "usage");
        return false;
      }
      to = name;
    }
    if (!text.trim()) {
      if (cmd) setError(ui.sendError, "Nothing to whisper: /w " + to + " TEXT", "usage");
      return false;
    }
    if (!isOpen()) {
      setError(ui.sendError, "Not connected right now; your message was not sent.", "offline");
      return false;
    }
    const ref = "c" + (++state.seq);
    const frame = to ? { type: "whisper", to, text, ref } : { type: "chat", text, ref };
    state.pending.set(ref, { text: raw, to });
    state.ws.send(JSON.stringify(frame));
    setError(ui.sendError, null);
    return true;
  }

  function autosize() {
    ui.text.style.height = "auto";
    ui.text.style.height = Math.min(ui.text.scrollHeight, 160) + "px";
  }

  // -- wiring -------------------------------------------------------------------

  ui.login.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = ui.token.value.trim();
    const name = ui.name.value.trim();
    if (!token && !NAME_RE.test(name)) {
      showLogin(name ? "“" + name + "” is not a valid name: use " + NAME_RULE : "Please choose a name.");
      ui.name.setAttribute("aria-invalid", "true");
      ui.name.focus();
      return;
    }
    ui.name.setAttribute("aria-invalid", "false");
    setError(ui.loginError, null);
    state.creds = token ? { token } : { user: name };
    state.me = token ? null : name;
    state.stopped = false;
    state.everConnected = false;
    state.lastId = null;
    state.attempt = 0;
    state.refusals = 0;
    ui.join.disabled = true;
    connect();
  });

  ui.leave.addEventListener("click", () => {
    state.stopped = true;
    clearTimeout(state.timer);
    if (state.ws) state.ws.close(1000, "left");
    state.ws = null;
    state.everConnected = false;
    setTarget(null);
    setConn("offline", "Not connected");
    setBanner(null);
    showLogin(null);
  });

  ui.reconnect.addEventListener("click", () => {
    state.stopped = false;
    state.attempt = 0;
    setBanner("Reconnecting…");
    connect();
  });

  ui.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (sendText(ui.text.value)) {
      ui.text.value = "";
      autosize();
    }
    ui.text.focus();
  });

  ui.text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit();
    } else if (ev.key === "Escape" && state.target) {
      setTarget(null);
    }
  });
  ui.text.addEventListener("input", autosize);

  ui.users.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-user]");
    if (!b) return;
    setTarget(state.target === b.dataset.user ? null : b.dataset.user);
    ui.text.focus();
  });
  ui.targetClear.addEventListener("click", () => { setTarget(null); ui.text.focus(); });

  ui.older.addEventListener("click", loadOlder);
  ui.scroller.addEventListener("scroll", () => {
    if (ui.scroller.scrollTop < LOAD_OLDER_AT_PX) loadOlder();
  });

  try { ui.name.value = localStorage.getItem(NAME_KEY) || ""; } catch { /* private mode */ }
  setConn("offline", "Not connected");
})();
