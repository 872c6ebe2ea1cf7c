// Our producer → a Python Celery worker, and a mixed fleet (one Python worker, one of ours) sharing a
// queue where every task is answered exactly once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TaskFailedError } from '../src/index.js';
import { useRedis } from './helpers/setup.js';
import { startWorker } from './helpers/daemon.js';
import { startCeleryWorker, type CeleryWorker } from './helpers/celery.js';

const env = useRedis();

test('a Python worker runs what our producer sends', async (t) => {
  const py: CeleryWorker = await startCeleryWorker(env.redis.url);
  t.after(() => py.stop());
  assert.equal(await (await env.client.send('celery_app.tasks.add', [10, 20])).get({ timeout: 10_000 }), 30);
  assert.equal(await (await env.client.send('celery_app.tasks.add', [], { x: 1, y: 2 })).get({ timeout: 10_000 }), 3);
  const big = 2n ** 70n;
  const echoed = await (await env.client.send('celery_app.tasks.echo', ['héllo ✓', [1, { k: null }], big, 1.5, true, null], { ключ: '值' })).get({ timeout: 10_000 });
  assert.deepEqual(echoed, { args: ['héllo ✓', [1, { k: null }], big, 1.5, true, null], kwargs: { ключ: '值' } });
  const err = await (await env.client.send('celery_app.tasks.fail', ['from python'])).get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof TaskFailedError);
  assert.equal(err.name, 'ValueError');
  assert.equal(err.excModule, 'builtins');
  assert.equal(err.message, 'from python');
  assert.match(String(err.remoteTraceback), /raise ValueError\(message\)/);
  const t0 = Date.now();
  assert.equal(await (await env.client.send('celery_app.tasks.mul', [6, 7], {}, { countdown: 1, queue: 'celery' })).get({ timeout: 10_000 }), 42);
  assert.ok(Date.now() - t0 >= 900, 'the Python worker honoured our eta');
  assert.equal(await (await env.client.send('celery_app.tasks.add', [1, 2], {}, { priority: 9 })).get({ timeout: 10_000 }), 3);
});

test('a mixed fleet on one queue answers each of 1,000 tasks exactly once', async (t) => {
  await env.redis.cli('FLUSHALL');
  const py = await startCeleryWorker(env.redis.url);
  t.after(() => py.stop());
  const ours = await startWorker({ url: env.redis.url, concurrency: 2 });
  t.after(() => ours.stop());
  const results = await env.client.sendMany(Array.from({ length: 1000 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, i] })));
  const values = await Promise.all(results.map((r) => r.get({ timeout: 60_000 })));
  assert.deepEqual(values, Array.from({ length: 1000 }, (_, i) => 2 * i));

  await new Promise((r) => setTimeout(r, 500));
  const byUs = ours.events('task:succeeded').map((l) => String(l.task_id));
  const byPython = py.succeededIds();
  const all = [...byUs, ...byPython];
  assert.equal(new Set(all).size, all.length, 'no task ran twice');
  assert.deepEqual(new Set(all), new Set(results.map((r) => r.id)), 'every task ran');
  assert.ok(byUs.length > 0 && byPython.length > 0, `both workers took part (ours ${byUs.length}, Python ${byPython.length})`);
});
