'use strict';
// node-redis (the npm `redis` package) through the matrix scenario.
// CONFIG_JSON: {"module": "redis4"|"redis6", "addr", "prefix", "opts": options
// merged into createClient's, "expectProto": 2|3}.
const { cfg, host, port, eq, assert, check, restart, retry, done, mgetKeys, timeout } = require('./common');

let redis;
try {
  redis = require(cfg.module);
} catch (e) {
  console.error(`cannot load ${cfg.module}: ${e.message} (test/scripts/deps.sh installs it: npm ci in test/clients/node)`);
  process.exit(3);
}
const v6 = cfg.module !== 'redis4';
const p = cfg.prefix;

async function main() {
  const client = redis.createClient({
    socket: { host, port, connectTimeout: 2000 },
    ...(cfg.opts || {}),
  });
  let lastError;
  client.on('error', e => { lastError = e; });
  const connected = await check('connect', async () => {
    try {
      // connect() waits for the handshake (HELLO 3 in RESP3); node-redis
      // retries a refused handshake, so give up after a while.
      await timeout(client.connect(), 4000, 'connect and handshake');
    } catch (e) {
      throw new Error(`${e.message}${lastError && lastError !== e ? `; last error: ${lastError.message}` : ''}`);
    }
    eq('PING', await client.ping(), 'PONG');
  });
  if (!connected) {
    // A failed connect leaves node-redis reconnecting: give up here.
    if (lastError) console.error('last client error:', lastError.message);
    client.disconnect().catch(() => {});
    return;
  }

  await check('strings', async () => {
    eq('SET', await client.set(`${p}:s`, 'hello'), 'OK');
    eq('GET', await client.get(`${p}:s`), 'hello');
    eq('GET missing', await client.get(`${p}:nokey`), null);
    eq('APPEND', await client.append(`${p}:s`, ' world'), 11);
    eq('GET after APPEND', await client.get(`${p}:s`), 'hello world');
    eq('INCR new', await client.incr(`${p}:n`), 1);
    eq('INCR', await client.incr(`${p}:n`), 2);
  });

  await check('hash', async () => {
    eq('HSET', await client.hSet(`${p}:h`, { f1: 'v1', f2: 'v2', f3: '3' }), 3);
    const h = await client.hGetAll(`${p}:h`);
    assert(`HGETALL gave ${typeof h} ${JSON.stringify(h)}, want a plain object`,
      h !== null && typeof h === 'object' && !Array.isArray(h) && !(h instanceof Map));
    eq('HGETALL', { ...h }, { f1: 'v1', f2: 'v2', f3: '3' });
    eq('HGET', await client.hGet(`${p}:h`, 'f2'), 'v2');
  });

  await check('proto', async () => {
    // The raw reply of HGETALL: a RESP3 map (an object) or a RESP2 array.
    const raw = await client.sendCommand(['HGETALL', `${p}:h`]);
    const got = Array.isArray(raw) ? 2 : 3;
    if (got === 3 && v6) {
      // With a Map type mapping node-redis 6 hands back the map itself.
      const m = await client.withTypeMapping({ [redis.RESP_TYPES.MAP]: Map }).hGetAll(`${p}:h`);
      assert(`RESP3 HGETALL with a Map type mapping gave ${JSON.stringify(m)}, want a Map`, m instanceof Map);
      eq('HGETALL as a Map', [...m.entries()].sort(), [['f1', 'v1'], ['f2', 'v2'], ['f3', '3']]);
    }
    eq('protocol (RESP2: HGETALL is an array; RESP3: a map)', got, cfg.expectProto);
    return { proto: got };
  });

  await check('mget', async () => {
    const { keys, want } = mgetKeys(p);
    const sets = [];
    keys.forEach((k, i) => { if (want[i] !== null) sets.push(client.set(k, want[i])); });
    await Promise.all(sets);
    eq('MGET', await client.mGet(keys), want);
  });

  await check('pipeline', async () => {
    // Not MULTI: 100 commands written without waiting for replies (node-redis
    // pipelines the commands of one tick).
    const cmds = [];
    for (let i = 0; i < 50; i++) cmds.push(client.set(`${p}:p:${i}`, `pv${i}`));
    for (let i = 0; i < 50; i++) cmds.push(client.get(`${p}:p:${i}`));
    const r = await Promise.all(cmds);
    eq('pipeline replies', r, [...Array(50).fill('OK'), ...Array.from({ length: 50 }, (_, i) => `pv${i}`)]);
  });

  await check('error', async () => {
    await client.set(`${p}:notint`, 'abc');
    let err;
    try {
      const v = await client.incr(`${p}:notint`);
      throw new Error(`INCR on a non-integer gave ${JSON.stringify(v)}, want an error`);
    } catch (e) { err = e; }
    assert(`INCR on a non-integer: error ${JSON.stringify(err.message)}, want "ERR value is not an integer..."`,
      /^ERR value is not an integer/.test(err.message));
    eq('PING after the error', await client.ping(), 'PONG');
    eq('GET after the error', await client.get(`${p}:notint`), 'abc');
  });

  await restart();
  await check('restart', async () => retry(async () => {
    const keys = [];
    for (let i = 0; i < 10; i++) keys.push(`${p}:r:${i}`);
    await Promise.all(keys.map(k => client.set(k, 'after')));
    eq('MGET after the restart', await client.mGet(keys), Array(10).fill('after'));
  }), 10000);

  await client.quit().catch(() => {});
}

main().catch(e => { console.error(e); process.exitCode = 2; }).finally(done);
