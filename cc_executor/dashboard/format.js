// How the dashboard words things: sizes, durations, times, costs, commands, and why a
// task ended. Pure functions, no DOM but the two element helpers.
"use strict";

import { P } from "./rpc.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

export function fmtBytes(n) {
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

export function fmtDuration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, "0")}m`;
}

export function fmtAgo(epoch, now = Date.now() / 1000) {
  if (!epoch) return "";
  const s = Math.max(0, Math.floor(now - epoch));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "";
  return `$${Number(usd).toFixed(usd < 1 ? 4 : 2)}`;
}

export function fmtTime(epoch) {
  if (!epoch) return "";
  return new Date(epoch * 1000).toLocaleString();
}

function shellQuote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

export function commandText(rec) {
  if (rec.kind === "claude" && rec.prompt) return rec.prompt;
  const c = rec.command;
  if (Array.isArray(c)) return c.map(shellQuote).join(" ");
  return c === undefined || c === null ? "" : String(c);
}

export function taskLabel(rec) {
  return rec.name ? `${rec.name} (${rec.task_id.slice(0, 8)})` : rec.task_id.slice(0, 8);
}

const SIGNALS = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  6: "SIGABRT",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
};

export function signalName(n) {
  return SIGNALS[n] || `signal ${n}`;
}

// "exit 3", "SIGKILL", or "" while it runs.
export function exitText(rec) {
  if (rec.signal) return signalName(rec.signal);
  if (rec.exit_code !== null && rec.exit_code !== undefined) return `exit ${rec.exit_code}`;
  return "";
}

// Why a task is over, in words: who or what ended it. Null while it runs or when it
// simply completed.
export function whyEnded(rec) {
  const s = rec.status;
  const killed = rec.signal === 9 ? ", killed with SIGKILL after the grace period" : "";
  if (s === P.S.CANCELLED) {
    const err = rec.error || "";
    if (/shutting down/.test(err)) return `cancelled: the service shut down${killed}`;
    if (err === P.S.CANCELLED || !err) return `cancelled by a user (CANCEL)${killed}`;
    return `cancelled: ${err}${killed}`;
  }
  if (s === P.S.TIMED_OUT) {
    const what = rec.timeout_kind === "idle_timeout" ? "idle timeout" : "time limit";
    return `ended by its ${what}: ${rec.error || "timed out"}${killed}`;
  }
  if (s === P.S.LOST) return "lost: the service stopped while it ran (found on restart)";
  if (s === P.S.FAILED) {
    if (rec.spawn_error) return `could not start: ${rec.spawn_error}`;
    if (rec.signal) return `killed by ${signalName(rec.signal)}`;
    if (rec.exit_code) return `exited with code ${rec.exit_code}`;
    return rec.error ? `failed: ${rec.error}` : P.S.FAILED;
  }
  return null;
}

// The error class in a word (Claude's error_kind, else what ended it), "" if none.
export function errorKind(rec) {
  if (rec.error_kind) return rec.error_kind;
  const s = rec.status;
  if (s === P.S.TIMED_OUT) return rec.timeout_kind || "timeout";
  if (s === P.S.LOST) return P.S.LOST;
  if (s === P.S.FAILED) {
    if (rec.spawn_error) return /FileNotFound/.test(rec.spawn_error) ? "not_found" : "spawn";
    return rec.signal ? "signal" : "exit";
  }
  return "";
}

// A status as a list shows it: a held task says what it waits for and until when
// (issue 16: "queued · rate_limit until 15:04:05").
export function statusText(rec) {
  if (rec.status !== P.S.QUEUED || !rec.waiting_for) return rec.status || "";
  const until = rec.until ? ` until ${new Date(rec.until).toLocaleTimeString()}` : "";
  return `${rec.status} · ${rec.waiting_for}${until}`;
}

export function statusBadge(status) {
  const s = el("span", "status", status || "");
  s.dataset.status = status || "";
  return s;
}

// The stream a failed task's error is most likely on: the Claude transcript, or stderr.
export function errorStream(rec) {
  const failed = rec.status !== P.S.COMPLETED && P.FINAL.has(rec.status);
  if (rec.kind === "claude") {
    const early = ["cli_not_found", "nested_session", "crashed"].includes(rec.error_kind);
    return failed && early && rec.stderr_bytes > 0 ? "stderr" : "transcript";
  }
  if (failed && rec.stderr_bytes > 0) return "stderr";
  return "stdout";
}
