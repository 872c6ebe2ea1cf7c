// Celery's rate_limit, enforced across all workers together (Celery limits per worker): three workers
// keep a '10/s' task within 10 % of 10 starts per second, and the backlog waits in Redis, not memory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { useRedis } from './helpers/setup.js';
import { spawnWorker, startWorker } from './helpers/daemon.js';
import { rateInterval } from '../workers/registry.js';

const env = useRedis();
const RATED = fileURLToPath(new URL('../../test/fixtures/tasks/rated.js', import.meta.url));

test('three workers together keep a 10/s task within 10 % of 10 starts per second', async () => {
  const workers = await Promise.all([1, 2, 3].map(() => startWorker({ url: env.redis.url, app: RATED, concurrency: 2 })));
  try {
    const N = 41;
    const results = await env.client.sendMany(Array.from({ length: N }, () => ({ name: 'rated.tick' })));
    // The backlog waits for its slots in the ETA set, not in the workers.
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await env.raw.zcard('celeriac:eta')) >= 20, 'most of the backlog waits in Redis');
    // A task without a limit, sent while that backlog waits, is not held back by it.
    const freeSent = Date.now();
    const freeStart = (await (await env.client.send('rated.free', [])).get({ timeout: 5000 })) as number;
    assert.ok(freeStart - freeSent < 1000, `the unlimited task started ${freeStart - freeSent} ms after it was sent`);
    const starts = ((await Promise.all(results.map((r) => r.get({ timeout: 20_000 })))) as number[]).sort((a, b) => a - b);
    assert.ok(freeStart < (starts.at(-1) as number) - 1000, 'well before the limited backlog was done');
    const rate = (N - 1) / (((starts.at(-1) as number) - (starts[0] as number)) / 1000);
    assert.ok(rate >= 9 && rate <= 11, `starts per second: ${rate.toFixed(2)}`);
    const ran = workers.map((w) => w.events('task:succeeded').length);
    assert.ok(ran.filter((n) => n > 0).length >= 2, `the work was shared: ${ran.join(', ')}`);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
});

test('rate limits use Celery\'s syntax; a bad one stops the worker from starting with a clear message', async () => {
  assert.equal(rateInterval('t', '10/s'), 100);
  assert.equal(rateInterval('t', '100/m'), 600);
  assert.equal(rateInterval('t', '1000/h'), 3600);
  assert.equal(rateInterval('t', 4), 250);
  assert.throws(() => rateInterval('t', '10/d'), /rateLimit must look like/);
  const worker = spawnWorker({ url: env.redis.url, app: fileURLToPath(new URL('../../test/fixtures/tasks/bad-rate.js', import.meta.url)) });
  const exit = await worker.exited;
  assert.equal(exit.code, 1);
  assert.match(worker.stderr, /rateLimit must look like/);
});
