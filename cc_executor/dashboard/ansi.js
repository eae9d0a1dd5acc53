// Terminal output made readable: ANSI SGR colours and styles become spans (classes for the
// 16 colours, CSSOM colours for 256-colour and true colour), every other escape sequence
// is stripped, and carriage-return redraws are dropped. The renderer keeps its state
// (the current style, a sequence cut between two chunks) across chunks.
"use strict";

// CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and any other two-byte escape.
const ESCAPE = /\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;
const PARTIAL = /\x1b(?:\[[0-9;:?<=>]*[ -/]*|\][^\x07\x1b]*)?$/;

const PLAIN = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };

function xterm256(n) {
  if (n < 16) return null;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const c = [Math.floor(i / 36), Math.floor(i / 6) % 6, i % 6].map((x) => (x ? 55 + x * 40 : 0));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export class AnsiRenderer {
  constructor() {
    this.reset();
  }

  reset() {
    this.style = { ...PLAIN };
    this.carry = "";
    this.sawEscapes = false;
  }

  save() {
    return { style: { ...this.style }, carry: this.carry };
  }

  restore(saved) {
    this.style = { ...saved.style };
    this.carry = saved.carry;
  }

  plain() {
    const s = this.style;
    return s.fg === null && s.bg === null && !s.bold && !s.dim && !s.italic && !s.underline;
  }

  sgr(params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((x) => Number(x) || 0);
    const s = this.style;
    for (let i = 0; i < codes.length; i += 1) {
      const c = codes[i];
      if (c === 0) Object.assign(s, PLAIN);
      else if (c === 1) s.bold = true;
      else if (c === 2) s.dim = true;
      else if (c === 3) s.italic = true;
      else if (c === 4) s.underline = true;
      else if (c === 22) s.bold = s.dim = false;
      else if (c === 23) s.italic = false;
      else if (c === 24) s.underline = false;
      else if (c >= 30 && c <= 37) s.fg = c - 30;
      else if (c >= 90 && c <= 97) s.fg = c - 90 + 8;
      else if (c === 39) s.fg = null;
      else if (c >= 40 && c <= 47) s.bg = c - 40;
      else if (c >= 100 && c <= 107) s.bg = c - 100 + 8;
      else if (c === 49) s.bg = null;
      else if (c === 38 || c === 48) {
        let value = null;
        if (codes[i + 1] === 5) {
          const n = codes[i + 2];
          value = n < 16 ? n : xterm256(n);
          i += 2;
        } else if (codes[i + 1] === 2) {
          value = `rgb(${codes[i + 2]},${codes[i + 3]},${codes[i + 4]})`;
          i += 4;
        }
        if (c === 38) s.fg = value;
        else s.bg = value;
      }
    }
  }

  span(text) {
    if (this.plain()) return document.createTextNode(text);
    const s = this.style;
    const e = document.createElement("span");
    const cls = [];
    if (typeof s.fg === "number") cls.push(`fg${s.fg}`);
    else if (s.fg) e.style.color = s.fg;
    if (typeof s.bg === "number") cls.push(`bg${s.bg}`);
    else if (s.bg) e.style.backgroundColor = s.bg;
    if (s.bold) cls.push("b");
    if (s.dim) cls.push("dim");
    if (s.italic) cls.push("i");
    if (s.underline) cls.push("u");
    e.className = cls.join(" ");
    e.textContent = text;
    return e;
  }

  // A fragment for the next piece of text.
  render(text) {
    let input = this.carry + text;
    this.carry = "";
    const esc = input.lastIndexOf("\x1b");
    const partial = esc >= 0 && esc > input.length - 256 ? PARTIAL.exec(input.slice(esc)) : null;
    if (partial && partial.index === 0) {
      this.carry = partial[0];
      input = input.slice(0, esc);
    }
    if (input.indexOf("\r") >= 0) {
      input = input.replace(/\r+\n/g, "\n").replace(/[^\n\r]*\r(?!\n)/g, "");
    }
    const frag = document.createDocumentFragment();
    if (input.indexOf("\x1b") < 0) {
      if (input) frag.append(this.span(input));
      return frag;
    }
    this.sawEscapes = true;
    let last = 0;
    ESCAPE.lastIndex = 0;
    for (let m = ESCAPE.exec(input); m; m = ESCAPE.exec(input)) {
      if (m.index > last) frag.append(this.span(input.slice(last, m.index)));
      if (m[2] === "m" && m[0][1] === "[") this.sgr(m[1]);
      last = ESCAPE.lastIndex;
    }
    if (last < input.length) frag.append(this.span(input.slice(last).replace(/\x1b/g, "")));
    return frag;
  }
}

// Whether decoded text is binary data rather than text: many control characters that a
// terminal would not print (NUL and friends; tab, newline, CR and ESC are text).
export function looksBinary(text) {
  const n = Math.min(text.length, 8192);
  if (n === 0) return false;
  let odd = 0;
  for (let i = 0; i < n; i += 1) {
    const c = text.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 27 && c !== 12) || c === 0xfffd) {
      odd += 1;
    }
  }
  return odd / n > 0.05;
}

// A classic hex dump of the first bytes, for a binary stream.
export function hexDump(bytes, offset, max = 512) {
  const lines = [];
  const n = Math.min(bytes.length, max);
  for (let i = 0; i < n; i += 16) {
    const row = bytes.subarray(i, Math.min(i + 16, n));
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = [...row].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${(offset + i).toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join("\n");
}
