// cc-executor dashboard: plain JavaScript modules, no build step, no dependencies.
// It speaks the service's JSON-RPC 2.0 protocol over the same WebSocket as any client
// (docs/protocol.md): `listen` for every task's lifecycle events, `status` for the task
// list (filtered and paged on the service), `output` by offset for logs and transcripts,
// `control`, `execute`, `execute_claude` and `session.*` for the actions. The names of
// methods, notifications, statuses and actions come from the service (GET /protocol.json,
// built from cc_executor/protocol.py): the page spells none of them itself.
//
// Modules: rpc.js (connection), format.js (words), tasks.js (the list), detail.js (the
// selected task), logview.js + ansi.js (paged logs), transcript.js, sessions.js.
"use strict";

import { Detail } from "./detail.js";
import { $, taskLabel } from "./format.js";
import { loadProtocol, P, Rpc } from "./rpc.js";
import { Sessions } from "./sessions.js";
import { TaskTable } from "./tasks.js";

const TOKEN_KEY = "cc-executor-token";
const REFRESH_MS = 3000;

// ------------------------------------------------------------------ the token and the URL

// The fragment holds `token=` (never sent to a server) and `task=ID` (a link to one task).
// The token moves to sessionStorage (this tab only) and leaves the address bar at once;
// `task=` stays, so a link to a task works through the token handling.
function hashParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

function takeTokenFromFragment() {
  const params = hashParams();
  if (!params.has("token")) return false;
  try {
    sessionStorage.setItem(TOKEN_KEY, params.get("token").trim());
  } catch (_) {
    /* storage disabled: the form asks */
  }
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return true;
}

function getToken() {
  try {
    return (sessionStorage.getItem(TOKEN_KEY) || "").trim();
  } catch (_) {
    return "";
  }
}

// ------------------------------------------------------------------ the app

const app = {
  rpc: null,
  online: false,
  selected: null,
  tasks: null,
  detail: null,
  sessions: null,
  stats: null,
  retryDelay: 500,
  retryTimer: null,
  refreshTimer: null,
  refusing: false,
  doingMap: new Map(),

  doing(taskId) {
    return this.doingMap.get(taskId) || null;
  },

  message(text, isError = false) {
    const m = $("message");
    m.textContent = text;
    m.classList.toggle("error", isError);
    m.hidden = !text;
    clearTimeout(this.messageTimer);
    if (text) this.messageTimer = setTimeout(() => (m.hidden = true), 8000);
  },

  announce(text) {
    $("announcer").textContent = text;
  },

  banner(kind, text) {
    const b = $("banner");
    b.hidden = !kind;
    b.dataset.kind = kind || "";
    b.textContent = text || "";
  },

  setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  },

  setOnline(on) {
    this.online = on;
    document.body.classList.toggle("offline", !on);
    for (const id of ["new-task-start", "new-kind", "new-text", "new-name", "new-cwd", "new-model"]) {
      $(id).disabled = !on;
    }
    this.tasks.setOnline(on);
    this.detail.setOnline(on);
    this.sessions.setOnline(on);
    this.title();
  },

  title() {
    const st = this.stats;
    const failed = this.tasks.counts[P.S.FAILED] || 0;
    if (!this.online || !st) {
      document.title = "cc-executor (not connected)";
      return;
    }
    document.title = `${st.running} running · ${failed} failed · cc-executor`;
  },

  // ------------------------------------------------------------------ connection

  async connect() {
    clearTimeout(this.retryTimer);
    await this.protocolReady;
    const token = getToken();
    if (!token) {
      this.askToken("Enter the service's token (or open this page with #token=...).");
      return;
    }
    $("token-form").hidden = true;
    $("forget-token").hidden = false;
    this.setConn("connecting", "connecting");
    // Ask /health first: a WebSocket to a service that is down fails on the console.
    if (!(await this.serviceUp())) {
      this.offline();
      return;
    }
    this.rpc.connect(token);
  },

  async serviceUp() {
    try {
      return (await fetch("/health", { cache: "no-store" })).ok;
    } catch (_) {
      return false;
    }
  },

  offline() {
    const wait = this.retryDelay;
    this.setConn("closed", "disconnected");
    this.banner(
      "offline",
      `Not connected: the service at ${location.host} does not answer. The data below is ` +
        `from before; retrying in ${Math.round(wait / 1000) || 1} s.`,
    );
    this.setOnline(false);
    this.retryTimer = setTimeout(() => this.connect(), wait);
    this.retryDelay = Math.min(this.retryDelay * 2, 8000);
  },

  askToken(text) {
    this.setConn("refused", "not connected");
    $("token-form").hidden = false;
    $("forget-token").hidden = true;
    this.banner("auth", text);
    this.setOnline(false);
    $("token-input").focus();
  },

  async onOpen() {
    this.retryDelay = 500;
    this.setConn("open", "connected");
    this.banner(null);
    this.setOnline(true);
    try {
      await this.rpc.call(P.M.LISTEN, { enabled: true });
    } catch (e) {
      this.message(`listen failed: ${e.message}`, true);
    }
    await this.refresh();
    this.sessions.refresh();
    const want = hashParams().get("task");
    if (want && want !== this.selected) this.open(want);
    else if (this.selected) this.detail.open(this.selected, null, true);
  },

  async onClose(opened) {
    clearTimeout(this.refreshTimer);
    if (this.closing) {
      this.closing = false;
      return;
    }
    if (!opened && (await this.serviceUp())) {
      // The service is up and refused the handshake: the token (or the page's origin).
      this.askToken(
        "The service refused the connection: the token is wrong (or this page's origin is " +
          "not allowed; open it at the service's own address, see docs/dashboard.md).",
      );
      return;
    }
    this.offline();
  },

  // ------------------------------------------------------------------ data

  scheduleRefresh(ms) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), ms);
  },

  async refresh() {
    clearTimeout(this.refreshTimer);
    if (!this.rpc.open) return;
    try {
      const res = await this.tasks.refresh();
      if (res) {
        this.stats = res.stats;
        this.renderStats(res.stats);
      }
      const sel = this.selected && this.tasks.get(this.selected);
      if (this.selected && (!sel || !P.FINAL.has(sel.status))) {
        const rec = await this.rpc.call(P.M.STATUS, { task_id: this.selected });
        this.detail.update(rec);
      } else if (sel) {
        this.detail.update(sel);
      }
    } catch (e) {
      if (this.rpc.open) this.message(`status failed: ${e.message}`, true);
    } finally {
      this.title();
      if (this.rpc.open) this.scheduleRefresh(REFRESH_MS);
    }
  },

  renderStats(st) {
    const bits = [`v${st.version}`, `${st.running} running · ${st.paused} paused · ${st.queued} queued`];
    if (st.nodes) bits.push(`${Object.keys(st.nodes).length} nodes`);
    $("stats").textContent = bits.join(" · ");
  },

  onNotify(method, p) {
    const N = P.N;
    if (method === N.SESSION_UPDATED) {
      this.sessions.schedule();
      return;
    }
    if (![N.STARTED, N.PAUSED, N.RESUMED, N.COMPLETED].includes(method)) return;
    const fields = { status: p.status };
    if (method === N.COMPLETED) Object.assign(fields, p);
    const rec = this.tasks.update(p.task_id, fields);
    const label = taskLabel(rec || { task_id: p.task_id, name: p.name });
    this.announce(`Task ${label} ${p.status}`);
    if (p.task_id === this.selected) this.detail.update({ task_id: p.task_id, ...fields });
    this.scheduleRefresh(300);
  },

  // ------------------------------------------------------------------ actions

  open(taskId) {
    this.selected = taskId;
    const params = hashParams();
    params.set("task", taskId);
    history.replaceState(null, "", `#${params.toString()}`);
    this.tasks.select(taskId);
    this.detail.open(taskId, this.tasks.get(taskId));
  },

  async control(taskId, action) {
    if (this.doingMap.has(taskId)) return;
    this.doingMap.set(taskId, action);
    this.tasks.setDoing(taskId, action);
    this.detail.render();
    try {
      const res = await this.rpc.call(P.M.CONTROL, { task_id: taskId, action });
      const rec = this.tasks.update(taskId, { status: res.status });
      if (taskId === this.selected) this.detail.update({ task_id: taskId, status: res.status });
      this.announce(`Task ${rec ? taskLabel(rec) : taskId.slice(0, 8)} ${res.status}`);
    } catch (e) {
      this.message(`${action.toLowerCase()} ${taskId}: ${e.message}`, true);
    } finally {
      this.doingMap.delete(taskId);
      this.tasks.setDoing(taskId, null);
      this.detail.render();
      this.scheduleRefresh(50);
    }
  },

  async startTask(ev) {
    ev.preventDefault();
    const text = $("new-text").value.trim();
    if (!text) return;
    const claude = $("new-kind").value === "claude";
    const params = claude ? { prompt: text } : { command: text };
    for (const [id, key] of [["new-name", "name"], ["new-cwd", "cwd"]]) {
      const v = $(id).value.trim();
      if (v) params[key] = v;
    }
    const model = $("new-model").value.trim();
    if (claude && model) params.model = model;
    const b = $("new-task-start");
    b.disabled = true;
    b.textContent = "Starting…";
    try {
      const res = await this.rpc.call(claude ? P.M.EXECUTE_CLAUDE : P.M.EXECUTE, params);
      $("new-text").value = "";
      this.announce(`Started task ${res.task_id.slice(0, 8)}`);
      await this.refresh();
      this.open(res.task_id);
    } catch (e) {
      this.message(`start: ${e.message}`, true);
    } finally {
      b.textContent = "Start";
      b.disabled = !this.online;
    }
  },

  forget() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* ignore */
    }
    clearTimeout(this.retryTimer);
    if (this.rpc.ws) {
      this.closing = true; // this close is ours: no "offline" banner, no reconnect
      this.rpc.close();
    }
    this.selected = null;
    this.stats = null;
    this.tasks.clear();
    this.detail.close();
    this.sessions.clear();
    $("stats").textContent = "";
    history.replaceState(null, "", location.pathname + location.search);
    this.askToken("Token forgotten: the page shows nothing until a token is given.");
  },

  // ------------------------------------------------------------------ start

  init() {
    takeTokenFromFragment();
    this.rpc = new Rpc(
      (m, p) => this.onNotify(m, p),
      () => this.onOpen(),
      (opened) => this.onClose(opened),
    );
    this.tasks = new TaskTable(this);
    this.detail = new Detail(this);
    this.sessions = new Sessions(this);
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
      this.connect();
    });
    $("forget-token").addEventListener("click", () => this.forget());
    $("new-task").addEventListener("submit", (ev) => this.startTask(ev));
    $("new-kind").addEventListener("change", () => {
      const claude = $("new-kind").value === "claude";
      $("new-text").placeholder = claude ? "a prompt for a fresh Claude" : "a command line, e.g. make test";
      $("new-model-label").hidden = !claude;
    });
    window.addEventListener("hashchange", () => {
      if (takeTokenFromFragment()) {
        if (this.rpc.ws) {
          this.closing = true;
          this.rpc.close();
        }
        this.connect();
      }
      const want = hashParams().get("task");
      if (want && want !== this.selected && this.online) this.open(want);
    });
    setInterval(() => this.tasks.tick(), 1000);
    this.setOnline(false);
    this.protocolReady = loadProtocol(() => {
      this.setConn("closed", "disconnected");
      this.banner("offline", `Not connected: the service at ${location.host} does not answer. Retrying…`);
    });
    this.connect();
  },
};

app.init();
