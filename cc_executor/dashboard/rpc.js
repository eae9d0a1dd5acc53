// The dashboard's connection: the protocol's names (GET /protocol.json) and a JSON-RPC 2.0
// client over the service's WebSocket. The token travels as an offered subprotocol
// (cc-executor.token.<base64url>), never in the URL: a failed connection's URL is printed
// on the browser console.
"use strict";

export const P = {
  M: {}, // methods by member name: P.M.STATUS is "status"
  N: {}, // notifications: P.N.OUTPUT is "process.output"
  S: {}, // task statuses: P.S.RUNNING is "running"
  A: {}, // control actions: P.A.PAUSE is "PAUSE"
  E: {}, // error codes
  FINAL: new Set(),
  ACTIVE: new Set(),
  SORTS: [],
  subprotocol: "",
  tokenPrefix: "",
};

export async function loadProtocol(onRetry) {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
    try {
      const r = await fetch("/protocol.json", { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const p = await r.json();
      P.M = p.methods;
      P.N = p.notifications;
      P.S = p.task_statuses;
      P.A = p.actions;
      P.E = p.error_codes;
      P.FINAL = new Set(p.final_statuses);
      P.ACTIVE = new Set(p.active_statuses);
      P.SORTS = p.task_sorts;
      P.subprotocol = p.dashboard.subprotocol;
      P.tokenPrefix = p.dashboard.token_subprotocol_prefix;
      return;
    } catch (_) {
      onRetry(delay);
      await new Promise((done) => setTimeout(done, delay));
    }
  }
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class RpcError extends Error {
  constructor(err) {
    super(err.message || "error");
    this.code = err.code;
    this.data = err.data;
  }
}

export class Rpc {
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
    const ws = new WebSocket(`${scheme}://${location.host}/ws`, [
      P.subprotocol,
      P.tokenPrefix + base64url(token),
    ]);
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

  close() {
    if (this.ws) this.ws.close();
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
