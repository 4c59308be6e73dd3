'use strict';
// A BullMQ producer and workers through nuthatch, for
// test/integration/bullmq_test.go.
//
// node bullmq_queue.js CONFIG_JSON, CONFIG_JSON = {"addr": "host:port",
// "jobs": N, "prefix": "{bq}", "queue": "q", "workers": W,
// "concurrency": C, "rate": jobs per second}.
//
// It adds N jobs (ids job-0 .. job-N-1) at the given rate while W workers
// process them; every job returns its number. It prints JSON lines:
// {"event":"progress","completed":k} now and then (the Go test kills a
// nuthatch worker and reloads nuthatch meanwhile), {"event":"error",...}
// for each error a client reported, and at the end {"event":"result",...}
// with the completed, failed and still pending jobs, the numbers returned
// (each must be once), and how often a processor ran (a job whose
// completion was lost with a connection runs again: at-least-once).
const { Queue, Worker } = require('bullmq');

const cfg = JSON.parse(process.argv[2] || '{}');
const [host, portStr] = cfg.addr.split(':');
const connection = {
  host, port: Number(portStr),
  maxRetriesPerRequest: null, // BullMQ workers require it
  enableOfflineQueue: true,
  retryStrategy: (n) => Math.min(50 * n, 500),
};
const N = cfg.jobs || 1000;
const prefix = cfg.prefix || '{bq}';
const name = cfg.queue || 'q';
const errors = {};

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function noteError(who, err) {
  const msg = `${who}: ${err && err.message ? err.message : err}`;
  if (!errors[msg]) emit({ event: 'error', error: msg });
  errors[msg] = (errors[msg] || 0) + 1;
}

async function main() {
  const queue = new Queue(name, { connection, prefix });
  queue.on('error', (e) => noteError('queue', e));
  const runs = new Map(); // job number -> processor runs
  const workers = [];
  let completed = 0;
  for (let w = 0; w < (cfg.workers || 2); w++) {
    const worker = new Worker(name, async (job) => {
      const i = job.data.i;
      runs.set(i, (runs.get(i) || 0) + 1);
      await new Promise((r) => setTimeout(r, 1));
      return i;
    }, { connection, prefix, concurrency: cfg.concurrency || 8, stalledInterval: 5000, lockDuration: 10000 });
    worker.on('error', (e) => noteError(`worker${w}`, e));
    worker.on('failed', (job, e) => noteError(`job ${job && job.id} failed`, e));
    worker.on('completed', () => {
      completed++;
      if (completed % 100 === 0) emit({ event: 'progress', completed });
    });
    workers.push(worker);
  }

  // Produce at the given rate, in batches; an add that fails is retried
  // with the same id, so it cannot make a second job.
  const rate = cfg.rate || 500;
  const batch = 10;
  const start = Date.now();
  for (let i = 0; i < N; i += batch) {
    const jobs = [];
    for (let j = i; j < Math.min(N, i + batch); j++) {
      jobs.push({ name: 'work', data: { i: j }, opts: { jobId: `job-${j}`, attempts: 5, removeOnComplete: false, removeOnFail: false } });
    }
    for (;;) {
      try {
        await queue.addBulk(jobs);
        break;
      } catch (e) {
        noteError('addBulk', e);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const ahead = (i + batch) / rate * 1000 - (Date.now() - start);
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }
  emit({ event: 'produced', jobs: N, ms: Date.now() - start });

  // Wait until every job is finished (or the deadline).
  const deadline = Date.now() + (cfg.waitMs || 60000);
  let counts;
  for (;;) {
    try {
      counts = await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed', 'prioritized', 'paused', 'waiting-children');
      if (counts.completed + counts.failed >= N || Date.now() > deadline) break;
    } catch (e) {
      noteError('getJobCounts', e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const elapsed = Date.now() - start;
  await Promise.all(workers.map((w) => w.close()));

  // What each completed job returned: every number exactly once.
  const seen = new Map();
  const pageSize = 1000;
  for (let from = 0; from < counts.completed; from += pageSize) {
    const jobs = await queue.getJobs(['completed'], from, from + pageSize - 1);
    for (const job of jobs) {
      const v = job.returnvalue;
      seen.set(v, (seen.get(v) || 0) + 1);
    }
  }
  const missing = [];
  const duplicated = [];
  for (let i = 0; i < N; i++) {
    const n = seen.get(i) || 0;
    if (n === 0) missing.push(i);
    if (n > 1) duplicated.push(i);
  }
  let reruns = 0;
  for (const n of runs.values()) reruns += n - 1;
  emit({
    event: 'result', jobs: N, ms: elapsed, counts,
    returned: seen.size, missing: missing.slice(0, 20), missingCount: missing.length,
    duplicated: duplicated.slice(0, 20), duplicatedCount: duplicated.length,
    processorRuns: [...runs.values()].reduce((a, b) => a + b, 0), reruns, errors,
  });
  await queue.close();
}

main().then(() => process.exit(0), (e) => {
  emit({ event: 'fatal', error: String(e && e.stack || e) });
  process.exit(1);
});
