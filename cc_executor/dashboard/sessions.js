// Sessions: every session (active and ended) with its turns, queue, model and total cost;
// the selected one's turns and messages, a box to send it a message, and Kill.
"use strict";

import { $, el, fmtCost, fmtTime, statusBadge } from "./format.js";
import { P, RpcError } from "./rpc.js";

export class Sessions {
  constructor(app) {
    this.app = app; // {rpc, open(taskId), message(text, isError), announce(text)}
    this.enabled = true;
    this.selected = null;
    this.costs = new Map(); // session id -> total cost of its turns
    this.timer = null;
    this.busy = false;
    $("session-send").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send();
    });
    $("session-kill").addEventListener("click", () => this.kill());
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 150);
  }

  clear() {
    $("sessions").replaceChildren();
    $("session-detail").hidden = true;
    $("session-count").textContent = "";
    this.selected = null;
  }

  async refresh() {
    if (!this.app.rpc.open || !this.enabled) return;
    let res;
    try {
      res = await this.app.rpc.call(P.M.SESSION_LIST, { include_ended: true });
    } catch (e) {
      if (e instanceof RpcError) {
        this.enabled = false;
        $("no-sessions").textContent = `Sessions unavailable: ${e.message}`;
      }
      return;
    }
    const list = res.sessions.slice().sort((a, b) => b.created_at - a.created_at);
    await this.loadCosts(list);
    const ul = $("sessions");
    const old = new Map([...ul.children].map((li) => [li.dataset.sessionId, li]));
    const frag = document.createDocumentFragment();
    for (const s of list) {
      const li = old.get(s.session_id) || this.item(s);
      li.replaceChildren(...this.itemBody(s));
      li.classList.toggle("selected", s.session_id === this.selected);
      li.setAttribute("aria-selected", String(s.session_id === this.selected));
      frag.append(li);
    }
    const focused = document.activeElement;
    ul.replaceChildren(frag);
    if (focused && ul.contains(focused)) focused.focus();
    $("no-sessions").hidden = list.length > 0;
    $("no-sessions").textContent = "No sessions.";
    let total = 0;
    for (const c of this.costs.values()) total += c;
    $("session-count").textContent = res.total
      ? `${res.active} active of ${res.total}${total ? ` · ${fmtCost(total)}` : ""}`
      : "";
    if (this.selected) this.loadLogs(this.selected);
  }

  // Each session's cost: the sum of its turns' costs (session.logs, one batch).
  async loadCosts(list) {
    const calls = list.map((s) => [P.M.SESSION_LOGS, { session_id: s.session_id, lines: 10000 }]);
    const results = await Promise.allSettled(this.app.rpc.batch(calls));
    list.forEach((s, i) => {
      const r = results[i];
      if (r.status !== "fulfilled") return;
      let sum = 0;
      for (const e of r.value.entries) if (typeof e.cost_usd === "number") sum += e.cost_usd;
      this.costs.set(s.session_id, sum);
    });
  }

  item(s) {
    const li = el("li");
    li.dataset.sessionId = s.session_id;
    li.tabIndex = 0;
    li.setAttribute("role", "option");
    li.addEventListener("click", () => this.select(s.session_id));
    li.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        this.select(s.session_id);
      }
    });
    return li;
  }

  itemBody(s) {
    const cost = this.costs.get(s.session_id);
    const meta =
      `${s.turns} turn${s.turns === 1 ? "" : "s"}` +
      (s.queued ? ` · ${s.queued} queued` : "") +
      (s.claude_options && s.claude_options.model ? ` · ${s.claude_options.model}` : "") +
      (cost ? ` · ${fmtCost(cost)}` : "") +
      ` · ${s.working_dir || ""}`;
    return [el("span", "title", s.name || s.session_id), statusBadge(s.status), el("span", "meta", meta)];
  }

  select(id) {
    this.selected = id;
    for (const li of $("sessions").children) {
      li.classList.toggle("selected", li.dataset.sessionId === id);
      li.setAttribute("aria-selected", String(li.dataset.sessionId === id));
    }
    this.loadLogs(id);
  }

  async loadLogs(id) {
    let res;
    try {
      res = await this.app.rpc.call(P.M.SESSION_LOGS, { session_id: id, lines: 200 });
    } catch (e) {
      this.app.message(`${P.M.SESSION_LOGS}: ${e.message}`, true);
      return;
    }
    if (id !== this.selected) return;
    $("session-detail").hidden = false;
    const cost = this.costs.get(id);
    $("session-title").textContent =
      `${res.name || res.session_id}: turns and messages${cost ? ` · ${fmtCost(cost)} in all` : ""}`;
    const active = res.status !== "ended";
    $("session-kill").disabled = !this.app.online || !active || this.busy;
    $("session-message").disabled = !this.app.online || !active;
    $("session-send-btn").disabled = !this.app.online || !active || this.busy;
    const ol = $("session-turns");
    ol.replaceChildren();
    for (const e of res.entries) ol.append(this.entry(e));
  }

  entry(e) {
    const li = el("li");
    const head = el("div", "head");
    if (e.type === "turn") {
      head.append(el("strong", null, `#${e.turn}`), statusBadge(e.status));
      head.append(el("span", "muted", e.kind + (e.from_session ? ` from ${e.from_session}` : "")));
      if (e.task_id) {
        const a = el("button", "task-link", e.task_id);
        a.type = "button";
        a.setAttribute("aria-label", `Open the log of task ${e.task_id}`);
        a.addEventListener("click", () => this.app.open(e.task_id));
        head.append(a);
      }
      if (typeof e.cost_usd === "number") head.append(el("span", "muted", fmtCost(e.cost_usd)));
      li.append(head, el("div", "text", e.message || e.prompt || ""));
      const out = e.result || e.error;
      if (out) li.append(el("div", "result", out.length > 600 ? `${out.slice(0, 600)}…` : out));
    } else {
      const dir = e.direction === "out" ? `to ${e.to_session}` : `from ${e.from_session}`;
      head.append(el("strong", null, "message"), el("span", "muted", `${dir} · ${fmtTime(e.at)}`));
      li.append(head, el("div", "text", e.text));
    }
    return li;
  }

  async send() {
    const box = $("session-message");
    const text = box.value.trim();
    if (!text || !this.selected) return;
    this.busy = true;
    $("session-send-btn").disabled = true;
    $("session-send-btn").textContent = "Sending…";
    try {
      const res = await this.app.rpc.call(P.M.SESSION_SEND, { session_id: this.selected, message: text });
      box.value = "";
      this.app.announce(`Sent: turn ${res.turn} is ${res.status}`);
    } catch (e) {
      this.app.message(`send: ${e.message}`, true);
    } finally {
      this.busy = false;
      $("session-send-btn").textContent = "Send";
      this.schedule();
    }
  }

  async kill() {
    if (!this.selected) return;
    this.busy = true;
    const b = $("session-kill");
    b.disabled = true;
    b.textContent = "Killing…";
    try {
      const res = await this.app.rpc.call(P.M.SESSION_KILL, { session_id: this.selected });
      this.app.announce(res.message || "session killed");
    } catch (e) {
      this.app.message(`kill: ${e.message}`, true);
    } finally {
      this.busy = false;
      b.textContent = "Kill session";
      this.schedule();
    }
  }

  setOnline(on) {
    if (!on) {
      for (const id of ["session-kill", "session-send-btn", "session-message"]) $(id).disabled = true;
    } else if (this.selected) {
      this.loadLogs(this.selected);
    }
  }
}
