// The log view: one stream of one task, read from its log by offset with `output`. The
// page holds a window of at most WINDOW_BYTES: paging (Earlier/Later, or scrolling to an
// edge) reads one page and drops the far end, so the 100th page costs what the first did.
// Following a live task polls `output` from the window's end; when it falls more than
// SKIP_BYTES behind, it jumps to the tail (the skipped bytes stay one "Earlier" away), so
// a task printing megabytes a second never queues work for the main thread.
"use strict";

import { AnsiRenderer, hexDump, looksBinary } from "./ansi.js";
import { $, el, fmtBytes } from "./format.js";
import { P } from "./rpc.js";

const PAGE_BYTES = 256 * 1024;
const WINDOW_BYTES = 1024 * 1024;
const SKIP_BYTES = 1024 * 1024;
const SCAN_BYTES = 1024 * 1024; // search and download read this much per call
const POLL_MS = 250;
const EDGE_PX = 48;
const PIECE_CHARS = 16 * 1024;

const utf8 = new TextEncoder();
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

export function bytesOf(r) {
  if (r.encoding === "base64") {
    const bin = atob(r.data);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
    return out;
  }
  return utf8.encode(r.data);
}

function textOf(r) {
  return r.encoding === "base64" ? new TextDecoder("utf-8").decode(bytesOf(r)) : r.data;
}

// Bytes before the first newline when a window starts inside a line.
function partialLine(text) {
  const nl = text.indexOf("\n");
  return nl >= 0 && nl < text.length - 1 ? nl + 1 : 0;
}

export class LogView {
  constructor(rpc, onChange) {
    this.rpc = rpc;
    this.onChange = onChange; // (view) => void: range, follow and busy state changed
    this.pre = $("log");
    this.taskId = null;
    this.stream = "stdout";
    this.gen = 0;
    this.chain = Promise.resolve();
    // Only a person's scrolling stops following (or pages at an edge): the view's own
    // scrolls come without wheel, key, touch or pointer input.
    this.userAt = 0;
    const intent = () => (this.userAt = performance.now());
    for (const ev of ["wheel", "pointerdown", "touchstart", "keydown"]) {
      this.pre.addEventListener(ev, intent, { passive: true });
    }
    this.pre.addEventListener("scroll", () => this.onScroll());
    this.clear();
  }

  clear() {
    this.start = 0;
    this.end = 0;
    this.total = 0;
    this.chunks = [];
    this.tail = null;
    this.following = false;
    this.binary = false;
    this.finished = false;
    this.renderer = new AnsiRenderer();
    this.pre.replaceChildren();
    this.match = null;
    if (globalThis.CSS && CSS.highlights) CSS.highlights.delete("log-search");
  }

  get bytesShown() {
    return this.end - this.start;
  }

  // Run log work one step at a time; a new `open` makes the older steps no-ops.
  run(fn) {
    const gen = this.gen;
    const step = this.chain.then(() => (gen === this.gen ? fn(gen) : undefined));
    this.chain = step.catch(() => {});
    return step;
  }

  read(offset, limit) {
    return this.rpc.call(P.M.OUTPUT, { task_id: this.taskId, stream: this.stream, offset, limit });
  }

  open(taskId, stream, { follow = true, at = null } = {}) {
    this.gen += 1;
    this.chain = Promise.resolve();
    this.taskId = taskId;
    this.stream = stream;
    this.clear();
    this.following = follow && at === null;
    this.changed();
    return this.run(async (gen) => {
      const head = await this.read(0, 0);
      if (gen !== this.gen) return;
      this.total = head.total;
      const from = at !== null ? at : Math.max(0, head.total - PAGE_BYTES);
      await this.loadAt(gen, from);
      if (this.following) this.followLoop(gen);
    });
  }

  close() {
    this.gen += 1;
    this.taskId = null;
    this.clear();
    this.changed();
  }

  changed() {
    this.onChange(this);
  }

  // ------------------------------------------------------------------ rendering

  // A page's text becomes block chunks that end at a newline (so an offscreen chunk can
  // skip layout: `content-visibility: auto`), and the partial last line a "tail" chunk
  // that the next page's text replaces.
  binaryChunk(r, start) {
    this.binary = true;
    const chunk = el("div", "chunk binary");
    chunk.append(
      el("span", "binary-note", `[binary data: ${fmtBytes(r.size)} at byte ${start}, shown as hex; Download has it all]\n`),
      document.createTextNode(`${hexDump(bytesOf(r), start, 256)}\n`),
    );
    return chunk;
  }

  textChunk(text) {
    const chunk = el("div", "chunk");
    chunk.append(this.renderer.render(text));
    return chunk;
  }

  dropTailLine() {
    const tail = this.tail;
    this.tail = null;
    if (tail) tail.node.remove();
    return tail;
  }

  // Append page `r` (its text, less `skip` leading characters) at the window's end.
  append(r, text = null, skip = 0) {
    if (r.encoding === "base64" || looksBinary(text ?? textOf(r))) {
      const tail = this.dropTailLine();
      if (tail) this.addChunk(this.textChunk(tail.text), tail.bytes);
      this.addChunk(this.binaryChunk(r, r.offset), r.size);
      this.end = r.offset + r.size;
      return;
    }
    const tail = this.dropTailLine();
    const page = (text ?? textOf(r)).slice(skip);
    const all = (tail ? tail.text : "") + page;
    const bytes = (tail ? tail.bytes : 0) + (r.offset + r.size - this.end);
    const cut = all.lastIndexOf("\n") + 1;
    const rest = all.slice(cut);
    const restBytes = rest ? utf8.encode(rest).length : 0;
    if (cut > 0) this.addLines(all.slice(0, cut), bytes - restBytes);
    if (rest) {
      const saved = this.renderer.save();
      const node = this.textChunk(rest);
      this.renderer.restore(saved); // the line is rendered again, whole, with the next page
      this.pre.append(node);
      this.tail = { node, text: rest, bytes: restBytes };
    }
    this.end = r.offset + r.size;
    this.total = Math.max(this.total, r.total);
  }

  // Whole lines as chunks of about PIECE_CHARS: only the few on screen are laid out.
  addLines(text, bytes) {
    const ascii = text.length === bytes;
    let at = 0;
    while (at < text.length) {
      let to = text.length;
      if (to - at > PIECE_CHARS) {
        const nl = text.indexOf("\n", at + PIECE_CHARS);
        to = nl < 0 ? text.length : nl + 1;
      }
      const piece = text.slice(at, to);
      this.addChunk(this.textChunk(piece), ascii ? piece.length : utf8.encode(piece).length);
      at = to;
    }
  }

  addChunk(node, bytes) {
    this.pre.append(node);
    this.chunks.push({ node, bytes });
  }

  async loadAt(gen, offset) {
    const r = await this.read(offset, PAGE_BYTES);
    if (gen !== this.gen) return;
    const follow = this.following;
    this.clear();
    this.following = follow; // the caller decided: a jump to the tail follows on
    let text = textOf(r);
    let cut = 0;
    let start = offset;
    if (offset > 0 && r.encoding !== "base64") {
      cut = partialLine(text);
      start += utf8.encode(text.slice(0, cut)).length;
    }
    this.start = start;
    this.end = start;
    this.total = r.total;
    this.finished = r.eof;
    this.append(r, text, cut);
    this.scrollTo(this.following || (offset > 0 && offset + r.size >= r.total) ? "bottom" : "top");
    this.changed();
  }

  dropHead() {
    while (this.bytesShown > WINDOW_BYTES && this.chunks.length > 1) {
      const before = this.following ? 0 : this.pre.scrollHeight;
      const c = this.chunks.shift();
      c.node.remove();
      this.start += c.bytes;
      if (!this.following) this.setScroll(this.pre.scrollTop - (before - this.pre.scrollHeight));
    }
  }

  dropTail() {
    const tail = this.bytesShown > WINDOW_BYTES ? this.dropTailLine() : null;
    if (tail) this.end -= tail.bytes;
    while (this.bytesShown > WINDOW_BYTES && this.chunks.length > 1) {
      const c = this.chunks.pop();
      c.node.remove();
      this.end -= c.bytes;
    }
  }

  setScroll(top) {
    this.pre.scrollTop = top;
  }

  scrollTo(where) {
    this.setScroll(where === "bottom" ? this.pre.scrollHeight : 0);
  }

  // ------------------------------------------------------------------ moving

  toStart() {
    this.following = false;
    return this.run((gen) => this.loadAt(gen, 0));
  }

  toEnd() {
    this.following = true;
    return this.run(async (gen) => {
      const head = await this.read(0, 0);
      await this.loadAt(gen, Math.max(0, head.total - PAGE_BYTES));
      if (gen === this.gen && this.following) this.followLoop(gen);
    });
  }

  jump(fraction) {
    this.following = false;
    return this.run((gen) => this.loadAt(gen, Math.floor(this.total * fraction)));
  }

  earlier() {
    if (this.start === 0 || this.loading) return Promise.resolve();
    this.following = false;
    this.loading = true;
    return this.run(async (gen) => {
      try {
        const from = Math.max(0, this.start - PAGE_BYTES);
        const r = await this.read(from, this.start - from);
        if (gen !== this.gen || r.size === 0) return;
        let text = textOf(r);
        let start = from;
        if (from > 0 && r.encoding !== "base64") {
          const cut = partialLine(text);
          start += utf8.encode(text.slice(0, cut)).length;
          text = text.slice(cut);
        }
        const renderer = this.renderer;
        this.renderer = new AnsiRenderer(); // an earlier page starts in the default style
        const binary = r.encoding === "base64" || looksBinary(text);
        const below = this.pre.scrollHeight - this.pre.scrollTop;
        if (binary) {
          const chunk = this.binaryChunk(r, from);
          this.pre.prepend(chunk);
          this.chunks.unshift({ node: chunk, bytes: this.start - start });
        } else {
          // Built at the end of a scratch list, then moved in front, in order.
          const kept = this.chunks;
          const first = this.pre.firstChild;
          this.chunks = [];
          const mark = document.createDocumentFragment();
          const realPre = this.pre;
          this.pre = mark;
          this.addLines(text, this.start - start);
          this.pre = realPre;
          realPre.insertBefore(mark, first);
          this.chunks = this.chunks.concat(kept);
        }
        this.renderer = renderer;
        this.start = start;
        this.dropTail();
        this.setScroll(this.pre.scrollHeight - below); // the same line stays in view
        this.changed();
      } finally {
        this.loading = false;
      }
    });
  }

  later() {
    if (this.loading || (this.end >= this.total && this.finished)) return Promise.resolve();
    this.loading = true;
    return this.run(async (gen) => {
      try {
        const r = await this.read(this.end, PAGE_BYTES);
        if (gen !== this.gen) return;
        this.total = r.total;
        this.finished = r.eof;
        if (r.size > 0) {
          this.append(r);
          this.dropHead();
        }
        this.changed();
      } finally {
        this.loading = false;
      }
    });
  }

  setFollow(on) {
    if (on === this.following) return;
    if (on) this.toEnd();
    else {
      this.following = false;
      this.changed();
    }
  }

  onScroll() {
    if (!this.taskId || performance.now() - this.userAt > 1500) return;
    const pre = this.pre;
    const fromBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight;
    if (this.following && fromBottom > EDGE_PX) {
      this.following = false; // the user scrolled up: stop where they are
      this.changed();
    }
    if (pre.scrollTop < EDGE_PX && this.start > 0) this.earlier();
    else if (fromBottom < EDGE_PX && !this.following && this.end < this.total) this.later();
  }

  // ------------------------------------------------------------------ following

  async followLoop(gen) {
    while (gen === this.gen && this.following) {
      let got = 0;
      await this.run(async () => {
        if (!this.following) return;
        const r = await this.read(this.end, PAGE_BYTES);
        if (gen !== this.gen || !this.following) return;
        this.total = r.total;
        this.finished = r.eof;
        if (r.total - (this.end + r.size) > SKIP_BYTES) {
          // Far behind: show the tail now; what was skipped is one "Earlier" away.
          await this.loadAt(gen, Math.max(0, r.total - PAGE_BYTES));
          got = 1;
          return;
        }
        if (r.size > 0) {
          this.append(r);
          this.dropHead();
          this.scrollTo("bottom");
          got = r.size;
        }
        this.changed();
      }).catch(() => {});
      if (gen !== this.gen || this.finished || !this.rpc.open) break;
      await sleep(got > 0 ? 0 : POLL_MS);
    }
  }

  // ------------------------------------------------------------------ search

  windowText() {
    const walker = document.createTreeWalker(this.pre, NodeFilter.SHOW_TEXT);
    const nodes = [];
    let text = "";
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      nodes.push([n, text.length]);
      text += n.data;
    }
    return { text, nodes };
  }

  highlight(index, length) {
    const { nodes } = this.windowText();
    const at = (i) => {
      let k = nodes.length - 1;
      while (k > 0 && nodes[k][1] > i) k -= 1;
      return [nodes[k][0], i - nodes[k][1]];
    };
    const range = document.createRange();
    range.setStart(...at(index));
    range.setEnd(...at(index + length));
    if (globalThis.CSS && CSS.highlights && globalThis.Highlight) {
      CSS.highlights.set("log-search", new Highlight(range));
    }
    const box = range.getBoundingClientRect();
    const pre = this.pre.getBoundingClientRect();
    this.setScroll(this.pre.scrollTop + box.top - pre.top - this.pre.clientHeight / 3);
    this.match = { index, length };
  }

  // Find `term` (case-insensitive) after the current match, in the window, then in the
  // rest of the log page by page (never more than one page held). Resolves to true if found.
  search(term) {
    const needle = term.toLowerCase();
    if (!needle || !this.taskId) return Promise.resolve(false);
    this.following = false;
    return this.run(async (gen) => {
      const { text } = this.windowText();
      const after = this.match ? this.match.index + 1 : 0;
      const here = text.toLowerCase().indexOf(needle, after);
      if (here >= 0) {
        this.highlight(here, needle.length);
        this.changed();
        return true;
      }
      let offset = this.end;
      let carry = "";
      while (offset < this.total && gen === this.gen) {
        const r = await this.read(offset, SCAN_BYTES);
        if (r.size === 0) break;
        const page = carry + textOf(r);
        const i = page.toLowerCase().indexOf(needle);
        if (i >= 0) {
          const found = offset - utf8.encode(carry).length + utf8.encode(page.slice(0, i)).length;
          await this.loadAt(gen, Math.max(0, found - 2048));
          const w = this.windowText().text.toLowerCase().indexOf(needle);
          if (w >= 0) this.highlight(w, needle.length);
          this.changed();
          return true;
        }
        carry = needle.length > 1 ? page.slice(Math.max(0, page.length - needle.length + 1)) : "";
        offset += r.size;
      }
      this.match = null;
      this.changed();
      return false;
    });
  }

  // ------------------------------------------------------------------ download

  // The whole log as a file, read page by page into a Blob (the browser keeps large ones
  // on disk), not into the page.
  async download() {
    const taskId = this.taskId;
    const stream = this.stream;
    if (!taskId) return;
    const parts = [];
    let offset = 0;
    for (;;) {
      const r = await this.rpc.call(P.M.OUTPUT, {
        task_id: taskId,
        stream,
        offset,
        limit: SCAN_BYTES * 4,
      });
      if (r.size === 0) break;
      parts.push(bytesOf(r));
      offset += r.size;
      if (offset >= r.total) break;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
    const a = el("a");
    a.href = url;
    a.download = `${taskId}.${stream}.log`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }
}
