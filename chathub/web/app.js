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
  /** the layout's narrow windows (style.css: @media (max-width: 680px)) */
  const NARROW = matchMedia("(max-width: 680px)");

  const $ = (id) => document.getElementById(id);
  const ui = {
    me: $("me"), conn: $("conn"), leave: $("leave"),
    loginView: $("login-view"), login: $("login"), name: $("name"), token: $("token"),
    loginError: $("login-error"), join: $("join"),
    chatView: $("chat-view"), banner: $("banner"), bannerText: $("banner-text"),
    reconnect: $("reconnect"), scroller: $("scroller"), older: $("older"),
    olderState: $("older-state"), users: $("users"), usersLabel: $("users-label"),
    messagesTitle: $("messages-title"), channels: $("channels"), joinBox: $("join-box"),
    joinChannel: $("join-channel"), channelName: $("channel-name"), channelError: $("channel-error"),
    publicChannels: $("public-channels"), publicRefresh: $("public-refresh"),
    userCount: $("user-count"), composer: $("composer"), target: $("target"),
    targetText: $("target-text"), targetClear: $("target-clear"), text: $("text"),
    send: $("send"), sendError: $("send-error"),
  };

  /** the key of the whispers view in state.views (no channel name has an "@") */
  const WHISPERS = "@whispers";

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
    /** channel name (or WHISPERS) -> its view; in sidebar order */
    views: new Map(),
    /** the default channel: the welcome's first channel */
    defaultName: null,
    /** the key of the view shown */
    active: null,
    /** whisper target chosen by clicking a user, or null */
    target: null,
    /** the last `banned` frame ({reason, until}) for these credentials, or null */
    ban: null,
    /** the last `muted` frame ({reason, until}) said in the page (the server says it again
     *  right after each welcome while the mute lasts; a repeat is not said again) */
    lastMute: null,
    /** the timer that clears the mute note at the mute's `until` */
    muteTimer: null,
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

  // -- views: one per channel, plus the whispers -----------------------------------

  /** A channel's (or the whispers') messages, users, paging and unread count. */
  function makeView(key) {
    const whispers = key === WHISPERS;
    const list = node("ol", "messages");
    list.setAttribute("role", "log");
    list.setAttribute("aria-live", "polite");
    list.setAttribute("aria-relevant", "additions");
    list.setAttribute("aria-labelledby", "messages-title");
    list.hidden = true;
    list.dataset.view = key;
    ui.scroller.append(list);
    const item = node("li", "chan-item");
    const button = node("button", "chan");
    button.type = "button";
    button.dataset.view = key;
    const label = node("span", "chan-name", whispers ? "Whispers" : "#" + key);
    const badge = node("span", "unread");
    badge.hidden = true;
    button.append(label, " ", badge);
    item.append(button);
    if (!whispers && key !== state.defaultName) {
      const leave = node("button", "chan-leave quiet", "×");
      leave.type = "button";
      leave.dataset.leave = key;
      leave.setAttribute("aria-label", "Leave #" + key);
      leave.title = "Leave #" + key;
      item.append(leave);
    }
    const v = {
      key, whispers, list, item, button, badge,
      /** ids shown (history pages may overlap what is shown) */
      ids: new Set(),
      /** lowest id shown: `before` of the next history page */
      oldestId: null,
      olderBusy: false,
      /** bumped when the list is reset: a page asked for before is dropped */
      olderGen: 0,
      olderDone: whispers,
      olderText: whispers ? "Whispers sent and received while this page is open." : "",
      users: [],
      unread: 0,
      /** the list was scrolled to the bottom when last shown */
      atBottom: true,
      scrollTop: 0,
      /** the history of the channel arrived at least once */
      loaded: whispers,
    };
    return v;
  }

  function channelLabel(v) { return v.whispers ? "Whispers" : "#" + v.key; }

  /** The view of `key`, created (and put in the sidebar) when missing. */
  function view(key) {
    let v = state.views.get(key);
    if (v) return v;
    v = makeView(key);
    state.views.set(key, v);
    const w = state.views.get(WHISPERS);
    if (w && w !== v) ui.channels.insertBefore(v.item, w.item); else ui.channels.append(v.item);
    return v;
  }

  function activeView() { return state.views.get(state.active) || null; }

  /** The view of a chat message's channel (the default channel when it has none). */
  function chanKey(channel) { return channel == null ? state.defaultName : channel; }

  function removeView(key) {
    const v = state.views.get(key);
    if (!v || key === state.defaultName || key === WHISPERS) return;
    state.views.delete(key);
    v.item.remove();
    v.list.remove();
    if (state.active === key) activate(state.defaultName);
  }

  function clearViews() {
    for (const v of state.views.values()) { v.item.remove(); v.list.remove(); }
    state.views.clear();
    state.active = null;
    state.defaultName = null;
  }

  function renderBadge(v) {
    v.badge.textContent = v.unread ? String(v.unread) : "";
    v.badge.hidden = !v.unread;
    v.button.setAttribute("aria-label", channelLabel(v) + (v.unread ? ", " + v.unread + " unread" : ""));
    v.item.classList.toggle("has-unread", v.unread > 0);
  }

  /** Show the view of `key`: its messages, users and paging state. */
  function activate(key) {
    const next = state.views.get(key);
    if (!next) return;
    const prev = activeView();
    if (prev && prev !== next) {
      prev.atBottom = nearBottom();
      prev.scrollTop = ui.scroller.scrollTop;
      prev.list.hidden = true;
      prev.list.removeAttribute("id");
      prev.button.removeAttribute("aria-current");
      prev.item.classList.remove("active");
    }
    state.active = key;
    next.list.id = "messages";
    next.list.hidden = false;
    next.button.setAttribute("aria-current", "true");
    next.item.classList.add("active");
    // in a narrow window the channels are a row that scrolls sideways: keep this one in sight
    next.item.scrollIntoView({ block: "nearest", inline: "nearest" });
    next.unread = 0;
    renderBadge(next);
    ui.messagesTitle.textContent = "Messages in " + channelLabel(next);
    ui.olderState.textContent = next.olderText;
    ui.older.disabled = next.olderBusy || next.olderDone;
    show(ui.older, !next.olderDone);
    if (next.atBottom) toBottom(); else ui.scroller.scrollTop = next.scrollTop;
    renderUsers();
    setPlaceholder();
    fillViewport();
  }

  /** Alt+↑/↓: the previous or next view in the sidebar. */
  function move(step) {
    const keys = Array.from(ui.channels.querySelectorAll("button[data-view]"), (b) => b.dataset.view);
    const i = keys.indexOf(state.active);
    if (i < 0 || keys.length < 2) return;
    activate(keys[(i + step + keys.length) % keys.length]);
  }

  // -- the message lists ---------------------------------------------------------

  function resetView(v) {
    v.list.replaceChildren();
    v.ids.clear();
    v.oldestId = null;
    v.olderBusy = false;
    v.olderGen++;
    v.olderDone = v.whispers;
    if (!v.whispers) v.olderText = "";
    if (v.key === state.active) {
      ui.olderState.textContent = v.olderText;
      ui.older.disabled = v.olderDone;
      show(ui.older, !v.olderDone);
    }
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
    const text = node("p", "text", m.text);
    text.dir = "auto";  // Hebrew or Arabic reads right to left, with its punctuation in place
    li.append(meta, text);
    return li;
  }

  function noteId(v, id) {
    v.ids.add(id);
    if (v.oldestId === null || cmpId(id, v.oldestId) < 0) v.oldestId = id;
  }

  /** Add live or recovered messages to `v` in id order; skips ids already shown.
   *  Returns the messages added. */
  function addMessages(v, list) {
    const shown = v.key === state.active;
    const follow = shown && nearBottom();
    const added = [];
    for (const m of list) {
      if (!m || typeof m.id !== "string" || v.ids.has(m.id)) continue;
      // Walk back over messages with a higher id (rare: only recovered ones land early).
      let before = null;
      for (let e = v.list.lastElementChild; e; e = e.previousElementSibling) {
        if (!e.dataset.id) continue;
        if (cmpId(e.dataset.id, m.id) > 0) before = e; else break;
      }
      v.list.insertBefore(renderMessage(m), before);
      noteId(v, m.id);
      added.push(m);
    }
    if (shown && added.length && (follow || added.some((m) => m.from === state.me))) toBottom();
    return added;
  }

  /** Messages that arrived for `v` (live or recovered): shown, and counted when unseen. */
  function deliver(v, list, count) {
    const added = addMessages(v, list);
    if (count && v.key !== state.active) {
      const n = added.filter((m) => m.from !== state.me).length;
      if (n) { v.unread += n; renderBadge(v); }
    }
  }

  /** Route messages to their views: chat to its channel; whispers to the whispers
   *  and, as always, to the default channel. */
  function route(list, count) {
    const byView = new Map();
    const put = (key, m) => {
      if (!byView.has(key)) byView.set(key, []);
      byView.get(key).push(m);
    };
    for (const m of list) {
      if (!m || typeof m.id !== "string") continue;
      if (m.type === "whisper") {
        put(WHISPERS, m);
        put(state.defaultName, m);
      } else {
        put(chanKey(m.channel), m);
      }
    }
    for (const [key, msgs] of byView) {
      if (key == null) continue;
      // whispers count as unread in their own view only
      deliver(view(key), msgs, count && (key === WHISPERS || msgs.some((m) => m.type !== "whisper")));
    }
  }

  /** An operator deleted message `id`: take it out of every view showing it (a whisper
   *  is in two). Its id stays noted, so a history page cannot bring it back. */
  function removeMessage(id) {
    if (typeof id !== "string") return;
    for (const v of state.views.values()) {
      for (const e of Array.from(v.list.children)) {
        if (e.dataset.id === id) e.remove();
      }
    }
  }

  /** Prepend a page of older messages to `v`, keeping what the reader looks at in place. */
  function addOlder(v, list) {
    const fresh = list.filter((m) => m && typeof m.id === "string" && !v.ids.has(m.id));
    fresh.sort((a, b) => cmpId(a.id, b.id));
    const frag = document.createDocumentFragment();
    for (const m of fresh) {
      frag.append(renderMessage(m));
      noteId(v, m.id);
    }
    const s = ui.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    v.list.prepend(frag);
    if (v.key === state.active) s.scrollTop = s.scrollHeight - fromBottom;
    return fresh.length;
  }

  function systemLine(v, text, kind) {
    if (v) appendLine(v, node("li", "sys" + (kind ? " " + kind : ""), text));
  }

  /** Add `li` at the end of view `v`, keeping the reader at the bottom if they were there. */
  function appendLine(v, li) {
    const follow = v.key === state.active && nearBottom();
    v.list.append(li);
    if (follow) toBottom();
  }

  function setOlderText(v, text) {
    v.olderText = text;
    if (v.key === state.active) ui.olderState.textContent = text;
  }

  function loadOlder() {
    const v = activeView();
    if (!v || v.olderBusy || v.olderDone || !state.hub || !state.hub.connected) return;
    v.olderBusy = true;
    const gen = v.olderGen;
    setOlderText(v, "Loading older messages…");
    ui.older.disabled = true;
    state.hub.history({ before: v.oldestId || undefined, limit: HISTORY_PAGE, channel: v.key }).then(
      (list) => { if (gen === v.olderGen && state.views.get(v.key) === v) onHistory(v, list); },
      (err) => { if (gen === v.olderGen && state.views.get(v.key) === v) onHistoryError(v, err); });
  }

  /** Keep fetching until the list can scroll (so "scroll up for more" can work). */
  function fillViewport() {
    const v = activeView();
    const s = ui.scroller;
    if (v && v.loaded && !v.olderDone && s.scrollHeight <= s.clientHeight) loadOlder();
  }

  function onHistory(v, list) {
    v.olderBusy = false;
    const shown = v.key === state.active;
    if (list.length === 0) {
      v.olderDone = true;
      setOlderText(v, "This is the beginning of the history.");
      if (shown) {
        if (document.activeElement === ui.older) ui.scroller.focus();
        show(ui.older, false);
      }
      return;
    }
    const n = addOlder(v, list);
    if (shown) ui.older.disabled = false;
    setOlderText(v, n ? "" : "No older messages.");
    if (shown) fillViewport();
  }

  function onHistoryError(v, err) {
    v.olderBusy = false;
    if (v.key === state.active) ui.older.disabled = v.olderDone;
    if (err.code === "disconnected" || err.code === "not_connected") return;  // asked again later
    setOlderText(v, "Could not load older messages: " + err.message);
  }

  // -- users ------------------------------------------------------------------

  /** The users shown for `v`: the channel's members (everyone's, for the whispers). */
  function usersOf(v) {
    if (!v) return [];
    if (v.whispers) {
      const d = state.views.get(state.defaultName);
      return d ? d.users : [];
    }
    return v.users;
  }

  function renderUsers() {
    const v = activeView();
    const users = usersOf(v);
    const items = users.map((name) => {
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
    ui.userCount.textContent = String(users.length);
    ui.usersLabel.textContent = !v || v.whispers || v.key === state.defaultName ? "Online" : "In #" + v.key;
  }

  function setUsers(v, list) {
    v.users = Array.from(new Set(list)).sort();
    updatePublic(v);
    const a = activeView();
    if (a === v || (a && a.whispers && v.key === state.defaultName)) renderUsers();
  }

  function setPlaceholder() {
    const v = activeView();
    const name = state.target;
    let text;
    if (name) {
      text = "Whisper to " + name + " — Enter sends, Esc stops whispering";
    } else if (v && v.whispers) {
      text = "Choose a user to whisper to, or type /w name text";
    } else {
      text = "Message " + (v ? channelLabel(v) : "everyone") +
        " — Enter sends, Shift+Enter for a new line, /w name text whispers";
    }
    // a narrow box has one line: the keys' hint would be cut mid-word, so it goes
    ui.text.placeholder = NARROW.matches ? text.split(" — ")[0] : text;
  }
  NARROW.addEventListener("change", setPlaceholder);

  function setTarget(name) {
    state.target = name;
    ui.targetText.textContent = name ? "Whispering to " + name : "";
    show(ui.target, Boolean(name));
    setPlaceholder();
    renderUsers();
  }

  // -- channels -------------------------------------------------------------------

  const CHANNEL_ERRORS = {
    // the server's message says which: "you are banned from NAME" or "NAME is private: ..."
    forbidden: (name, e) => "You may not join “" + name + "”: " +
      (/\bbanned\b/.test(e.message || "") ? "an operator banned you from it."
        : "it is private and your login does not name it."),
    bad_request: (name, e) => "“" + name + "” is not a valid channel name: " + e.message + ".",
    unknown_channel: (name) => "There is no channel “" + name + "”.",
    too_many_channels: (name, e) => "Could not join “" + name + "”: " + e.message + ".",
    not_connected: () => "Not connected right now; try again when the connection is back.",
  };

  function channelError(name, err) {
    const explain = CHANNEL_ERRORS[err.code];
    return explain ? explain(name, err) : "Could not join “" + name + "” (" + err.code + "): " + err.message;
  }

  /** Join `name` (or show it when already in it); errors go to `where`. */
  function joinChannel(raw, where) {
    const name = raw.trim().replace(/^#/, "");
    if (!name) {
      setError(where, "Type the name of a channel to join.", "usage");
      return Promise.resolve(false);
    }
    setError(where, null);
    if (state.views.has(name)) {
      activate(name);
      return Promise.resolve(true);
    }
    if (!state.hub || !state.hub.connected) {
      setError(where, CHANNEL_ERRORS.not_connected(), "not_connected");
      return Promise.resolve(false);
    }
    return state.hub.subscribe(name).then(() => {
      view(name);  // the subscribed event drew it
      activate(name);
      if (!ui.joinBox.hidden && ui.joinBox.open) refreshPublic();
      return true;
    }, (err) => {
      setError(where, channelError(name, err), err.code);
      return false;
    });
  }

  function leaveChannel(key, where) {
    if (key === WHISPERS) {
      setError(where, "The whispers always stay: /leave leaves a channel.", "usage");
      return;
    }
    if (key === state.defaultName) {
      setError(where, "#" + key + " is where everyone is: it cannot be left.", "usage");
      return;
    }
    if (!state.views.has(key)) {
      setError(where, "You are not in #" + key + ".", "usage");
      return;
    }
    if (!state.hub || !state.hub.connected) {
      setError(where, "Not connected right now; try again when the connection is back.", "offline");
      return;
    }
    setError(where, null);
    state.hub.unsubscribe(key).then(() => removeView(key), (err) => {
      if (err.code === "not_subscribed") removeView(key);
      else setError(where, "Could not leave #" + key + ": " + err.message, err.code);
    });
  }

  /** One entry of the public channels list: "#name  N users", a button. */
  function publicItem(name, n) {
    const li = node("li");
    const b = node("button", "public-chan quiet");
    b.type = "button";
    b.dataset.channel = name;
    const users = n + (n === 1 ? " user" : " users");
    b.append(node("span", "chan-name", "#" + name), " ", node("span", "members", users));
    b.setAttribute("aria-label", (state.views.has(name) ? "Show #" : "Join #") + name + ", " + users);
    li.append(b);
    return li;
  }

  /** A channel this tab is in changed members: its count in the open list follows. */
  function updatePublic(v) {
    if (!ui.joinBox.open || v.whispers) return;
    const b = ui.publicChannels.querySelector('button[data-channel="' + CSS.escape(v.key) + '"]');
    if (b) b.parentElement.replaceWith(publicItem(v.key, v.users.length));
    else if (!v.key.startsWith("$")) refreshPublic();  // new since the list was fetched
  }

  function refreshPublic() {
    if (!state.hub || !state.hub.connected) return;
    state.hub.listChannels().then((list) => {
      const items = list.filter((c) => c && typeof c.name === "string")
        .map((c) => publicItem(c.name, Number(c.users) || 0));
      if (!items.length) items.push(node("li", "hint", "No public channels yet."));
      ui.publicChannels.replaceChildren(...items);
    }, (err) => {
      if (err.code !== "disconnected" && err.code !== "not_connected") {
        ui.publicChannels.replaceChildren(node("li", "error", "Could not list the channels: " + err.message));
      }
    });
  }

  // -- connection -----------------------------------------------------------------

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/ws";
  }

  /** A new connection for these credentials; the old one (if any) is closed. */
  function start(creds) {
    if (state.hub) state.hub.close();
    clearViews();
    const hub = new ChatHub(wsUrl(), creds, { healthUrl: "/healthz" });
    state.hub = hub;
    const on = (type, fn) => hub.addEventListener(type, (ev) => { if (hub === state.hub) fn(ev.detail); });
    on("connecting", onConnecting);
    on("welcome", onWelcome);
    on("subscribed", onSubscribed);
    on("unsubscribed", (f) => {
      // a reason means the server took us out (a reply to our own /leave has none)
      const why = f.reason ? REMOVED_TEXT[f.reason] || REMOVED_TEXT.other : null;
      if (why && state.views.has(f.channel)) {
        systemLine(state.views.get(state.defaultName), why("#" + f.channel, f.reason, f) +
          (f.message ? " Reason: " + f.message : ""), "notice");
      }
      removeView(f.channel);
    });
    on("muted", onMuted);
    on("unmuted", onUnmuted);
    on("message", (m) => route([m], true));
    on("delete", (f) => removeMessage(f.id));
    on("join", (f) => {
      const v = state.views.get(chanKey(f.channel));
      if (!v) return;
      if (!v.users.includes(f.user)) setUsers(v, [...v.users, f.user]);
      systemLine(v, f.user + " joined", "presence");
    });
    on("leave", (f) => {
      const v = state.views.get(chanKey(f.channel));
      if (!v) return;
      setUsers(v, v.users.filter((u) => u !== f.user));
      const r = f.reason && !["left", "client closed"].includes(f.reason) ? " (" + f.reason + ")" : "";
      systemLine(v, f.user + " left" + r, "presence");
    });
    on("users", (f) => {
      const v = state.views.get(chanKey(f.channel));
      if (v && Array.isArray(f.users)) setUsers(v, f.users);
    });
    on("error", (err) => showSendError(err));
    on("shutdown", () => {
      state.shutdownSeen = true;
      setBanner("The server is restarting. Reconnecting automatically…");
    });
    on("disconnect", onDisconnect);
    on("kicked", onKicked);
    on("banned", onBanned);
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
    for (const v of state.views.values()) v.olderBusy = false;
    const v = activeView();
    if (v) ui.older.disabled = v.olderDone;
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
    // a browser cannot read why an upgrade was refused; after a ban, that is the likely why
    const refused = state.ban ? "The server still refuses you: you were banned" + endOf(state.ban, "the ban") +
      ". Try again when the ban ends." : REFUSED;
    if (d.code === 4003) {
      stopWith("Your token expired. Paste a new token to join again.");
    } else if (d.neverConnected) {
      setConn("offline", "Not connected");
      showLogin(d.reachable ? refused : "Cannot reach the chat server at " + location.host + ". Is it running?");
    } else {
      stopWith(refused);
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
    const joined = Array.isArray(f.channels) ? f.channels.filter((c) => typeof c === "string") : [];
    state.me = f.user;
    state.everConnected = true;
    state.shutdownSeen = false;
    state.why = null;
    state.ban = null;
    setMute(null);  // a mute still in force is told again right after this welcome
    try { localStorage.setItem(NAME_KEY, state.creds.token ? "" : state.creds.user); } catch { /* private mode */ }
    if (state.defaultName === null) {
      state.defaultName = joined[0] || "general";
      view(state.defaultName);
      view(WHISPERS);
    }
    const d = view(state.defaultName);
    setBanner(null);
    setConn("online", "Connected");
    setUsers(d, Array.isArray(f.users) ? f.users : []);
    ui.users.classList.remove("stale");
    showChat();
    if (state.active === null) activate(d.key);
    const a = activeView();
    if (!again) {
      resetView(d);
      d.loaded = true;
      route(history, false);
      toBottom();
    } else if (f.recovered === true) {
      const before = d.ids.size;
      route(history, true);
      const n = d.ids.size - before;
      systemLine(a, "Reconnected" + (n ? " — " + n + " missed message" + (n === 1 ? "" : "s") +
        (a === d ? " below." : " in " + channelLabel(d) + ".") : "."), "notice");
    } else {
      resetView(d);
      route(history, false);
      systemLine(d, "Reconnected. Some messages may be missing: scroll up to load older ones.", "notice");
      if (a === d) toBottom();
    }
    // the other channels the server put us in: their history and members
    // (chathub.js resubscribes, with its since, the channels already joined)
    for (const c of joined.slice(1)) {
      if (!state.views.has(c) || !state.views.get(c).loaded) {
        view(c);
        state.hub.subscribe(c).catch(() => { /* shown when it comes back */ });
      }
    }
    if (document.activeElement === document.body || document.activeElement === ui.reconnect) ui.text.focus();
    fillViewport();
    if (ui.joinBox.open) refreshPublic();
  }

  /** A subscribe's reply: on joining, and again (with since) after each reconnect. */
  function onSubscribed(f) {
    if (typeof f.channel !== "string") return;
    const v = view(f.channel);
    const history = Array.isArray(f.history) ? f.history : [];
    setUsers(v, Array.isArray(f.users) ? f.users : []);
    if (!v.loaded) {
      resetView(v);
      v.loaded = true;
      route(history, false);
    } else if (f.recovered === false) {
      resetView(v);
      route(history, false);
      systemLine(v, "Reconnected. Some messages may be missing: scroll up to load older ones.", "notice");
    } else {
      route(history, true);
    }
    if (v.key === state.active) {
      ui.users.classList.remove("stale");
      fillViewport();
    }
  }

  const ERROR_TEXT = {
    rate_limited: (e) => (/ is in slow mode/.test(e.message || "")
      ? "This channel is in slow mode" : "You are sending too fast") + ": wait " +
      (Math.ceil((e.retryAfterMs || 1000) / 100) / 10) + " s, then send again.",
    too_long: (e) => "Message too long: " + e.message + ".",
    unknown_user: (e, to) => (to || "That user") + " is not online; the whisper was not delivered.",
    blocked: (e) => "Message blocked: " + e.message + ".",
    unavailable: (e) => "The server could not deliver that right now (" + e.message + "). Try again.",
    bad_request: (e) => "The server refused that message: " + e.message + ".",
    not_subscribed: (e) => "You are not in that channel any more: " + e.message + ".",
    muted: (e) => (e.retryAfterMs == null ? "You are muted by an operator."
      : "You are muted by an operator: you can send again in " + fmtWait(e.retryAfterMs) + "."),
    not_connected: () => "Not connected right now; your message was not sent.",
    timeout: () => "The server did not answer in time; the message may not have been sent.",
  };

  /** Why the server took this tab out of a channel (`unsubscribed` with a reason). */
  const REMOVED_TEXT = {
    kicked: (c) => "An operator removed you from " + c + ". You can join it again.",
    banned: (c, _r, f) => "You were removed from " + c + " by an operator and banned from it" +
      endOf(f, "the ban") + ".",
    deleted: (c) => c + " was deleted by an operator.",
    other: (c, reason) => "You were removed from " + c + " (" + reason + ").",
  };

  /** A wait in ms as people say it: "45 s", "3 min", "2 h 5 min". */
  function fmtWait(ms) {
    const s = Math.max(1, Math.ceil(ms / 1000));
    if (s < 60) return s + " s";
    const min = Math.ceil(s / 60);
    if (min < 60) return min + " min";
    const h = Math.floor(min / 60);
    return h + " h" + (min % 60 ? " " + (min % 60) + " min" : "");
  }

  /** Explain a ChatHubError next to the composer. */
  function showSendError(err, to) {
    const explain = ERROR_TEXT[err.code];
    setError(ui.sendError, explain ? explain(err, to) : "Error (" + err.code + "): " + err.message,
             err.code === "not_connected" ? "offline" : err.code);
  }

  function onKicked(f) {
    stopped("You were disconnected by an operator" + (f.reason ? " (reason: " + f.reason + ")" : "") +
      ". You will not be reconnected automatically.");
  }

  /** Muted (frame "muted"): said once in the channel shown and kept beside the composer;
   *  the same mute told again (after a reconnect's welcome) is not repeated. */
  function onMuted(f) {
    const last = state.lastMute;
    const same = last && last.until === f.until && last.reason === f.reason;
    state.lastMute = f;
    const text = "An operator muted you" + endOf(f, "it") + (f.reason ? " (reason: " + f.reason + ")" : "") +
      ". You can read, but your messages will be refused.";
    if (!same) systemLine(activeView() || state.views.get(state.defaultName), text, "notice");
    setMute(f, text);
  }

  /** Unmuted (frame "unmuted"): an operator lifted the mute early. */
  function onUnmuted() {
    state.lastMute = null;
    setMute(null);
    systemLine(activeView() || state.views.get(state.defaultName),
      "An operator lifted your mute: you can send again.", "notice");
  }

  /** Keep the mute note beside the composer while mute `f` lasts (null: none); a mute
   *  that runs out sends no frame, so a timer clears the note at its `until`. */
  function setMute(f, text) {
    clearTimeout(state.muteTimer);
    if (f) {
      setError(ui.sendError, text, "muted");
      if (typeof f.until === "number") {
        // setTimeout holds at most 2^31-1 ms (about 24.8 days); a longer mute keeps its note
        const wait = f.until - Date.now();
        if (wait < 2 ** 31) state.muteTimer = setTimeout(() => setMute(null), Math.max(0, wait));
      }
    } else if (ui.sendError.dataset.code === "muted") {
      setError(ui.sendError, null);
    }
  }

  /** Banned (frame "banned", close 4004): for how long, and why. */
  function onBanned(f) {
    state.ban = f;
    stopped("You were banned by an operator" + endOf(f, "the ban") + (f.reason ? " (reason: " + f.reason + ")" : "") +
      ". You will not be reconnected automatically; until then the server refuses to let you back in.");
  }

  /** " until <date>" for the end (epoch ms) of a ban or mute `f`, " until an operator
   *  lifts <what>" for null, "" when unknown (a close that came without its frame). */
  function endOf(f, what) {
    if (typeof f.until === "number") {
      return " until " + new Date(f.until).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    }
    return f.until === null ? " until an operator lifts " + what : "";
  }

  function stopped(text) {
    connectionEnded();
    setConn("offline", "Disconnected");
    setBanner(text, "Reconnect");
    ui.reconnect.focus();
  }

  // -- sending ------------------------------------------------------------------

  /** Send what is in the box (or run its command); true when the box can be cleared. */
  function sendText(raw) {
    const line = raw.trimStart();
    const join = /^\/join(?:\s+([\s\S]*))?$/.exec(line);
    if (join) {
      joinChannel((join[1] || "").trim(), ui.sendError).then((ok) => {
        if (!ok && !ui.text.value) { ui.text.value = raw; autosize(); }
      });
      return true;
    }
    const leave = /^\/(?:leave|part)(?:\s+#?(\S+))?\s*$/.exec(line);
    if (leave) {
      leaveChannel(leave[1] || state.active, ui.sendError);
      return ui.sendError.hidden;
    }
    let text = raw;
    let to = state.target;
    const cmd = /^\/(w|whisper|msg)(?:\s+(\S+))?(?:\s([\s\S]*))?$/.exec(line);
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
    const v = activeView();
    if (!to && v && v.whispers) {
      setError(ui.sendError, "Choose a user to whisper to, or type /w NAME text.", "usage");
      return false;
    }
    if (!state.hub || !state.hub.connected) {
      setError(ui.sendError, "Not connected right now; your message was not sent.", "offline");
      return false;
    }
    const sent = to ? state.hub.whisper(to, text)
      : state.hub.chat(text, v && v.key !== state.defaultName ? { channel: v.key } : {});
    sent.catch((err) => {
      if (err.code === "disconnected") return;  // delivered or not, the reconnect shows it
      if (!ui.text.value) {  // the text comes back to fix and resend
        ui.text.value = raw;
        autosize();
      } else if (ui.text.value !== raw) {  // the box holds another: keep this one aside
        unsentLine(v, raw);
      }
      showSendError(err, to);
    });
    setError(ui.sendError, null);
    return true;
  }

  /** A refused message that could not go back into the box (it held another one):
   *  a line in its view, with a button that puts it back once the box is empty. */
  function unsentLine(v, raw) {
    if (!v) return;
    const li = node("li", "sys unsent");
    const b = node("button", "quiet put-back", "Put back in the box");
    b.type = "button";
    b.addEventListener("click", () => {
      if (ui.text.value.trim()) {
        setError(ui.sendError, "Send or clear the message box first, then put the message back.", "usage");
        return;
      }
      ui.text.value = raw;
      autosize();
      li.remove();
      ui.text.focus();
    });
    li.append(node("span", "unsent-text", "Not sent: “" + raw + "”"), " ", b);
    appendLine(v, li);
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
    const creds = token ? { token } : { user: name };
    if (JSON.stringify(creds) !== JSON.stringify(state.creds)) {
      state.ban = null;
      state.lastMute = null;
    }
    state.creds = creds;
    state.me = token ? null : name;
    state.everConnected = false;
    ui.join.disabled = true;
    start(state.creds);
  });

  ui.leave.addEventListener("click", () => {
    if (state.hub) state.hub.close(1000, "left");
    state.hub = null;
    state.everConnected = false;
    clearViews();
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

  document.addEventListener("keydown", (ev) => {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey || ui.chatView.hidden) return;
    if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
      ev.preventDefault();
      move(ev.key === "ArrowUp" ? -1 : 1);
    }
  });

  ui.channels.addEventListener("click", (ev) => {
    const leave = ev.target.closest("button[data-leave]");
    if (leave) {
      leaveChannel(leave.dataset.leave, ui.sendError);
      return;
    }
    const b = ev.target.closest("button[data-view]");
    if (b) activate(b.dataset.view);
  });

  ui.joinChannel.addEventListener("submit", (ev) => {
    ev.preventDefault();
    joinChannel(ui.channelName.value, ui.channelError).then((ok) => {
      if (ok) { ui.channelName.value = ""; ui.text.focus(); } else ui.channelName.focus();
    });
  });
  ui.joinBox.addEventListener("toggle", () => { if (ui.joinBox.open) refreshPublic(); });
  ui.publicRefresh.addEventListener("click", refreshPublic);
  ui.publicChannels.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-channel]");
    if (b) joinChannel(b.dataset.channel, ui.channelError);
  });

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
