// cc-executor dashboard: plain JavaScript, no build step, no dependencies.
// It speaks the service's JSON-RPC 2.0 protocol over the same WebSocket as any client
// (docs/protocol.md): `listen` for every task's lifecycle events, `status` for the task
// table, `session.list` / `session.logs` for sessions, `output` and `subscribe` (with
// from_offset) for the log view, `control` for the buttons, `workspace.diff` for the diff
// tab of a task run in a worktree (workspace.js). The names of methods,
// notifications, statuses and actions come from the service (GET /protocol.json, built from
// cc_executor/protocol.py): the page spells none of them itself.
"use strict";

(() => {
  const TOKEN_KEY = "cc-executor-token";
  const TAIL_BYTES = 256 * 1024; // log bytes shown when a task is selected
  const PAGE_BYTES = 256 * 1024; // "Load earlier" step
  const MAX_DOM_BYTES = 4 * 1024 * 1024; // while following, older text leaves the page
  const READ_LIMIT = 1024 * 1024; // bytes per `output` call
  const TASK_LIMIT = 200;
  const REFRESH_MS = 2000;

  // ------------------------------------------------------------------ the protocol's names

  let M = {}; // methods by member name: M.STATUS is "status"
  let N = {}; // notifications: N.OUTPUT is "process.output"
  let S = {}; // task statuses: S.RUNNING is "running"
  let A = {}; // control actions: A.PAUSE is "PAUSE"
  let FINAL = new Set();

  async function loadProtocol() {
    for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
      try {
        const r = await fetch("/protocol.json", { cache: "no-store" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const p = await r.json();
        M = p.methods;
        N = p.notifications;
        S = p.task_statuses;
        A = p.actions;
        FINAL = new Set(p.final_statuses);
        return;
      } catch (_) {
        setConn("closed", "service unreachable, retrying");
        await new Promise((done) => setTimeout(done, delay));
      }
    }
  }

  let protocolReady = null; // the promise of loadProtocol(), started by init()

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  // ------------------------------------------------------------------ formatting

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let i = -1;
    do {
      v /= 1024;
      i += 1;
    } while (v >= 1024 && i < units.length - 1);
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || Number.isNaN(s)) return "";
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
    const h = Math.floor(m / 60);
    return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  }

  function fmtCost(usd) {
    if (usd === null || usd === undefined) return "";
    return `$${Number(usd).toFixed(usd < 1 ? 4 : 2)}`;
  }

  function fmtTime(epoch) {
    if (!epoch) return "";
    return new Date(epoch * 1000).toLocaleTimeString();
  }

  function shellQuote(arg) {
    return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
  }

  function commandText(rec) {
    if (rec.kind === "claude" && rec.prompt) return rec.prompt;
    const c = rec.command;
    if (Array.isArray(c)) return c.map(shellQuote).join(" ");
    return c === undefined || c === null ? "" : String(c);
  }

  function statusBadge(status) {
    const s = el("span", "status", status || "");
    s.dataset.status = status || "";
    return s;
  }

  // ------------------------------------------------------------------ token

  // The token comes from the URL fragment (never sent to any server) or the form, and is
  // kept in sessionStorage: this tab only, gone when it closes. The fragment is wiped
  // from the address bar at once.
  function takeTokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      try {
        sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      } catch (_) {
        /* storage disabled: the form asks */
      }
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  // ------------------------------------------------------------------ messages

  let messageTimer = null;

  function showMessage(text, isError = false, sticky = false) {
    const m = $("message");
    m.textContent = text;
    m.classList.toggle("error", isError);
    m.hidden = !text;
    clearTimeout(messageTimer);
    if (text && !sticky) messageTimer = setTimeout(() => (m.hidden = true), 6000);
  }

  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  }

  // ------------------------------------------------------------------ JSON-RPC client

  class RpcError extends Error {
    constructor(err) {
      super(err.message || "error");
      this.code = err.code;
      this.data = err.data;
    }
  }

  class Rpc {
    constructor(onNotify, onOpen, onClose) {
      this.onNotify = onNotify;
      this.onOpen = onOpen;
      this.onClose = onClose;
      this.ws = null;
      this.nextId = 1;
      this.pending = new Map();
    }

    connect(token) {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      // Browsers cannot set an Authorization header on a WebSocket: the token goes in the
      // handshake's query string, to this service only (docs/dashboard.md).
      const url = `${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`;
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.onOpen();
      };
      ws.onmessage = (ev) => this.receive(ev.data);
      ws.onclose = (ev) => {
        if (this.ws === ws) this.ws = null;
        for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
        this.pending.clear();
        this.onClose(opened, ev);
      };
    }

    get open() {
      return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
    }

    receive(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (_) {
        return;
      }
      for (const m of Array.isArray(msg) ? msg : [msg]) {
        if (m && m.method && m.id === undefined) {
          this.onNotify(m.method, m.params || {});
        } else if (m && this.pending.has(m.id)) {
          const { resolve, reject } = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.error) reject(new RpcError(m.error));
          else resolve(m.result);
        }
      }
    }

    request(method, params) {
      const id = this.nextId++;
      const promise = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      return [{ jsonrpc: "2.0", id, method, params: params || {} }, promise];
    }

    call(method, params) {
      if (!this.open) return Promise.reject(new Error("not connected"));
      const [req, promise] = this.request(method, params);
      this.ws.send(JSON.stringify(req));
      return promise;
    }

    // Several calls in one frame (a JSON-RPC batch); each promise settles on its own.
    batch(calls) {
      if (!this.open) return calls.map(() => Promise.reject(new Error("not connected")));
      const reqs = [];
      const promises = [];
      for (const [method, params] of calls) {
        const [req, promise] = this.request(method, params);
        reqs.push(req);
        promises.push(promise);
      }
      if (reqs.length) this.ws.send(JSON.stringify(reqs));
      return promises;
    }
  }

  // ------------------------------------------------------------------ state

  const tasks = new Map(); // task_id -> {rec, seenAt, stdout, stderr, row}
  let sessionsEnabled = true;
  let selectedSession = null;
  let refreshTimer = null;
  let sessionTimer = null;
  let retryDelay = 500;
  let retryTimer = null;

  const rpc = new Rpc(onNotify, onOpen, onClose);

  async function connect() {
    clearTimeout(retryTimer);
    await protocolReady;
    const token = getToken();
    if (!token) {
      askToken("Enter the service's token (or open this page with #token=...).");
      return;
    }
    $("token-form").hidden = true;
    $("forget-token").hidden = false;
    setConn("connecting", "connecting");
    rpc.connect(token);
  }

  function askToken(text) {
    setConn("refused", "not connected");
    $("token-form").hidden = false;
    $("forget-token").hidden = true;
    showMessage(text, true, true);
    $("token-input").focus();
  }

  async function onOpen() {
    retryDelay = 500;
    setConn("open", "connected");
    showMessage("");
    try {
      await rpc.call(M.LISTEN, { enabled: true });
    } catch (e) {
      showMessage(`listen failed: ${e.message}`, true);
    }
    refreshTasks();
    refreshSessions();
    if (logView.taskId) selectTask(logView.taskId, true);
  }

  async function onClose(opened) {
    if (!opened) {
      // The handshake failed. The browser does not say why: ask /health whether the
      // service is up; if it is, it refused us (401 token, 403 origin).
      let up = false;
      try {
        const r = await fetch("/health", { cache: "no-store" });
        up = r.ok;
      } catch (_) {
        up = false;
      }
      if (up) {
        askToken(
          "The service refused the connection: wrong token, or this page's origin is not " +
            "allowed (open it at the service's own address, see docs/dashboard.md).",
        );
        return;
      }
    }
    setConn("closed", "disconnected, retrying");
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  }

  // ------------------------------------------------------------------ notifications

  function onNotify(method, p) {
    switch (method) {
      case N.OUTPUT:
        logView.onOutput(p);
        break;
      case N.DROPPED:
        logView.onDropped(p);
        break;
      case N.ERROR:
        if (p.task_id === logView.taskId) showMessage(`task ${p.task_id}: ${p.error}`, true);
        break;
      case N.STARTED:
      case N.PAUSED:
      case N.RESUMED:
      case N.COMPLETED:
        onTaskEvent(method, p);
        break;
      case N.SESSION_UPDATED:
        scheduleSessions();
        break;
      default:
        break;
    }
  }

  function onTaskEvent(method, p) {
    const t = tasks.get(p.task_id);
    if (t) {
      if (p.status) t.rec.status = p.status;
      if (method === N.COMPLETED) {
        Object.assign(t.rec, p);
        t.stdout = p.stdout_bytes;
        t.stderr = p.stderr_bytes;
      }
      renderRow(t);
    }
    if (p.task_id === logView.taskId) {
      if (p.status) logView.setStatus(p.status);
      if (method === N.COMPLETED) logView.updateRange();
    }
    scheduleRefresh(100);
  }

  // ------------------------------------------------------------------ tasks table

  function scheduleRefresh(ms) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshTasks, ms);
  }

  async function refreshTasks() {
    clearTimeout(refreshTimer);
    if (!rpc.open) return;
    try {
      const res = await rpc.call(M.STATUS, { limit: TASK_LIMIT });
      const now = performance.now();
      const seen = new Set();
      for (const rec of res.tasks) {
        seen.add(rec.task_id);
        let t = tasks.get(rec.task_id);
        if (!t) {
          t = { rec, seenAt: now, stdout: rec.stdout_bytes, stderr: rec.stderr_bytes, row: null };
          tasks.set(rec.task_id, t);
        }
        t.rec = rec;
        t.seenAt = now;
        if (FINAL.has(rec.status)) {
          t.stdout = rec.stdout_bytes;
          t.stderr = rec.stderr_bytes;
        }
      }
      for (const [id, t] of tasks) {
        if (!seen.has(id)) {
          if (t.row) t.row.remove();
          tasks.delete(id);
        }
      }
      await refreshLiveBytes();
      renderTasks(res.stats);
    } catch (e) {
      if (rpc.open) showMessage(`status failed: ${e.message}`, true);
    } finally {
      if (rpc.open) scheduleRefresh(REFRESH_MS);
    }
  }

  // A live task's record does not count its bytes yet: `output` with limit 0 gives the
  // total logged so far, for both streams of every live task, in one batch.
  async function refreshLiveBytes() {
    const live = [...tasks.values()].filter((t) => !FINAL.has(t.rec.status) && t.rec.status !== S.QUEUED);
    const calls = [];
    for (const t of live) {
      calls.push([M.OUTPUT, { task_id: t.rec.task_id, stream: "stdout", limit: 0 }]);
      calls.push([M.OUTPUT, { task_id: t.rec.task_id, stream: "stderr", limit: 0 }]);
    }
    const results = await Promise.allSettled(rpc.batch(calls));
    live.forEach((t, i) => {
      const o = results[2 * i];
      const e = results[2 * i + 1];
      if (o.status === "fulfilled") t.stdout = o.value.total;
      if (e.status === "fulfilled") t.stderr = e.value.total;
    });
  }

  function runtimeOf(t) {
    const d = t.rec.duration_s;
    if (d === null || d === undefined) return null;
    if (FINAL.has(t.rec.status)) return d;
    return d + (performance.now() - t.seenAt) / 1000;
  }

  function controlButton(label, action, t, enabled, cls) {
    const b = el("button", `small ${cls || ""}`.trim(), label);
    b.type = "button";
    b.dataset.action = action;
    b.disabled = !enabled;
    b.addEventListener("click", (ev) => {
      ev.stopPropagation();
      control(t.rec.task_id, action);
    });
    return b;
  }

  function renderRow(t) {
    const rec = t.rec;
    if (!t.row) {
      t.row = el("tr");
      t.row.dataset.taskId = rec.task_id;
      t.row.addEventListener("click", () => selectTask(rec.task_id));
    }
    const row = t.row;
    row.replaceChildren();
    row.classList.toggle("selected", rec.task_id === logView.taskId);
    row.dataset.status = rec.status;

    const st = el("td");
    st.append(statusBadge(rec.status));
    const id = el("td", "id", rec.task_id);
    id.title = `pid ${rec.pid ?? "-"}; created ${fmtTime(rec.created_at)}`;
    const what = el("td", "what");
    if (rec.name) what.append(el("span", "name", rec.name));
    const text = commandText(rec);
    what.append(document.createTextNode(text));
    what.title = text;
    const runtime = el("td", "num runtime", fmtDuration(runtimeOf(t)));
    const bytes = el("td", "num bytes");
    fillBytes(bytes, t);
    const cost = el("td", "num", rec.kind === "claude" ? fmtCost(rec.total_cost_usd) : "");
    const ctl = el("td", "ctl");
    const buttons = el("div", "buttons");
    const s = rec.status;
    buttons.append(
      controlButton("Pause", A.PAUSE, t, s === S.RUNNING),
      controlButton("Resume", A.RESUME, t, s === S.PAUSED),
      controlButton("Cancel", A.CANCEL, t, !FINAL.has(s), "danger"),
    );
    ctl.append(buttons);
    row.append(st, id, what, runtime, bytes, cost, ctl);
  }

  function fillBytes(cell, t) {
    cell.textContent = fmtBytes((t.stdout || 0) + (t.stderr || 0));
    cell.title = `stdout ${t.stdout || 0} B, stderr ${t.stderr || 0} B`;
  }

  // The selected task's log view knows its byte counts before the next refresh does.
  function sawBytes(taskId, stream, end) {
    const t = tasks.get(taskId);
    if (!t || (t[stream] || 0) >= end) return;
    t[stream] = end;
    const cell = t.row && t.row.querySelector(".bytes");
    if (cell) fillBytes(cell, t);
  }

  function renderTasks(stats) {
    const body = document.querySelector("#tasks tbody");
    const list = [...tasks.values()].sort((a, b) => b.rec.created_at - a.rec.created_at);
    for (const t of list) {
      renderRow(t);
      body.append(t.row); // moves existing rows into order
    }
    $("no-tasks").hidden = list.length > 0;
    $("task-count").textContent = list.length ? `(${list.length})` : "";
    if (stats) {
      $("stats").textContent =
        `v${stats.version} · ${stats.running} running · ${stats.paused} paused · ` +
        `${stats.queued} queued`;
    }
    const sel = logView.taskId && tasks.get(logView.taskId);
    if (sel) {
      logView.setStatus(sel.rec.status);
      logView.showWorkspace(sel.rec);
    }
  }

  function tickRuntimes() {
    for (const t of tasks.values()) {
      if (t.row && !FINAL.has(t.rec.status)) {
        const cell = t.row.querySelector(".runtime");
        if (cell) cell.textContent = fmtDuration(runtimeOf(t));
      }
    }
  }

  async function control(taskId, action) {
    try {
      const res = await rpc.call(M.CONTROL, { task_id: taskId, action });
      const t = tasks.get(taskId);
      if (t) {
        t.rec.status = res.status;
        renderRow(t);
      }
      if (taskId === logView.taskId) logView.setStatus(res.status);
      scheduleRefresh(50);
    } catch (e) {
      showMessage(`${action.toLowerCase()} ${taskId}: ${e.message}`, true);
    }
  }

  // ------------------------------------------------------------------ sessions

  function scheduleSessions() {
    clearTimeout(sessionTimer);
    sessionTimer = setTimeout(refreshSessions, 150);
  }

  async function refreshSessions() {
    if (!rpc.open || !sessionsEnabled) return;
    let res;
    try {
      res = await rpc.call(M.SESSION_LIST, { include_ended: true });
    } catch (e) {
      if (e instanceof RpcError) {
        sessionsEnabled = false;
        $("no-sessions").textContent = `Sessions unavailable: ${e.message}`;
      }
      return;
    }
    const ul = $("sessions");
    ul.replaceChildren();
    const list = res.sessions.slice().sort((a, b) => b.created_at - a.created_at);
    for (const s of list) {
      const li = el("li");
      li.dataset.sessionId = s.session_id;
      li.classList.toggle("selected", s.session_id === selectedSession);
      li.append(el("span", "title", s.name || s.session_id), statusBadge(s.status));
      const meta = `${s.turns} turn${s.turns === 1 ? "" : "s"}` +
        (s.queued ? ` · ${s.queued} queued` : "") +
        (s.claude_options && s.claude_options.model ? ` · ${s.claude_options.model}` : "") +
        ` · ${s.working_dir || ""}`;
      li.append(el("span", "meta", meta));
      li.addEventListener("click", () => selectSession(s.session_id));
      ul.append(li);
    }
    $("no-sessions").hidden = list.length > 0;
    $("session-count").textContent = res.total ? `(${res.active} active of ${res.total})` : "";
    if (selectedSession) loadSessionLogs(selectedSession);
  }

  function selectSession(id) {
    selectedSession = id;
    for (const li of $("sessions").children) {
      li.classList.toggle("selected", li.dataset.sessionId === id);
    }
    loadSessionLogs(id);
  }

  async function loadSessionLogs(id) {
    let res;
    try {
      res = await rpc.call(M.SESSION_LOGS, { session_id: id, lines: 200 });
    } catch (e) {
      showMessage(`${M.SESSION_LOGS}: ${e.message}`, true);
      return;
    }
    if (id !== selectedSession) return;
    $("session-detail").hidden = false;
    $("session-title").textContent = `${res.name || res.session_id} — turns and messages`;
    const ol = $("session-turns");
    ol.replaceChildren();
    for (const e of res.entries) {
      const li = el("li");
      const head = el("div", "head");
      if (e.type === "turn") {
        head.append(el("strong", null, `#${e.turn}`), statusBadge(e.status));
        head.append(el("span", "muted", e.kind + (e.from_session ? ` from ${e.from_session}` : "")));
        if (e.task_id) {
          const a = el("a", "task-link", e.task_id);
          a.tabIndex = 0;
          a.addEventListener("click", () => selectTask(e.task_id));
          head.append(a);
        }
        if (e.cost_usd !== null && e.cost_usd !== undefined) head.append(el("span", "muted", fmtCost(e.cost_usd)));
        li.append(head, el("div", "text", e.message || e.prompt || ""));
        const out = e.result || e.error;
        if (out) li.append(el("div", "result", out.length > 600 ? `${out.slice(0, 600)}…` : out));
      } else {
        const dir = e.direction === "out" ? `to ${e.to_session}` : `from ${e.from_session}`;
        head.append(el("strong", null, "message"), el("span", "muted", `${dir} · ${fmtTime(e.at)}`));
        li.append(head, el("div", "text", e.text));
      }
      ol.append(li);
    }
  }

  // ------------------------------------------------------------------ log view

  function bytesOf(p) {
    if (p.encoding === "base64") {
      const bin = atob(p.data);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
      return out;
    }
    return new TextEncoder().encode(p.data);
  }

  function concat(parts) {
    const n = parts.reduce((a, b) => a + b.length, 0);
    const out = new Uint8Array(n);
    let pos = 0;
    for (const p of parts) {
      out.set(p, pos);
      pos += p.length;
    }
    return out;
  }

  // One stream of the selected task: the bytes [start, end) of its log are on the page.
  class StreamView {
    constructor(name) {
      this.name = name;
      this.pre = $(`log-${name}`);
      this.reset(0);
    }

    reset(offset) {
      this.start = offset;
      this.end = offset;
      this.pieces = []; // [{node, bytes}]
      this.domBytes = 0;
      this.decoder = new TextDecoder("utf-8");
      this.pre.replaceChildren();
    }

    // Drop a partial first line when the window does not start at the log's start.
    static trimToLine(bytes, offset) {
      if (offset === 0) return 0;
      const nl = bytes.indexOf(10);
      return nl >= 0 && nl < bytes.length - 1 ? nl + 1 : 0;
    }

    append(bytes) {
      if (!bytes.length) return;
      const node = document.createTextNode(this.decoder.decode(bytes, { stream: true }));
      this.pre.append(node);
      this.pieces.push({ node, bytes: bytes.length });
      this.end += bytes.length;
      this.domBytes += bytes.length;
    }

    prepend(bytes) {
      const node = document.createTextNode(new TextDecoder("utf-8").decode(bytes));
      this.pre.prepend(node);
      this.pieces.unshift({ node, bytes: bytes.length });
      this.start -= bytes.length;
      this.domBytes += bytes.length;
    }

    trimHead() {
      while (this.domBytes > MAX_DOM_BYTES && this.pieces.length > 1) {
        const p = this.pieces.shift();
        p.node.remove();
        this.start += p.bytes;
        this.domBytes -= p.bytes;
      }
    }

    atBottom() {
      const pre = this.pre;
      return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    }
  }

  const workspaceView = window.ccxWorkspaceView({
    call: (method, params) => rpc.call(method, params),
    method: (name) => M[name],
    bytesOf,
    $,
    el,
  });

  const logView = {
    taskId: null,
    gen: 0,
    active: "stdout",
    streams: null,
    queue: Promise.resolve(),
    scrollPending: false,

    init() {
      this.streams = { stdout: new StreamView("stdout"), stderr: new StreamView("stderr") };
      $("tab-stdout").addEventListener("click", () => this.show("stdout"));
      $("tab-stderr").addEventListener("click", () => this.show("stderr"));
      $("tab-diff").addEventListener("click", () => this.show("diff"));
      $("load-earlier").addEventListener("click", () => this.loadEarlier());
      $("follow").addEventListener("change", () => this.scroll());
      for (const s of Object.values(this.streams)) {
        s.pre.addEventListener("scroll", () => {
          if (s.name === this.active && !this.scrollPending) $("follow").checked = s.atBottom();
        });
      }
      $("btn-pause").addEventListener("click", () => this.taskId && control(this.taskId, A.PAUSE));
      $("btn-resume").addEventListener("click", () => this.taskId && control(this.taskId, A.RESUME));
      $("btn-cancel").addEventListener("click", () => this.taskId && control(this.taskId, A.CANCEL));
    },

    show(name) {
      this.active = name;
      for (const s of Object.values(this.streams)) {
        s.pre.hidden = s.name !== name;
        $(`tab-${s.name}`).setAttribute("aria-selected", String(s.name === name));
      }
      $("log-diff").hidden = name !== "diff";
      $("tab-diff").setAttribute("aria-selected", String(name === "diff"));
      if (name === "diff") this.loadDiff();
      this.updateRange();
      this.scroll();
    },

    loadDiff() {
      const taskId = this.taskId;
      if (!taskId) return;
      workspaceView.load(taskId).catch((e) => showMessage(`diff: ${e.message}`, true));
    },

    // The selected task's record changed (or another task was selected).
    showWorkspace(rec) {
      const changed = workspaceView.setTask(rec);
      if (this.active !== "diff") return;
      if (!rec || !rec.workspace) this.show("stdout");
      else if (changed) this.loadDiff();
    },

    setStatus(status) {
      const badge = $("log-status");
      badge.textContent = status;
      badge.dataset.status = status;
      $("btn-pause").disabled = status !== S.RUNNING;
      $("btn-resume").disabled = status !== S.PAUSED;
      $("btn-cancel").disabled = FINAL.has(status);
    },

    updateRange() {
      const s = this.streams[this.active]; // none on the diff tab: no byte range to show
      const t = this.taskId && tasks.get(this.taskId);
      const total = t && s ? Math.max(s.end, t[this.active] || 0) : s ? s.end : 0;
      $("log-range").textContent = this.taskId && s
        ? `bytes ${s.start}–${s.end} of ${total}` + (s.start > 0 ? " (earlier output: Load earlier)" : "")
        : "";
      $("load-earlier").disabled = !this.taskId || !s || s.start === 0;
      $("tab-stdout").textContent = `stdout ${fmtBytes(this.streams.stdout.end)}`;
      $("tab-stderr").textContent = `stderr ${fmtBytes(this.streams.stderr.end)}`;
    },

    scroll() {
      if (!$("follow").checked || this.scrollPending) return;
      this.scrollPending = true;
      requestAnimationFrame(() => {
        const pre = this.active === "diff" ? $("log-diff") : this.streams[this.active].pre;
        pre.scrollTop = pre.scrollHeight;
        this.scrollPending = false;
      });
    },

    // Run log work one step at a time, in arrival order; a new selection cancels the rest.
    enqueue(gen, fn) {
      this.queue = this.queue
        .then(() => (gen === this.gen ? fn() : undefined))
        .catch((e) => {
          if (gen === this.gen) showMessage(`log: ${e.message}`, true);
        });
      return this.queue;
    },

    async read(taskId, stream, offset, limit) {
      return rpc.call(M.OUTPUT, { task_id: taskId, stream, offset, limit });
    },

    // Append the log bytes [from, to) of one stream, read with `output`.
    async fill(gen, name, to) {
      const s = this.streams[name];
      if (to - s.end > TAIL_BYTES) {
        // Too far behind to keep everything on the page: jump, Load earlier reaches back.
        s.reset(to - TAIL_BYTES);
      }
      let first = s.end === s.start && s.start > 0;
      while (s.end < to && gen === this.gen) {
        const r = await this.read(this.taskId, name, s.end, Math.min(to - s.end, READ_LIMIT));
        if (gen !== this.gen || r.size === 0) break;
        let bytes = bytesOf(r);
        if (first) {
          const cut = StreamView.trimToLine(bytes, s.start);
          s.start += cut;
          s.end += cut;
          bytes = bytes.subarray(cut);
          first = false;
        }
        s.append(bytes);
      }
    },

    async select(taskId, keepOffsets) {
      const prev = this.taskId;
      const gen = ++this.gen;
      this.queue = Promise.resolve();
      const resume = keepOffsets && prev === taskId;
      if (prev && prev !== taskId && rpc.open) {
        rpc.call(M.UNSUBSCRIBE, { task_id: prev }).catch(() => {});
      }
      this.taskId = taskId;
      $("log-task").textContent = taskId;
      for (const t of tasks.values()) {
        if (t.row) t.row.classList.toggle("selected", t.rec.task_id === taskId);
      }
      const t = tasks.get(taskId);
      if (t) this.setStatus(t.rec.status);
      this.showWorkspace(t && t.rec);
      if (this.active === "diff" && prev === taskId) this.loadDiff();
      $("follow").checked = true;
      await this.enqueue(gen, async () => {
        const [o, e] = rpc.batch([
          [M.OUTPUT, { task_id: taskId, stream: "stdout", limit: 0 }],
          [M.OUTPUT, { task_id: taskId, stream: "stderr", limit: 0 }],
        ]);
        const totals = { stdout: (await o).total, stderr: (await e).total };
        for (const name of ["stdout", "stderr"]) {
          const s = this.streams[name];
          if (!resume) s.reset(Math.max(0, totals[name] - TAIL_BYTES));
          await this.fill(gen, name, totals[name]);
        }
        if (gen !== this.gen) return;
        const res = await rpc.call(M.SUBSCRIBE, {
          task_id: taskId,
          from_offset: this.streams.stdout.end,
          stderr_from_offset: this.streams.stderr.end,
        });
        if (gen !== this.gen) return;
        this.setStatus(res.status);
        this.updateRange();
        this.scroll();
      });
    },

    onOutput(p) {
      if (p.task_id !== this.taskId) return;
      const gen = this.gen;
      const bytes = bytesOf(p);
      this.enqueue(gen, async () => {
        const s = this.streams[p.stream];
        if (!s) return;
        if (p.offset > s.end) await this.fill(gen, p.stream, p.offset); // a gap: read it
        if (gen !== this.gen) return;
        const skip = s.end - p.offset; // already shown (replay overlap)
        if (skip >= bytes.length) return;
        s.append(skip > 0 ? bytes.subarray(skip) : bytes);
        if ($("follow").checked) s.trimHead();
        sawBytes(p.task_id, p.stream, s.end);
        this.updateRange();
        if (s.name === this.active) this.scroll();
      });
    },

    onDropped(p) {
      // A slow page lost queued output: read the range back from the log file.
      if (p.task_id !== this.taskId) return;
      const gen = this.gen;
      this.enqueue(gen, async () => {
        const s = this.streams[p.stream];
        if (s && p.to_offset > s.end) await this.fill(gen, p.stream, p.to_offset);
        this.updateRange();
        this.scroll();
      });
    },

    loadEarlier() {
      const gen = this.gen;
      const name = this.active;
      if (!this.streams[name]) return;
      const taskId = this.taskId;
      $("follow").checked = false;
      this.enqueue(gen, async () => {
        const s = this.streams[name];
        if (s.start === 0) return;
        const from = Math.max(0, s.start - PAGE_BYTES);
        const parts = [];
        let pos = from;
        while (pos < s.start) {
          const r = await this.read(taskId, name, pos, s.start - pos);
          if (gen !== this.gen) return;
          if (r.size === 0) break;
          parts.push(bytesOf(r));
          pos += r.size;
        }
        let bytes = concat(parts);
        if (pos < s.start) return; // the log changed under us: leave the page as it is
        const cut = StreamView.trimToLine(bytes, from);
        bytes = bytes.subarray(cut);
        const pre = s.pre;
        const before = pre.scrollHeight - pre.scrollTop;
        this.scrollPending = true;
        s.prepend(bytes);
        pre.scrollTop = pre.scrollHeight - before; // keep the view on the same line
        requestAnimationFrame(() => (this.scrollPending = false));
        this.updateRange();
      });
    },
  };

  function selectTask(taskId, keepOffsets = false) {
    logView.select(taskId, keepOffsets).catch((e) => showMessage(`log: ${e.message}`, true));
  }

  // ------------------------------------------------------------------ start

  function init() {
    takeTokenFromFragment();
    logView.init();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token-input").value.trim();
      if (!v) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, v);
      } catch (_) {
        /* ignore */
      }
      $("token-input").value = "";
      connect();
    });
    $("forget-token").addEventListener("click", () => {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) {
        /* ignore */
      }
      if (rpc.ws) rpc.ws.close();
      askToken("Token forgotten.");
    });
    window.addEventListener("hashchange", () => {
      if (/token=/.test(location.hash)) {
        takeTokenFromFragment();
        if (rpc.ws) rpc.ws.close();
        else connect();
      }
    });
    setInterval(tickRuntimes, 1000);
    protocolReady = loadProtocol();
    connect();
  }

  init();
})();
