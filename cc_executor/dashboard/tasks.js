// The task list: one page of `status` (filters, text search, sort, paging; running, paused
// and queued tasks first whatever the history), "N of M", per-status counts, the cost of
// the visible set. Rows are patched in place (focus, selection and ticked boxes survive
// an update), focusable (arrow keys move, Enter opens the log), and every button is named
// with its task. A control in progress shows as such and disables the row's others.
"use strict";

import {
  $,
  commandText,
  el,
  errorKind,
  exitText,
  fmtAgo,
  fmtBytes,
  fmtCost,
  fmtDuration,
  fmtTime,
  statusBadge,
  statusText,
  taskLabel,
} from "./format.js";
import { P } from "./rpc.js";

const PAGE_SIZES = [25, 50, 100, 200];
const COLUMNS = [
  // [label, class, sort key or null]
  ["", "pick", null],
  ["Status", "st", "status"],
  ["Task", "task", "name"],
  ["Command or prompt", "what", null],
  ["Started", "num started", "started"],
  ["Runtime", "num runtime", "runtime"],
  ["Output", "num bytes", "bytes"],
  ["Cost", "num cost", "cost"],
  ["Result", "result", "exit"],
  ["Control", "ctl", null],
];
const DOING = { PAUSE: "pausing…", RESUME: "resuming…", CANCEL: "cancelling…" };

function setText(node, text) {
  const t = text ?? "";
  if (node.textContent !== t) node.textContent = t;
}

export class TaskTable {
  constructor(app) {
    this.app = app; // {rpc, open(taskId), control(taskId, action), announce(text), selected}
    this.rows = new Map();
    this.order = [];
    this.checked = new Set();
    this.doing = new Map(); // task id -> action in progress
    this.query = { statuses: new Set(), text: "", offset: 0, limit: 50, sort: "created", descending: true };
    this.total = 0;
    this.counts = {};
    this.loaded = false;
    this.online = false;
    this.tbody = $("tasks").tBodies[0];
    this.buildHead();
    this.buildTools();
  }

  // ------------------------------------------------------------------ chrome

  buildHead() {
    const tr = $("tasks").tHead.rows[0];
    tr.replaceChildren();
    for (const [label, cls, key] of COLUMNS) {
      const th = el("th", cls);
      th.scope = "col";
      if (key) {
        const b = el("button", "sort", label);
        b.type = "button";
        b.dataset.sort = key;
        b.addEventListener("click", () => this.sortBy(key));
        th.append(b);
      } else if (cls === "pick") {
        const all = el("input");
        all.type = "checkbox";
        all.id = "pick-all";
        all.setAttribute("aria-label", "Select every active task on this page");
        all.addEventListener("change", () => this.pickAll(all.checked));
        th.append(all);
      } else {
        th.textContent = label;
      }
      tr.append(th);
    }
    this.markSort();
  }

  buildTools() {
    const search = $("task-search");
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.query.text = search.value.trim();
        this.query.offset = 0;
        this.refresh();
      }, 250);
    });
    const size = $("page-size");
    for (const n of PAGE_SIZES) {
      const o = el("option", null, String(n));
      o.value = String(n);
      o.selected = n === this.query.limit;
      size.append(o);
    }
    size.addEventListener("change", () => {
      this.query.limit = Number(size.value);
      this.query.offset = 0;
      this.refresh();
    });
    $("page-prev").addEventListener("click", () => this.page(-1));
    $("page-next").addEventListener("click", () => this.page(1));
    $("bulk-cancel").addEventListener("click", () => this.bulkCancel());
  }

  buildChips() {
    const box = $("status-filters");
    if (box.childElementCount) return;
    const all = el("button", "chip", "all");
    all.type = "button";
    all.dataset.status = "";
    all.addEventListener("click", () => {
      this.query.statuses.clear();
      this.query.offset = 0;
      this.refresh();
    });
    box.append(all);
    for (const s of Object.values(P.S)) {
      const b = el("button", "chip");
      b.type = "button";
      b.dataset.status = s;
      b.append(el("span", "chip-name", s), el("span", "chip-count", ""));
      b.addEventListener("click", () => {
        if (this.query.statuses.has(s)) this.query.statuses.delete(s);
        else this.query.statuses.add(s);
        this.query.offset = 0;
        this.refresh();
      });
      box.append(b);
    }
  }

  markChips() {
    for (const b of $("status-filters").children) {
      const s = b.dataset.status;
      const on = s ? this.query.statuses.has(s) : this.query.statuses.size === 0;
      b.setAttribute("aria-pressed", String(on));
      const n = b.querySelector(".chip-count");
      if (n) setText(n, String(this.counts[s] || 0));
      if (s) b.setAttribute("aria-label", `${s}: ${this.counts[s] || 0} tasks`);
    }
  }

  markSort() {
    for (const th of $("tasks").tHead.rows[0].cells) {
      const b = th.querySelector("button.sort");
      if (!b) continue;
      const on = b.dataset.sort === this.query.sort;
      th.setAttribute("aria-sort", on ? (this.query.descending ? "descending" : "ascending") : "none");
      b.classList.toggle("on", on);
    }
  }

  sortBy(key) {
    if (this.query.sort === key) this.query.descending = !this.query.descending;
    else {
      this.query.sort = key;
      this.query.descending = key !== "name" && key !== "status";
    }
    this.query.offset = 0;
    this.markSort();
    this.refresh();
  }

  page(step) {
    const q = this.query;
    q.offset = Math.max(0, Math.min(q.offset + step * q.limit, Math.max(0, this.total - 1)));
    this.refresh();
  }

  // ------------------------------------------------------------------ data

  params() {
    const q = this.query;
    const p = {
      limit: q.limit,
      offset: q.offset,
      active_first: true,
      sort: q.sort,
      descending: q.descending,
    };
    if (q.statuses.size) p.statuses = [...q.statuses];
    if (q.text) p.text = q.text;
    return p;
  }

  async refresh() {
    if (!this.app.rpc.open) return null;
    this.buildChips();
    const res = await this.app.rpc.call(P.M.STATUS, this.params());
    this.total = res.total;
    this.counts = res.counts;
    this.loaded = true;
    this.apply(res.tasks);
    this.markChips();
    return res;
  }

  apply(list) {
    const now = performance.now();
    const seen = new Set();
    for (const rec of list) {
      seen.add(rec.task_id);
      let row = this.rows.get(rec.task_id);
      if (!row) {
        row = this.makeRow(rec);
        this.rows.set(rec.task_id, row);
      }
      row.rec = rec;
      row.seenAt = now;
      this.patch(row);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
        this.checked.delete(id);
      }
    }
    // Reorder only what moved: moving a focused row would blur it.
    const focused = document.activeElement;
    let prev = null;
    for (const rec of list) {
      const tr = this.rows.get(rec.task_id).tr;
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (tr !== want) this.tbody.insertBefore(tr, want);
      prev = tr;
    }
    if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
    this.order = list.map((r) => r.task_id);
    this.ensureTabStop();
    this.summary();
  }

  get(taskId) {
    const row = this.rows.get(taskId);
    return row ? row.rec : null;
  }

  // A notification changed one task: patch its row now (the refresh follows).
  update(taskId, fields) {
    const row = this.rows.get(taskId);
    if (!row) return null;
    Object.assign(row.rec, fields);
    row.seenAt = performance.now();
    this.patch(row);
    return row.rec;
  }

  // ------------------------------------------------------------------ rows

  makeRow(rec) {
    const tr = el("tr");
    tr.dataset.taskId = rec.task_id;
    tr.tabIndex = -1;
    const cells = {};
    for (const [label, cls] of COLUMNS) {
      const td = el("td", cls);
      if (label) td.dataset.label = label;
      tr.append(td);
      cells[cls.split(" ").pop()] = td;
    }
    const pick = el("input");
    pick.type = "checkbox";
    pick.className = "pick-box";
    pick.addEventListener("click", (ev) => ev.stopPropagation());
    pick.addEventListener("change", () => {
      if (pick.checked) this.checked.add(rec.task_id);
      else this.checked.delete(rec.task_id);
      this.summary();
    });
    cells.pick.append(pick);
    const badge = statusBadge(rec.status);
    cells.st.append(badge);
    const name = el("span", "name");
    const id = el("span", "id");
    cells.task.append(name, id);
    const buttons = el("div", "buttons");
    const make = (label, action, cls) => {
      const b = el("button", `small ${cls || ""}`.trim(), label);
      b.type = "button";
      b.dataset.action = action;
      b.addEventListener("click", (ev) => {
        ev.stopPropagation();
        this.app.control(rec.task_id, action);
      });
      buttons.append(b);
      return b;
    };
    const ctl = {
      pause: make("Pause", P.A.PAUSE),
      resume: make("Resume", P.A.RESUME),
      cancel: make("Cancel", P.A.CANCEL, "danger"),
      doing: el("span", "doing"),
    };
    buttons.append(ctl.doing);
    cells.ctl.append(buttons);
    tr.addEventListener("click", () => this.app.open(rec.task_id));
    tr.addEventListener("keydown", (ev) => this.onKey(ev, rec.task_id));
    return { tr, cells, badge, name, id, pick, ctl, rec, seenAt: performance.now() };
  }

  patch(row) {
    const rec = row.rec;
    const c = row.cells;
    const label = taskLabel(rec);
    row.tr.classList.toggle("selected", rec.task_id === this.app.selected);
    row.tr.setAttribute("aria-selected", String(rec.task_id === this.app.selected));
    row.tr.dataset.status = rec.status;
    setText(row.badge, statusText(rec));
    row.badge.dataset.status = rec.status;
    setText(row.name, rec.name || "");
    setText(row.id, rec.task_id.slice(0, 8));
    row.id.title = rec.task_id;
    const what = commandText(rec);
    setText(c.what, (rec.kind === "claude" ? "claude: " : "") + what);
    c.what.title = what;
    setText(c.started, fmtAgo(rec.started_at || rec.created_at));
    c.started.title = fmtTime(rec.started_at || rec.created_at);
    setText(c.runtime, fmtDuration(this.runtime(row)));
    setText(c.bytes, fmtBytes((rec.stdout_bytes || 0) + (rec.stderr_bytes || 0)));
    c.bytes.title = `stdout ${fmtBytes(rec.stdout_bytes || 0)}, stderr ${fmtBytes(rec.stderr_bytes || 0)}`;
    setText(c.cost, this.costText(rec));
    const kind = errorKind(rec);
    const failed = P.FINAL.has(rec.status) && rec.status !== P.S.COMPLETED;
    const result = failed ? [exitText(rec), kind && kind !== "exit" && kind !== "signal" ? kind : ""] : [];
    setText(c.result, result.filter(Boolean).join(" · "));
    c.result.title = rec.error || "";
    const s = rec.status;
    const doing = this.doing.get(rec.task_id);
    const off = !this.online || Boolean(doing);
    // Only the actions that apply are shown (a finished task has none); offline, or while
    // one is in progress, they are disabled.
    row.ctl.pause.hidden = s !== P.S.RUNNING;
    row.ctl.resume.hidden = s !== P.S.PAUSED;
    row.ctl.cancel.hidden = P.FINAL.has(s);
    row.ctl.pause.disabled = off || s !== P.S.RUNNING;
    row.ctl.resume.disabled = off || s !== P.S.PAUSED;
    row.ctl.cancel.disabled = off || P.FINAL.has(s);
    for (const [key, b] of Object.entries({ pause: "Pause", resume: "Resume", cancel: "Cancel" })) {
      row.ctl[key].setAttribute("aria-label", `${b} task ${label}`);
    }
    setText(row.ctl.doing, doing ? DOING[doing] || "…" : "");
    row.pick.disabled = !this.online || P.FINAL.has(s);
    if (row.pick.disabled && row.pick.checked) {
      row.pick.checked = false;
      this.checked.delete(rec.task_id);
    }
    row.pick.setAttribute("aria-label", `Select task ${label}`);
    row.tr.setAttribute("aria-label", `${label}: ${s}`);
  }

  costText(rec) {
    if (rec.kind !== "claude") return "";
    const bits = [];
    if (rec.total_cost_usd !== undefined && rec.total_cost_usd !== null) bits.push(fmtCost(rec.total_cost_usd));
    if (rec.num_turns) bits.push(`${rec.num_turns}t`);
    return bits.join(" · ");
  }

  runtime(row) {
    const rec = row.rec;
    const d = rec.duration_s;
    if (d === null || d === undefined) return null;
    if (P.FINAL.has(rec.status) || rec.status === P.S.PAUSED || !this.online) return d;
    return d + (performance.now() - row.seenAt) / 1000;
  }

  tick() {
    if (!this.online) return;
    for (const row of this.rows.values()) {
      if (row.rec.status === P.S.RUNNING) setText(row.cells.runtime, fmtDuration(this.runtime(row)));
      setText(row.cells.started, fmtAgo(row.rec.started_at || row.rec.created_at));
    }
  }

  setOnline(on) {
    this.online = on;
    for (const row of this.rows.values()) this.patch(row);
    this.summary();
  }

  setDoing(taskId, action) {
    if (action) this.doing.set(taskId, action);
    else this.doing.delete(taskId);
    const row = this.rows.get(taskId);
    if (row) this.patch(row);
  }

  select(taskId) {
    for (const row of this.rows.values()) this.patch(row);
    const row = this.rows.get(taskId);
    if (row) {
      for (const r of this.rows.values()) r.tr.tabIndex = -1;
      row.tr.tabIndex = 0;
    }
  }

  clear() {
    this.rows.forEach((r) => r.tr.remove());
    this.rows.clear();
    this.checked.clear();
    this.loaded = false;
    this.total = 0;
    this.counts = {};
    this.summary();
  }

  // ------------------------------------------------------------------ keyboard

  ensureTabStop() {
    const rows = [...this.tbody.rows];
    if (rows.length && !rows.some((r) => r.tabIndex === 0)) rows[0].tabIndex = 0;
  }

  onKey(ev, taskId) {
    const tr = ev.currentTarget;
    if (ev.target !== tr) return; // keys in the row's buttons are theirs
    let next = null;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      this.app.open(taskId);
      return;
    }
    if (ev.key === "ArrowDown") next = tr.nextElementSibling;
    else if (ev.key === "ArrowUp") next = tr.previousElementSibling;
    else if (ev.key === "Home") next = this.tbody.firstElementChild;
    else if (ev.key === "End") next = this.tbody.lastElementChild;
    if (next) {
      ev.preventDefault();
      tr.tabIndex = -1;
      next.tabIndex = 0;
      next.focus();
    }
  }

  // ------------------------------------------------------------------ bulk

  pickAll(on) {
    for (const row of this.rows.values()) {
      if (!row.pick.disabled) {
        row.pick.checked = on;
        if (on) this.checked.add(row.rec.task_id);
        else this.checked.delete(row.rec.task_id);
      }
    }
    this.summary();
  }

  async bulkCancel() {
    const ids = [...this.checked];
    this.checked.clear();
    for (const row of this.rows.values()) row.pick.checked = false;
    this.summary();
    await Promise.allSettled(ids.map((id) => this.app.control(id, P.A.CANCEL)));
  }

  // ------------------------------------------------------------------ summary

  summary() {
    const q = this.query;
    const shown = this.rows.size;
    const first = shown ? q.offset + 1 : 0;
    const empty = $("no-tasks");
    if (!this.online && !this.loaded) {
      empty.textContent = "Not connected: no tasks to show.";
      empty.hidden = false;
    } else if (this.loaded && this.total === 0) {
      empty.textContent = q.text || q.statuses.size ? "No task matches these filters." : "No tasks yet.";
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
    setText($("task-count"), this.loaded ? `${first}–${q.offset + shown} of ${this.total}` : "");
    $("page-prev").disabled = !this.online || q.offset === 0;
    $("page-next").disabled = !this.online || q.offset + shown >= this.total;
    let cost = 0;
    let priced = 0;
    for (const row of this.rows.values()) {
      if (typeof row.rec.total_cost_usd === "number") {
        cost += row.rec.total_cost_usd;
        priced += 1;
      }
    }
    setText($("visible-cost"), priced ? `${fmtCost(cost)} for the ${priced} Claude task${priced === 1 ? "" : "s"} shown` : "");
    const n = this.checked.size;
    const bulk = $("bulk-cancel");
    bulk.disabled = !this.online || n === 0;
    setText(bulk, n ? `Cancel selected (${n})` : "Cancel selected");
  }
}
