'use strict';
// ioredis through the matrix scenario. CONFIG_JSON: {"module": "ioredis5"|
// "ioredis6", "addr", "prefix", "opts": options merged into new Redis()'s,
// "expectProto": 2|3, "expectVersion": the backends' redis_version}.
const { cfg, host, port, eq, assert, check, restart, retry, done, mgetKeys, timeout } = require('./common');

let Redis;
try {
  Redis = require(cfg.module);
} catch (e) {
  console.error(`cannot load ${cfg.module}: ${e.message} (test/scripts/deps.sh installs it: npm ci in test/clients/node)`);
  process.exit(3);
}
const opts = cfg.opts || {};
const p = cfg.prefix;

async function main() {
  const redis = new Redis({ host, port, connectTimeout: 2000, ...opts });
  let lastError;
  redis.on('error', e => { lastError = e; });
  const connected = await check('connect', async () => {
    // enableReadyCheck (on by default) sends INFO and parses it before
    // 'ready'; with ioredis 6 a HELLO 3 comes first.
    if (redis.status !== 'ready') {
      await timeout(new Promise(res => redis.once('ready', res)), 4000, 'ready event')
        .catch(e => { throw new Error(`${e.message}${lastError ? `; last error: ${lastError.message}` : ''}`); });
    }
    eq('PING', await redis.ping(), 'PONG');
  });
  if (!connected) {
    redis.disconnect();
    return;
  }

  await check('strings', async () => {
    eq('SET', await redis.set(`${p}:s`, 'hello'), 'OK');
    eq('GET', await redis.get(`${p}:s`), 'hello');
    eq('GET missing', await redis.get(`${p}:nokey`), null);
    eq('APPEND', await redis.append(`${p}:s`, ' world'), 11);
    eq('GET after APPEND', await redis.get(`${p}:s`), 'hello world');
    eq('INCR new', await redis.incr(`${p}:n`), 1);
    eq('INCR', await redis.incr(`${p}:n`), 2);
  });

  await check('hash', async () => {
    eq('HSET', await redis.hset(`${p}:h`, { f1: 'v1', f2: 'v2', f3: '3' }), 3);
    const h = await redis.hgetall(`${p}:h`);
    assert(`HGETALL gave ${JSON.stringify(h)}, want an object`,
      h !== null && typeof h === 'object' && !Array.isArray(h));
    eq('HGETALL', { ...h }, { f1: 'v1', f2: 'v2', f3: '3' });
    eq('HGET', await redis.hget(`${p}:h`, 'f2'), 'v2');
  });

  await check('proto', async () => {
    // ioredis 6 records the protocol it negotiated (it falls back to RESP2
    // when HELLO 3 is refused); ioredis 5 speaks only RESP2.
    const got = (redis.condition && redis.condition.protocol) || 2;
    if (got === 3 && opts.replyMapping === 'resp3') {
      const raw = await redis.call('HGETALL', `${p}:h`);
      assert(`RESP3 HGETALL with replyMapping "resp3" gave ${JSON.stringify(raw)}, want an object`,
        raw !== null && typeof raw === 'object' && !Array.isArray(raw));
      eq('raw HGETALL', { ...raw }, { f1: 'v1', f2: 'v2', f3: '3' });
    }
    eq('negotiated protocol', got, cfg.expectProto);
    return { proto: got };
  });

  await check('mget', async () => {
    const { keys, want } = mgetKeys(p);
    await Promise.all(keys.filter((k, i) => want[i] !== null).map(k => redis.set(k, want[keys.indexOf(k)])));
    eq('MGET', await redis.mget(keys), want);
  });

  await check('pipeline', async () => {
    const pl = redis.pipeline();
    for (let i = 0; i < 50; i++) pl.set(`${p}:p:${i}`, `pv${i}`);
    for (let i = 0; i < 50; i++) pl.get(`${p}:p:${i}`);
    const r = await pl.exec();
    const errs = r.filter(([e]) => e);
    assert(`pipeline errors: ${errs.map(([e]) => e.message).join('; ')}`, errs.length === 0);
    eq('pipeline replies', r.map(([, v]) => v), [...Array(50).fill('OK'), ...Array.from({ length: 50 }, (_, i) => `pv${i}`)]);
  });

  await check('error', async () => {
    await redis.set(`${p}:notint`, 'abc');
    let err;
    try {
      const v = await redis.incr(`${p}:notint`);
      throw new Error(`INCR on a non-integer gave ${JSON.stringify(v)}, want an error`);
    } catch (e) { err = e; }
    assert(`INCR on a non-integer: error ${JSON.stringify(err.message)}, want "ERR value is not an integer..."`,
      /^ERR value is not an integer/.test(err.message) && err.name === 'ReplyError');
    eq('PING after the error', await redis.ping(), 'PONG');
    eq('GET after the error', await redis.get(`${p}:notint`), 'abc');
  });

  await check('info', async () => {
    // INFO through ioredis's own parser: the one its ready check uses.
    const raw = await redis.info();
    assert(`INFO gave ${JSON.stringify(String(raw).slice(0, 200))}, want a redis_version line`,
      /(^|\r\n)redis_version:/.test(raw));
    const info = await new Promise((res, rej) => redis._readyCheck((e, i) => (e ? rej(e) : res(i))));
    eq('redis_version parsed by the ready check', info.redis_version, cfg.expectVersion);
    return { redis_version: info.redis_version };
  });

  await restart();
  await check('restart', async () => retry(async () => {
    const keys = [];
    for (let i = 0; i < 10; i++) keys.push(`${p}:r:${i}`);
    await Promise.all(keys.map(k => redis.set(k, 'after')));
    eq('MGET after the restart', await redis.mget(keys), Array(10).fill('after'));
  }), 10000);

  await redis.quit().catch(() => {});
}

main().catch(e => { console.error(e); process.exitCode = 2; }).finally(done);
