// Shared by the conformance scripts: the target (BASE_URL, KEY from the
// environment), a fetch that records each exchange of the case running, and the
// case loop that prints one JSON line per case: {client, case, ok, error} and,
// for a failing case, the last requests and responses it saw.

export const BASE_URL = must("BASE_URL");
export const KEY = must("KEY");

function must(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set: run with BASE_URL=http://HOST:PORT KEY=...`);
    process.exit(2);
  }
  return v;
}

const LIMIT = 4096; // bytes kept of each body

function cut(s) {
  if (s == null) return s;
  return s.length > LIMIT ? s.slice(0, LIMIT) + `… (${s.length} bytes)` : s;
}

// exchanges of the running case, oldest first; each {request, response}.
let exchanges = [];

// recordingFetch is a fetch that keeps each request (method, URL, the
// anthropic-* headers, body) and its response (status, request-id, body) for
// the report of a failing case. Keys are never kept.
export async function recordingFetch(input, init = {}) {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const method = init.method ?? (typeof input === "object" && input.method) ?? "GET";
  const headers = {};
  for (const [k, v] of new Headers(init.headers ?? (typeof input === "object" ? input.headers : undefined))) {
    if (k.startsWith("anthropic-") || k === "content-type") headers[k] = v;
  }
  const body = init.body == null ? undefined : typeof init.body === "string" ? init.body : `(${typeof init.body} body)`;
  const ex = { request: { method, url, headers, body: cut(body) }, response: null };
  exchanges.push(ex);
  let res;
  try {
    res = await fetch(input, init);
  } catch (e) {
    ex.response = { error: String(e) };
    throw e;
  }
  const text = res.clone().text().catch((e) => `(body unread: ${e})`);
  ex.response = { status: res.status, request_id: res.headers.get("request-id"), body: text };
  return res;
}

// seen returns the exchanges of the running case so far, response bodies read.
export async function seen() {
  const out = [];
  for (const ex of exchanges) {
    const r = ex.response ? { ...ex.response } : null;
    if (r && r.body && typeof r.body.then === "function") r.body = await r.body;
    out.push({ request: ex.request, response: r });
  }
  return out;
}

// check throws when cond is false: the case fails with msg.
export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function report() {
  const out = [];
  for (const ex of exchanges.slice(-3)) {
    const r = ex.response ? { ...ex.response } : null;
    if (r && r.body && typeof r.body.then === "function") {
      r.body = cut(await Promise.race([r.body, new Promise((ok) => setTimeout(() => ok("(body still streaming)"), 2000))]));
    }
    out.push({ request: ex.request, response: r });
  }
  return out;
}

// run prints the plan {client, plan: [case names]}, then runs each [name, fn]
// case in order and prints its line; the exit status is 1 when any case failed.
export async function run(client, cases) {
  process.stdout.write(JSON.stringify({ client, plan: cases.map(([name]) => name) }) + "\n");
  let failed = 0;
  for (const [name, fn] of cases) {
    exchanges = [];
    const line = { client, case: name, ok: true, error: null };
    try {
      await fn();
    } catch (e) {
      failed++;
      line.ok = false;
      line.error = String(e && e.stack ? e.stack : e).slice(0, LIMIT);
      line.exchanges = await report();
    }
    process.stdout.write(JSON.stringify(line) + "\n");
  }
  process.exitCode = failed ? 1 : 0;
}
