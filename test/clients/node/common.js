'use strict';
// Shared by the client scripts of test/integration/client_matrix_test.go.
//
// A script is run as `node SCRIPT.js CONFIG_JSON`; CONFIG_JSON holds at
// least {"addr": "host:port", "prefix": "...", "opts": {...}}. It prints one
// JSON line per check: {"check": NAME, "ok": true} or {"check": NAME,
// "ok": false, "error": "..."}; before the restart check it prints
// {"event": "restart"} and waits for a line on stdin (the Go test restarts
// a backend meanwhile). It ends with {"event": "done"} and exits 1 if any
// check failed.
const readline = require('readline');

const cfg = JSON.parse(process.argv[2] || '{}');
const [host, portStr] = cfg.addr.split(':');
const port = Number(portStr);
let failed = 0;

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function fmt(v) {
  if (v instanceof Map) return 'Map(' + JSON.stringify([...v.entries()]) + ')';
  if (Buffer.isBuffer(v)) return 'Buffer(' + JSON.stringify(v.toString()) + ')';
  try { return JSON.stringify(v); } catch (e) { return String(v); }
}

class Mismatch extends Error {}

function eq(what, got, want) {
  if (fmt(got) !== fmt(want)) throw new Mismatch(`${what}: got ${fmt(got)}, want ${fmt(want)}`);
}

function assert(what, cond) { if (!cond) throw new Mismatch(what); }

function timeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: no answer after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// check runs fn and reports it; a failure is reported and counted, and the
// script goes on with the next check.
async function check(name, fn, ms = 5000) {
  try {
    const detail = await timeout(Promise.resolve().then(fn), ms, name);
    emit(detail === undefined ? { check: name, ok: true } : { check: name, ok: true, detail });
    return true;
  } catch (e) {
    failed++;
    emit({ check: name, ok: false, error: (e && e.message) || String(e) });
    return false;
  }
}

let lines;
function waitLine() {
  if (!lines) {
    const rl = readline.createInterface({ input: process.stdin });
    lines = rl[Symbol.asyncIterator]();
  }
  return lines.next();
}

// restart asks the Go test to restart a backend and waits until it has.
async function restart() {
  emit({ event: 'restart' });
  await waitLine();
}

// retry runs fn until it succeeds or ms pass; it returns how many attempts
// failed first.
async function retry(fn, ms = 8000) {
  const deadline = Date.now() + ms;
  let attempts = 0, last;
  for (;;) {
    try {
      await timeout(Promise.resolve().then(fn), 1000, 'attempt');
      return { failedAttempts: attempts };
    } catch (e) {
      last = e;
      attempts++;
      if (e instanceof Mismatch || Date.now() > deadline) {
        throw new Error(`not working ${ms} ms after the restart (${attempts} attempts): ${(last && last.message) || last}`);
      }
      await new Promise(r => setTimeout(r, 100));
    }
  }
}

function done() {
  emit({ event: 'done', failed });
  process.exit(failed ? 1 : 0);
}

// The MGET keys: 50 keys, every third missing.
function mgetKeys(prefix) {
  const keys = [], want = [];
  for (let i = 0; i < 50; i++) {
    keys.push(`${prefix}:m:${i}`);
    want.push(i % 3 === 0 ? null : `v${i}`);
  }
  return { keys, want };
}

module.exports = { cfg, host, port, emit, eq, assert, check, restart, retry, done, timeout, mgetKeys, fmt, Mismatch };
