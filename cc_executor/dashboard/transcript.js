// A Claude task's transcript: its stdout (stream-json, one event a line) read with
// `output` and shown as a conversation: the session's start, assistant text, tool calls
// and their results, rate limits, and the final result with its cost. It follows a live
// task by polling from the last byte read; at most MAX_BYTES are turned into entries (the
// raw stdout tab pages through the rest).
"use strict";

import { $, el, fmtCost, fmtDuration } from "./format.js";
import { P } from "./rpc.js";

const READ_BYTES = 1024 * 1024;
const MAX_BYTES = 16 * 1024 * 1024;
const POLL_MS = 300;
const PREVIEW_CHARS = 1200;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function clip(text, n = PREVIEW_CHARS) {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((b) => (b && typeof b.text === "string" ? b.text : "")).join("\n");
  }
  return content == null ? "" : JSON.stringify(content);
}

function toolInput(input) {
  if (!input || typeof input !== "object") return "";
  if (typeof input.command === "string") return input.command;
  if (typeof input.file_path === "string") return input.file_path;
  if (typeof input.pattern === "string") return input.pattern;
  return JSON.stringify(input);
}

export class Transcript {
  constructor(rpc, onChange) {
    this.rpc = rpc;
    this.onChange = onChange;
    this.box = $("transcript");
    this.gen = 0;
    this.taskId = null;
    this.reset();
  }

  reset() {
    this.offset = 0;
    this.carry = "";
    this.entries = 0;
    this.capped = false;
    this.box.replaceChildren();
  }

  open(taskId) {
    this.gen += 1;
    this.taskId = taskId;
    this.reset();
    this.loop(this.gen);
  }

  close() {
    this.gen += 1;
    this.taskId = null;
    this.reset();
  }

  async loop(gen) {
    while (gen === this.gen) {
      let r;
      try {
        r = await this.rpc.call(P.M.OUTPUT, {
          task_id: this.taskId,
          stream: "stdout",
          offset: this.offset,
          limit: READ_BYTES,
        });
      } catch (_) {
        return;
      }
      if (gen !== this.gen) return;
      this.feed(r.encoding === "base64" ? atob(r.data) : r.data);
      this.offset += r.size;
      this.onChange(this);
      if (this.offset >= MAX_BYTES) {
        this.capped = true;
        this.box.append(el("p", "t-note", "The transcript stops here: the stdout tab has the rest."));
        return;
      }
      if (r.eof) {
        this.feed("\n");
        return;
      }
      await sleep(r.size > 0 ? 0 : POLL_MS);
    }
  }

  feed(text) {
    const lines = (this.carry + text).split("\n");
    this.carry = lines.pop();
    const frag = document.createDocumentFragment();
    for (const line of lines) {
      if (!line.trim()) continue;
      let ev = null;
      try {
        ev = JSON.parse(line);
      } catch (_) {
        ev = null;
      }
      const node = ev && typeof ev === "object" ? this.entry(ev) : el("pre", "t-plain", clip(line));
      if (node) {
        frag.append(node);
        this.entries += 1;
      }
    }
    const atBottom = this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < 40;
    this.box.append(frag);
    if (atBottom) this.box.scrollTop = this.box.scrollHeight;
  }

  entry(ev) {
    const type = ev.type;
    if (type === "system" && ev.subtype === "init") {
      const tools = Array.isArray(ev.tools) ? ev.tools.length : 0;
      return el(
        "p",
        "t-system",
        `Session ${ev.session_id || "?"} · model ${ev.model || "?"} · ${tools} tools · ${ev.cwd || ""}`,
      );
    }
    if (type === "system" && ev.subtype === "api_retry") {
      return el("p", "t-warn", `API retry ${ev.attempt}/${ev.max_retries}: ${ev.error || ev.error_status || ""}`);
    }
    if (type === "assistant") return this.assistant(ev);
    if (type === "user") return this.toolResults(ev);
    if (type === "rate_limit_event") {
      const info = ev.rate_limit_info || {};
      const at = info.resetsAt ? new Date(info.resetsAt * 1000).toLocaleString() : "?";
      return el("p", "t-warn", `Rate limit ${info.status || ""}${info.rateLimitType ? ` (${info.rateLimitType})` : ""}: resets ${at}`);
    }
    if (type === "result") return this.result(ev);
    return null;
  }

  assistant(ev) {
    const msg = ev.message || {};
    const box = el("div", "t-assistant");
    for (const block of Array.isArray(msg.content) ? msg.content : []) {
      if (block.type === "text" && block.text) {
        box.append(el("div", "t-text", block.text));
      } else if (block.type === "tool_use") {
        const call = el("div", "t-tool");
        call.append(el("strong", null, block.name || "tool"), el("code", null, clip(toolInput(block.input), 400)));
        box.append(call);
      }
    }
    if (ev.error) box.append(el("div", "t-error", `error: ${ev.error}`));
    return box.childNodes.length ? box : null;
  }

  toolResults(ev) {
    const msg = ev.message || {};
    const blocks = (Array.isArray(msg.content) ? msg.content : []).filter((b) => b.type === "tool_result");
    if (!blocks.length) return null;
    const frag = el("div", "t-results");
    for (const b of blocks) {
      const d = el("details", b.is_error ? "t-result error" : "t-result");
      const text = contentText(b.content);
      const first = text.split("\n")[0] || "(empty)";
      d.append(el("summary", null, `${b.is_error ? "tool error" : "tool result"}: ${clip(first, 160)}`));
      d.append(el("pre", null, clip(text)));
      frag.append(d);
    }
    return frag;
  }

  result(ev) {
    const box = el("div", ev.is_error ? "t-final error" : "t-final");
    const bits = [ev.subtype || "result"];
    if (ev.num_turns !== undefined) bits.push(`${ev.num_turns} turn${ev.num_turns === 1 ? "" : "s"}`);
    if (ev.total_cost_usd !== undefined) bits.push(fmtCost(ev.total_cost_usd));
    if (ev.duration_ms !== undefined) bits.push(fmtDuration(ev.duration_ms / 1000));
    box.append(el("strong", null, `Result · ${bits.join(" · ")}`));
    if (ev.result) box.append(el("div", "t-text", ev.result));
    for (const e of Array.isArray(ev.errors) ? ev.errors : []) box.append(el("div", "t-error", e));
    return box;
  }
}
