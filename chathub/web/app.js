// chathub browser client: plain JavaScript, no build step, no dependencies.
//
// The page around chathub.js (the client module: connection, reconnects, `since`,
// de-duplication, requests matched by ref). This file only draws what it reports.
// Everything that comes from the network is put on the page with textContent
// (never innerHTML), so a message or a name can never become markup.
import { ChatHub, compareIds as cmpId } from "./chathub.js";

{
  /** user names the server accepts (protocol.USER_RE) */
  const NAME_RE = /^[A-Za-z0-9_.\-]{1,32}$/;
  const NAME_RULE = "1–32 characters: letters A–Z a–z, digits 0–9, _ - or .";
  /** messages asked for per `history` page */
  const HISTORY_PAGE = 50;
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
    /** the ChatHub connection (chathub.js) for these credentials */
    hub: null,
    /** a welcome arrived at least once with these credentials */
    everConnected: false,
    /** why the connection dropped, for the banner while reconnecting */
    why: null,
    /** the server said it is shutting down */
    shutdownSeen: false,
    /** lowest message id shown: `before` of the next history page */
    oldestId: null,
    /** ids shown on the page (history pages may overlap what is shown) */
    ids: new Set(),
    /** a history page is on its way */
    olderBusy: false,
    /** bumped when the list is reset: a history page asked for before is dropped */
    olderGen: 0,
    olderDone: false,
    users: [],
    /** whisper target chosen by clicking a user, or null */
    target: null,
  };

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
    state.olderBusy = false;
    state.olderGen++;
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
    if (state.olderBusy || state.olderDone || !state.hub || !state.hub.connected) return;
    state.olderBusy = true;
    const gen = state.olderGen;
    ui.olderState.textContent = "Loading older messages…";
    ui.older.disabled = true;
    state.hub.history({ before: state.oldestId || undefined, limit: HISTORY_PAGE }).then(
      (list) => { if (gen === state.olderGen) onHistory(list); },
      (err) => { if (gen === state.olderGen) onHistoryError(err); });
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

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/ws";
  }

  /** A new connection for these credentials; the old one (if any) is closed. */
  function start(creds) {
    if (state.hub) state.hub.close();
    const hub = new ChatHub(wsUrl(), creds, { healthUrl: "/healthz" });
    state.hub = hub;
    const on = (type, fn) => hub.addEventListener(type, (ev) => { if (hub === state.hub) fn(ev.detail); });
    on("connecting", onConnecting);
    on("welcome", onWelcome);
    on("message", (m) => addMessages([m]));
    on("join", (f) => {
      if (!state.users.includes(f.user)) setUsers([...state.users, f.user]);
      systemLine(f.user + " joined", "presence");
    });
    on("leave", (f) => {
      setUsers(state.users.filter((u) => u !== f.user));
      const r = f.reason && !["left", "client closed"].includes(f.reason) ? " (" + f.reason + ")" : "";
      systemLine(f.user + " left" + r, "presence");
    });
    on("users", (f) => setUsers(Array.isArray(f.users) ? f.users : []));
    on("error", (err) => showSendError(err));
    on("shutdown", () => {
      state.shutdownSeen = true;
      setBanner("The server is restarting. Reconnecting automatically…");
    });
    on("disconnect", onDisconnect);
    on("kicked", onKicked);
    on("banned", onKicked);
    on("closed", onClosed);
    hub.connect();
  }

  const REFUSED =
    "The server refused the connection. Check your name (" + NAME_RULE + ") or token; " +
    "the server may also be full or limiting new connections — try again in a moment.";

  function onConnecting() {
    setConn("connecting", state.everConnected ? "Reconnecting…" : "Connecting…");
    if (state.everConnected && state.why) setBanner(state.why + " Reconnecting now…", "Reconnect now");
  }

  /** Whatever ended the connection: presence and pending requests are stale. */
  function connectionEnded() {
    ui.users.classList.add("stale");  // presence is unknown until the next welcome
    state.olderBusy = false;
    ui.older.disabled = state.olderDone;
  }

  function onDisconnect(d) {
    connectionEnded();
    let why = "The connection was lost.";
    if (state.shutdownSeen || d.code === 1001) why = "The server is restarting.";
    else if (d.code === 4002) why = "The connection fell behind and was closed.";
    else if (d.code === 1008 || d.code === 1009) why = "The server closed the connection (" + (d.reason || d.code) + ").";
    state.why = why;
    setConn("reconnecting", "Reconnecting…");
    setBanner(why + " Reconnecting in " + Math.max(1, Math.round(d.delayMs / 1000)) + " s…", "Reconnect now");
  }

  function onClosed(d) {
    connectionEnded();
    if (d.code === 4003) {
      stopWith("Your token expired. Paste a new token to join again.");
    } else if (d.neverConnected) {
      setConn("offline", "Not connected");
      showLogin(d.reachable ? REFUSED : "Cannot reach the chat server at " + location.host + ". Is it running?");
    } else {
      stopWith(REFUSED);
    }
  }

  /** Stop for good (until the user acts), back on the login form. */
  function stopWith(message) {
    setConn("offline", "Not connected");
    state.everConnected = false;
    showLogin(message);
  }

  // -- what the server reports ------------------------------------------------------

  function onWelcome(f) {
    const again = state.everConnected;
    const history = Array.isArray(f.history) ? f.history : [];
    state.me = f.user;
    state.everConnected = true;
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

  function onHistory(list) {
    state.olderBusy = false;
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

  function onHistoryError(err) {
    state.olderBusy = false;
    ui.older.disabled = state.olderDone;
    if (err.code === "disconnected" || err.code === "not_connected") return;  // asked again later
    ui.olderState.textContent = "Could not load older messages: " + err.message;
  }

  const ERROR_TEXT = {
    rate_limited: (e) => "You are sending too fast: wait " +
      (Math.ceil((e.retryAfterMs || 1000) / 100) / 10) + " s, then send again.",
    too_long: (e) => "Message too long: " + e.message + ".",
    unknown_user: (e, to) => (to || "That user") + " is not online; the whisper was not delivered.",
    blocked: (e) => "Message blocked: " + e.message + ".",
    unavailable: (e) => "The server could not deliver that right now (" + e.message + "). Try again.",
    bad_request: (e) => "The server refused that message: " + e.message + ".",
    not_connected: () => "Not connected right now; your message was not sent.",
    timeout: () => "The server did not answer in time; the message may not have been sent.",
  };

  /** Explain a ChatHubError next to the composer. */
  function showSendError(err, to) {
    const explain = ERROR_TEXT[err.code];
    setError(ui.sendError, explain ? explain(err, to) : "Error (" + err.code + "): " + err.message,
             err.code === "not_connected" ? "offline" : err.code);
  }

  function onKicked(f) {
    connectionEnded();
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
    if (!state.hub || !state.hub.connected) {
      setError(ui.sendError, "Not connected right now; your message was not sent.", "offline");
      return false;
    }
    const sent = to ? state.hub.whisper(to, text) : state.hub.chat(text);
    sent.catch((err) => {
      if (err.code === "disconnected") return;  // delivered or not, the reconnect shows it
      if (!ui.text.value) {  // the text comes back to fix and resend
        ui.text.value = raw;
        autosize();
      }
      showSendError(err, to);
    });
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
    state.everConnected = false;
    ui.join.disabled = true;
    start(state.creds);
  });

  ui.leave.addEventListener("click", () => {
    if (state.hub) state.hub.close(1000, "left");
    state.hub = null;
    state.everConnected = false;
    setTarget(null);
    setConn("offline", "Not connected");
    setBanner(null);
    showLogin(null);
  });

  ui.reconnect.addEventListener("click", () => {
    setBanner("Reconnecting…");
    state.hub.connect();
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
}
