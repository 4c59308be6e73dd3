'use strict';
// The npm `memcached` client through the matrix scenario (memcached pools).
// CONFIG_JSON: {"addr", "prefix", "opts": options for new Memcached()}.
const { cfg, eq, assert, check, restart, retry, done } = require('./common');

let Memcached;
try {
  Memcached = require('memcached');
} catch (e) {
  console.error(`cannot load memcached: ${e.message} (test/scripts/deps.sh installs it: npm ci in test/clients/node)`);
  process.exit(3);
}
const p = cfg.prefix;

function call(mc, method, ...args) {
  return new Promise((res, rej) => mc[method](...args, (err, v) => (err ? rej(err) : res(v))));
}

async function main() {
  const mc = new Memcached(cfg.addr, cfg.opts || {});
  const connected = await check('connect', async () => {
    const v = await call(mc, 'version');
    assert(`version gave ${JSON.stringify(v)}`, Array.isArray(v) && v.length === 1 && v[0].version);
    return { version: v[0].version };
  });
  if (!connected) { mc.end(); return; }

  await check('strings', async () => {
    eq('set', await call(mc, 'set', `${p}:a`, 'hello', 0), true);
    eq('get', await call(mc, 'get', `${p}:a`), 'hello');
    eq('get missing', await call(mc, 'get', `${p}:nokey`), undefined);
    eq('add existing', await call(mc, 'add', `${p}:a`, 'x', 0).catch(e => e.notStored ? 'not stored' : e.message), 'not stored');
    eq('append', await call(mc, 'append', `${p}:a`, ' world'), true);
    eq('get after append', await call(mc, 'get', `${p}:a`), 'hello world');
    eq('delete', await call(mc, 'del', `${p}:a`), true);
    eq('get after delete', await call(mc, 'get', `${p}:a`), undefined);
    eq('delete missing', await call(mc, 'del', `${p}:a`), false);
  });

  await check('incr', async () => {
    eq('set', await call(mc, 'set', `${p}:n`, '10', 0), true);
    eq('incr', await call(mc, 'incr', `${p}:n`, 5), 15);
    eq('decr', await call(mc, 'decr', `${p}:n`, 3), 12);
    eq('incr missing', await call(mc, 'incr', `${p}:none`, 1), false);
  });

  await check('mget', async () => {
    const keys = [], want = {};
    for (let i = 0; i < 50; i++) {
      keys.push(`${p}:m:${i}`);
      if (i % 3) {
        want[`${p}:m:${i}`] = `v${i}`;
        await call(mc, 'set', `${p}:m:${i}`, `v${i}`, 0);
      }
    }
    const got = await call(mc, 'getMulti', keys);
    const sorted = o => Object.fromEntries(Object.entries(o).sort());
    eq('getMulti (misses absent)', sorted(got), sorted(want));
  });

  await check('error', async () => {
    await call(mc, 'set', `${p}:notint`, 'abc', 0);
    let err;
    try {
      const v = await call(mc, 'incr', `${p}:notint`, 1);
      throw new Error(`incr on a non-numeric value gave ${JSON.stringify(v)}, want an error`);
    } catch (e) { err = e; }
    assert(`incr on a non-numeric value: error ${JSON.stringify(err.message)}, want CLIENT_ERROR ...non-numeric...`,
      /non-numeric/.test(err.message));
    eq('get after the error', await call(mc, 'get', `${p}:notint`), 'abc');
  });

  await restart();
  await check('restart', async () => retry(async () => {
    for (let i = 0; i < 10; i++) eq('set after the restart', await call(mc, 'set', `${p}:r:${i}`, 'after', 0), true);
    const keys = Array.from({ length: 10 }, (_, i) => `${p}:r:${i}`);
    eq('getMulti after the restart', Object.keys(await call(mc, 'getMulti', keys)).length, 10);
  }), 10000);

  mc.end();
}

main().catch(e => { console.error(e); process.exitCode = 2; }).finally(done);
