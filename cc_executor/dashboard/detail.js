// The selected task: what it is and why it ended (exit code or signal, error kind, error
// text, hint, reset time of a limit, who cancelled it), what it costs, its controls, and
// its output on three tabs: the Claude transcript, stdout and stderr. A failed task opens
// on the tab that holds its error. Tabs follow the ARIA pattern (arrow keys move).
"use strict";

import {
  $,
  commandText,
  el,
  errorKind,
  errorStream,
  exitText,
  fmtBytes,
  fmtCost,
  fmtDuration,
  fmtTime,
  statusText,
  taskLabel,
  whyEnded,
} from "./format.js";
import { LogView } from "./logview.js";
import { P } from "./rpc.js";
import { Transcript } from "./transcript.js";
import { WorkspaceView } from "./workspace.js";

const TABS = ["transcript", "stdout", "stderr", "diff"];

export class Detail {
  constructor(app) {
    this.app = app; // {rpc, control(taskId, action), online}
    this.taskId = null;
    this.rec = null;
    this.tab = "stdout";
    this.log = new LogView(app.rpc, () => this.logChanged());
    this.transcript = new Transcript(app.rpc, () => {});
    this.workspace = new WorkspaceView(app.rpc);
    this.wire();
    this.render();
  }

  wire() {
    for (const name of TABS) {
      const b = $(`tab-${name}`);
      b.addEventListener("click", () => this.setTab(name));
      b.addEventListener("keydown", (ev) => this.onTabKey(ev, name));
    }
    $("btn-pause").addEventListener("click", () => this.act(P.A.PAUSE));
    $("btn-resume").addEventListener("click", () => this.act(P.A.RESUME));
    $("btn-cancel").addEventListener("click", () => this.act(P.A.CANCEL));
    $("log-start").addEventListener("click", () => this.log.toStart());
    $("log-earlier").addEventListener("click", () => this.log.earlier());
    $("log-later").addEventListener("click", () => this.log.later());
    $("log-end").addEventListener("click", () => this.log.toEnd());
    $("follow").addEventListener("change", (ev) => this.log.setFollow(ev.target.checked));
    $("log-position").addEventListener("change", (ev) => this.log.jump(Number(ev.target.value) / 1000));
    $("log-download").addEventListener("click", () => this.download());
    $("log-search-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const term = $("log-search").value;
      const found = await this.log.search(term);
      $("log-search-result").textContent = found ? "" : `"${term}" not found after this point`;
    });
  }

  act(action) {
    if (this.taskId) this.app.control(this.taskId, action);
  }

  async download() {
    const b = $("log-download");
    b.disabled = true;
    b.textContent = "Downloading…";
    try {
      await this.log.download();
    } finally {
      b.textContent = "Download";
      b.disabled = !this.taskId || !this.app.online;
    }
  }

  onTabKey(ev, name) {
    const visible = TABS.filter((t) => !$(`tab-${t}`).hidden);
    const i = visible.indexOf(name);
    let next = null;
    if (ev.key === "ArrowRight") next = visible[(i + 1) % visible.length];
    else if (ev.key === "ArrowLeft") next = visible[(i + visible.length - 1) % visible.length];
    else if (ev.key === "Home") next = visible[0];
    else if (ev.key === "End") next = visible[visible.length - 1];
    if (next) {
      ev.preventDefault();
      this.setTab(next);
      $(`tab-${next}`).focus();
    }
  }

  // ------------------------------------------------------------------ opening

  // `reload`: after a reconnect, read the current tab again (a follow stopped with the
  // connection).
  async open(taskId, rec, reload = false) {
    const changed = taskId !== this.taskId;
    this.taskId = taskId;
    this.rec = rec || this.rec;
    if (changed) this.rec = rec || null;
    try {
      this.rec = await this.app.rpc.call(P.M.STATUS, { task_id: taskId });
    } catch (e) {
      if (!this.rec) {
        this.app.message(`task ${taskId}: ${e.message}`, true);
        return;
      }
    }
    this.render();
    if (changed || !this.tabOpen) this.setTab(errorStream(this.rec));
    else if (reload) this.setTab(this.tab);
  }

  close() {
    this.taskId = null;
    this.rec = null;
    this.log.close();
    this.transcript.close();
    this.tabOpen = false;
    this.render();
  }

  // Fields of the record changed (an event or a refresh).
  update(rec) {
    if (!rec || rec.task_id !== this.taskId) return;
    this.rec = { ...this.rec, ...rec };
    this.render();
  }

  setTab(name) {
    this.tab = name;
    for (const t of TABS) {
      const b = $(`tab-${t}`);
      b.setAttribute("aria-selected", String(t === name));
      b.tabIndex = t === name ? 0 : -1;
    }
    const isLog = name === "stdout" || name === "stderr";
    $("transcript").hidden = name !== "transcript";
    $("log-diff").hidden = name !== "diff";
    $("log").hidden = !isLog;
    $("log-tools").hidden = !isLog;
    this.tabOpen = Boolean(this.taskId);
    if (!this.taskId) return;
    if (name !== "transcript") this.transcript.close();
    if (!isLog) this.log.close();
    if (name !== "diff") this.workspace.close();
    if (isLog) this.log.open(this.taskId, name);
    else if (name === "transcript") this.transcript.open(this.taskId);
    else this.workspace.load(this.taskId).catch((e) => this.app.message(`diff: ${e.message}`, true));
    this.logChanged();
  }

  // ------------------------------------------------------------------ rendering

  render() {
    const rec = this.rec;
    const online = this.app.online;
    $("detail-empty").hidden = Boolean(rec);
    $("detail-body").hidden = !rec;
    $("log-task").textContent = rec ? taskLabel(rec) : "select a task";
    const badge = $("log-status");
    badge.textContent = rec ? statusText(rec) : "";
    badge.dataset.status = rec ? rec.status : "";
    const doing = rec && this.app.doing(rec.task_id);
    const s = rec ? rec.status : null;
    const off = !online || !rec || Boolean(doing);
    $("btn-pause").disabled = off || s !== P.S.RUNNING;
    $("btn-resume").disabled = off || s !== P.S.PAUSED;
    $("btn-cancel").disabled = off || P.FINAL.has(s);
    $("detail-doing").textContent = doing ? { PAUSE: "pausing…", RESUME: "resuming…", CANCEL: "cancelling…" }[doing] : "";
    for (const id of ["btn-pause", "btn-resume", "btn-cancel"]) {
      const word = id.slice(4)[0].toUpperCase() + id.slice(5);
      $(id).setAttribute("aria-label", rec ? `${word} task ${taskLabel(rec)}` : word);
    }
    $("tab-transcript").hidden = !rec || rec.kind !== "claude";
    const wsChanged = this.workspace.setTask(rec);
    if (this.tab === "diff" && this.taskId) {
      if (!rec || !rec.workspace) this.setTab(errorStream(rec || {}));
      else if (wsChanged) this.setTab("diff");
    }
    if (!rec) return;
    this.facts(rec);
  }

  facts(rec) {
    const dl = $("facts");
    dl.replaceChildren();
    const add = (term, value, cls) => {
      if (value === null || value === undefined || value === "") return;
      dl.append(el("dt", null, term));
      dl.append(el("dd", cls || null, value));
    };
    const why = whyEnded(rec);
    if (why || rec.error) {
      const box = $("failure");
      box.hidden = false;
      box.replaceChildren();
      box.append(el("strong", null, why || rec.error));
      const kind = errorKind(rec);
      if (kind && kind !== "exit" && kind !== "signal") box.append(el("span", "kind", kind));
      if (rec.error && rec.error !== why && !String(why).includes(rec.error)) {
        box.append(el("div", "error-text", rec.error));
      }
      if (rec.error_hint) box.append(el("div", "hint", `What to do: ${rec.error_hint}`));
      if (rec.reset_at) box.append(el("div", "hint", `The limit resets at ${rec.reset_at}.`));
    } else {
      $("failure").hidden = true;
    }
    add("Command", rec.kind === "claude" ? `claude: ${commandText(rec)}` : commandText(rec), "mono");
    add("Exit", exitText(rec));
    add("Node", rec.node);
    add("Working dir", rec.cwd, "mono");
    add("Created", fmtTime(rec.created_at));
    add("Runtime", fmtDuration(rec.duration_s));
    add("Output", `stdout ${fmtBytes(rec.stdout_bytes || 0)} · stderr ${fmtBytes(rec.stderr_bytes || 0)}`);
    if (rec.kind === "claude") {
      add("Model", rec.model || rec.requested_model);
      add("Turns", rec.num_turns);
      const live = !P.FINAL.has(rec.status);
      add("Cost", rec.total_cost_usd !== undefined && rec.total_cost_usd !== null ? fmtCost(rec.total_cost_usd) : live ? "known when the run ends" : null);
      add("Claude session", rec.claude_session_id, "mono");
      add("Verification", rec.verification);
    }
    add("Task id", rec.task_id, "mono");
  }

  logChanged() {
    const v = this.log;
    const on = Boolean(this.taskId) && this.app.online;
    const total = v.total;
    $("log-range").textContent = this.taskId && this.tab !== "transcript"
      ? `bytes ${v.start}–${v.end} of ${total}${v.binary ? " · binary" : ""}`
      : "";
    $("log-start").disabled = !on || v.start === 0;
    $("log-earlier").disabled = !on || v.start === 0;
    $("log-later").disabled = !on || (v.end >= total && v.finished);
    $("log-end").disabled = !on || (v.following && v.end >= total);
    $("log-download").disabled = !on;
    $("follow").checked = v.following;
    $("follow").disabled = !on;
    const pos = $("log-position");
    pos.disabled = !on || total === 0;
    if (document.activeElement !== pos) pos.value = String(total ? Math.round((v.start / total) * 1000) : 0);
    pos.setAttribute("aria-valuetext", `${fmtBytes(v.start)} of ${fmtBytes(total)}`);
    for (const t of ["stdout", "stderr"]) {
      const n = this.rec ? this.rec[`${t}_bytes`] : null;
      $(`tab-${t}`).textContent = n ? `${t} ${fmtBytes(n)}` : t;
    }
  }

  setOnline() {
    this.render();
    this.logChanged();
  }
}
