// The selected task's workspace (docs/workspaces.md). A task run with workspace
// "worktree" has a branch of its own; the task panel names it with what changed, and its
// "diff" tab shows the unified diff read with `workspace.diff` pages (at most MAX_BYTES).
"use strict";

import { $, el } from "./format.js";
import { bytesOf } from "./logview.js";
import { P } from "./rpc.js";

const PAGE_BYTES = 1024 * 1024; // per `workspace.diff` call
const MAX_BYTES = 4 * 1024 * 1024; // what the page shows of one diff

function summary(ws) {
  const parts = [`branch ${ws.branch}`, ws.state];
  if (ws.changed === false) parts.push("no change");
  if (ws.changed) {
    parts.push(`${ws.files_changed} files +${ws.lines_added} -${ws.lines_removed}`);
    const n = ws.commits ? ws.commits.count : 0;
    if (n) parts.push(`${n} commit${n === 1 ? "" : "s"}`);
    if (ws.uncommitted) parts.push("uncommitted changes");
  }
  return parts.join(" · ");
}

function lineClass(line) {
  if (/^(diff --git |index |--- |\+\+\+ |new file|deleted file|GIT binary)/.test(line)) {
    return "meta";
  }
  if (line.startsWith("@@")) return "hunk";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  return null;
}

function render(pre, text) {
  const frag = document.createDocumentFragment();
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    const cls = lineClass(line);
    frag.append(cls ? el("span", cls, `${line}\n`) : document.createTextNode(`${line}\n`));
  }
  pre.replaceChildren(frag);
}

export class WorkspaceView {
  constructor(rpc) {
    this.rpc = rpc;
    this.gen = 0; // a newer load makes an older one stop
    this.shown = ""; // the summary on the page: a change in it means the diff changed too
  }

  // Show the task's branch (or nothing); the diff tab exists only for a workspace.
  // Returns true when what it shows changed (the diff may have changed with it).
  setTask(rec) {
    const ws = rec && rec.workspace;
    $("tab-diff").hidden = !ws;
    const text = ws ? summary(ws) : "";
    $("log-branch").textContent = text;
    $("log-branch").title = ws ? `${ws.path}\nbase ${ws.base_ref} ${ws.base_commit}` : "";
    const changed = text !== this.shown;
    this.shown = text;
    return changed;
  }

  close() {
    this.gen += 1;
  }

  // Read the task's diff (at most MAX_BYTES) into the diff tab.
  async load(taskId) {
    const mine = ++this.gen;
    const pre = $("log-diff");
    const parts = [];
    let offset = 0;
    let total = 0;
    while (offset < MAX_BYTES) {
      const r = await this.rpc.call(P.M.WORKSPACE_DIFF, {
        task_id: taskId,
        offset,
        limit: Math.min(PAGE_BYTES, MAX_BYTES - offset),
      });
      if (mine !== this.gen) return;
      parts.push(bytesOf(r));
      offset += r.size;
      total = r.total;
      if (r.eof || r.size === 0) break;
    }
    const bytes = new Uint8Array(offset);
    let pos = 0;
    for (const p of parts) {
      bytes.set(p, pos);
      pos += p.length;
    }
    const text = new TextDecoder("utf-8").decode(bytes);
    if (!text) pre.replaceChildren(el("span", "meta", "no change\n"));
    else render(pre, text);
    if (total > offset) {
      pre.append(
        el("span", "meta", `[${total - offset} more bytes: cc-executor workspaces diff ${taskId}]\n`),
      );
    }
  }
}
