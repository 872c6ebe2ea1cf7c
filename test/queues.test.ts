// Several queues and routing: a worker on `-Q a,b,c` wakes at once for any of them, drains them fairly
// (a long backlog on one does not starve the others), and the producer routes by call or by a task
// name → queue table (Celery's task_routes).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createClient, type Client } from '../src/index.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { startWorker } from './helpers/daemon.js';
import { startSlowProxy } from './helpers/proxy.js';

let redis: RedisServer;
let client: Client;

before(async () => {
  redis = await startRedis();
  client = createClient({ brokerUrl: redis.url, routes: { 'celery_app.tasks.mul': 'math' } });
});

after(async () => {
  await client?.close();
  await redis?.stop();
});

test('an idle worker on three queues runs a task sent to any of them at once', async () => {
  const worker = await startWorker({ url: redis.url, args: ['-Q', 'a,b,c'] });
  try {
    for (const queue of ['c', 'a', 'b', 'c', 'b']) {
      // Idle long enough for every wait to be blocking (a worker that polled the lists one after the
      // other, each for its 2 s timeout, would take seconds for some of these).
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      assert.equal(await (await client.send('celery_app.tasks.add', [1, 2], {}, { queue })).get({ timeout: 10_000 }), 3);
      const took = Date.now() - started;
      assert.ok(took < 1000, `a task on ${queue} waited ${took} ms`);
    }
  } finally {
    await worker.stop();
  }
});

test('a wait on a connection still being set up when the worker fills up never begins: nothing is taken past the prefetch bound', async () => {
  // Every idle wait but the first reaches Redis late: they are still connecting when the first task
  // arrives, so their ends are asked for before their client ids are known.
  const proxy = await startSlowProxy(redis.port, { match: ':wait', spare: 1, holdBackMs: 400 });
  const worker = await startWorker({ url: proxy.url, concurrency: 1, args: ['-Q', 'celery,other', '--prefetch-multiplier', '1'] });
  const raw = new Redis(redis.url);
  try {
    await raw.config('RESETSTAT');
    const first = await client.send('celery_app.tasks.sleep', [3]);
    await worker.waitFor((l) => l.event === 'task:received' && l.task_id === first.id, 10_000, 'the first task received');
    await client.send('celery_app.tasks.add', [1, 2], {}, { queue: 'other' });
    // Past the slow connections' set-up (a few round trips held back 400 ms each).
    await new Promise((r) => setTimeout(r, 2_000));
    assert.ok(proxy.slowed >= 3, `slowed ${proxy.slowed} connections`);
    assert.equal(await raw.llen('other'), 1, 'the task sent to the other queue waits there');
    assert.doesNotMatch(await raw.info('commandstats'), /cmdstat_rpush:/, 'no message was taken past the bound and handed back');
    assert.equal(worker.events('task:received').length, 1);
    assert.equal(await first.get({ timeout: 10_000 }), 3);
  } finally {
    raw.disconnect();
    await worker.stop();
    await proxy.close();
  }
});

test('a backlog on one queue does not starve the others', async () => {
  const backlog = await client.sendMany(Array.from({ length: 300 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 0], options: { queue: 'a' } })));
  const others = await client.sendMany(['b', 'c'].flatMap((queue) => Array.from({ length: 20 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 0], options: { queue } }))));
  const worker = await startWorker({ url: redis.url, concurrency: 1, args: ['-Q', 'a,b,c', '--prefetch-multiplier', '4'] });
  try {
    await Promise.all([...backlog, ...others].map((r) => r.get({ timeout: 30_000 })));
    const order = worker.events('task:succeeded').map((l) => String(l.task_id));
    const otherIds = new Set(others.map((r) => r.id));
    const lastOther = Math.max(...order.map((id, i) => (otherIds.has(id) ? i : -1)));
    // Fair turns: b and c are done while most of a's backlog still waits.
    assert.ok(lastOther < 200, `the last task of b and c finished at position ${lastOther} of ${order.length}`);
  } finally {
    await worker.stop();
  }
});

test('routes send a task name to its queue; a queue given with the call wins', async () => {
  await client.send('celery_app.tasks.mul', [6, 7]);
  await client.send('celery_app.tasks.mul', [1, 1], {}, { queue: 'c' });
  await client.send('celery_app.tasks.add', [1, 1]);
  assert.equal(await redis.cli('LLEN', 'math'), '1');
  assert.equal(await redis.cli('LLEN', 'c'), '1');
  assert.equal(await redis.cli('LLEN', 'celery'), '1');
  const worker = await startWorker({ url: redis.url, args: ['-Q', 'math'] });
  try {
    const r = await client.send('celery_app.tasks.mul', [6, 7]);
    assert.equal(await r.get({ timeout: 10_000 }), 42);
    assert.equal(await redis.cli('LLEN', 'math'), '0', 'both math tasks ran');
  } finally {
    await worker.stop();
  }
});
