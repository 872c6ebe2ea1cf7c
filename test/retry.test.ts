// Celery's retries: a task retries itself (same id, retries + 1, RETRY stored meanwhile), automatic
// retries with backoff stop at max retries with the original error, and the re-published message is
// Celery's own, so a Python worker continues a retry ours started and the other way round.

import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { useRedis } from './helpers/setup.js';
import { startWorker } from './helpers/daemon.js';
import { python, startCeleryWorker } from './helpers/celery.js';
import { TaskFailedError } from '../src/errors.js';
import { autoretryCountdown, defineTask } from '../workers/registry.js';

const env = useRedis();
const FAULTS = fileURLToPath(new URL('../../test/fixtures/tasks/faults.js', import.meta.url));

test('self.retry() runs the task again under the same id with retries + 1, storing RETRY in between', async () => {
  const worker = await startWorker({ url: env.redis.url });
  try {
    const r = await env.client.send('celery_app.tasks.flaky', [2, 0.3]);
    await worker.waitFor((l) => l.event === 'task:retried' && l.retries === 1, 10_000, 'the first retry');
    const between = await env.client.result(r.id).meta();
    assert.equal(between?.status, 'RETRY');
    assert.deepEqual((between?.result as Record<string, unknown>).exc_type, 'ValueError');
    assert.equal(await r.get({ timeout: 15_000 }), 'js finished at retry 2');
    assert.equal(worker.events('task:retried').filter((l) => l.task_id === r.id).length, 2);
  } finally {
    await worker.stop();
  }
});

test('automatic retries back off exponentially and end with the original error after max retries', async () => {
  const worker = await startWorker({ url: env.redis.url });
  try {
    const started = Date.now();
    const r = await env.client.send('celery_app.tasks.unreliable', ['db down']);
    const err = await r.get({ timeout: 15_000 }).then(
      () => assert.fail('it succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TaskFailedError);
    assert.equal(err.name, 'ValueError');
    assert.equal(err.message, 'db down');
    const retries = worker.events('task:retried').filter((l) => l.task_id === r.id);
    assert.deepEqual(retries.map((l) => l.retries), [1, 2]);
    // Backoff 0.2 s then 0.4 s (no jitter): each retry is due that long after it was published.
    const delays = retries.map((l) => Date.parse(String(l.eta)) - Date.parse(String(l.time)));
    assert.ok(Math.abs((delays[0] as number) - 200) < 60 && Math.abs((delays[1] as number) - 400) < 60, `exponential: ${delays.join(', ')} ms`);
    assert.ok(Date.now() - started >= 600, `waited the backoff (${Date.now() - started} ms)`);
    await worker.waitFor((l) => l.event === 'task:failed' && l.task_id === r.id, 5000, 'the failure line');
    assert.equal(worker.events('task:failed').filter((l) => l.task_id === r.id).length, 1, 'failed once, after the two retries');
  } finally {
    await worker.stop();
  }
});

test('past max retries, a retry without an exception fails with MaxRetriesExceededError naming the arguments, big integers included', async () => {
  const worker = await startWorker({ url: env.redis.url, app: FAULTS });
  try {
    const r = await env.client.send('faults.retry_refused', [2n ** 70n], { tag: 'x' });
    const err = await r.get({ timeout: 10_000 }).then(
      () => assert.fail('it succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TaskFailedError);
    assert.equal(err.name, 'MaxRetriesExceededError');
    assert.equal(err.message, `Can't retry faults.retry_refused[${r.id}] args:[1180591620717411303424] kwargs:{"tag":"x"}`);
  } finally {
    await worker.stop();
  }
});

test('backoff doubles up to retryBackoffMax; jitter draws from 0 to it; maxRetries null retries past 3', async () => {
  const plain = defineTask('test.retry.plain', { retryBackoff: 1, retryBackoffMax: 5, retryJitter: false }, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => autoretryCountdown(plain, n)), [1, 2, 4, 5, 5]);
  const jittered = defineTask('test.retry.jittered', { retryBackoff: 1, retryBackoffMax: 5 }, () => 1);
  const draws = Array.from({ length: 200 }, () => autoretryCountdown(jittered, 2));
  assert.ok(draws.every((d) => d >= 0 && d <= 4), 'within [0, 4]');
  assert.ok(Math.max(...draws) > 3 && Math.min(...draws) < 1, `spread over the range: ${Math.min(...draws)}..${Math.max(...draws)}`);

  const worker = await startWorker({ url: env.redis.url, app: FAULTS });
  try {
    const r = await env.client.send('faults.retry_forever', [5]);
    assert.equal(await r.get({ timeout: 15_000 }), 'done after 5 retries');
  } finally {
    await worker.stop();
  }
});

test('a Python worker continues a retry our worker started', async () => {
  await env.raw.flushall();
  const ours = await startWorker({ url: env.redis.url });
  const r = await env.client.send('celery_app.tasks.flaky', [2, 2]);
  await ours.waitFor((l) => l.event === 'task:deferred' && l.task_id === r.id, 10_000, 'our retry to be parked until due');
  await ours.stop();
  // Our ETA set is promoted only by celeriac workers: hand the parked retry to the Python worker as is.
  const [member] = await env.raw.zrange('celeriac:eta', '0', '0');
  assert.ok(member);
  await env.raw.multi().zrem('celeriac:eta', member).lpush('celery', member.slice(member.indexOf('\n') + 1)).exec();
  const py = await startCeleryWorker(env.redis.url);
  try {
    assert.equal(await r.get({ timeout: 20_000 }), 'python finished at retry 2');
  } finally {
    await py.stop();
  }
});

test('our worker continues a retry a Python worker started', async () => {
  await env.raw.flushall();
  const py = await startCeleryWorker(env.redis.url);
  const id = (await python(`from celery_app.tasks import flaky\nprint(flaky.delay(2, 3).id)`, env.redis.url)).trim();
  await py.waitForOutput(/Retry in 3s/, 15_000);
  // A warm shutdown hands the reserved retry back to the queue.
  await py.stop();
  assert.equal(await env.raw.llen('celery'), 1);
  const ours = await startWorker({ url: env.redis.url });
  try {
    assert.equal(await env.client.result(id).get({ timeout: 20_000 }), 'js finished at retry 2');
    const runs = ours.events('task:received').filter((l) => l.task_id === id);
    assert.deepEqual([...new Set(runs.map((l) => l.retries))], [1, 2], 'ours ran retries 1 and 2');
  } finally {
    await ours.stop();
  }
});
