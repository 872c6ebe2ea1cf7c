// Our producer → our worker: results stored in Celery's format, acked only with the result, failures
// carried as Python-readable exceptions, and the client's waiting behaviour.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, TaskFailedError, TimeoutError, type Client } from '../src/index.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { startWorker, type WorkerProcess } from './helpers/daemon.js';

let redis: RedisServer;
let worker: WorkerProcess;
let client: Client;
const hostname = `fetch-ack-${process.pid}@test`;

before(async () => {
  redis = await startRedis();
  worker = await startWorker({ url: redis.url, hostname, concurrency: 2 });
  client = createClient({ brokerUrl: redis.url });
});

after(async () => {
  await client?.close();
  await worker?.stop();
  await redis?.stop();
});

test('a task runs and its result is stored as Celery stores it, with the default expiry', async () => {
  const r = await client.send('celery_app.tasks.add', [10, 20]);
  assert.equal(await r.get({ timeout: 10_000 }), 30);
  const meta = JSON.parse(await redis.cli('GET', `celery-task-meta-${r.id}`)) as Record<string, unknown>;
  assert.equal(meta.status, 'SUCCESS');
  assert.equal(meta.result, 30);
  assert.equal(meta.task_id, r.id);
  assert.match(String(meta.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
  const ttl = Number(await redis.cli('TTL', `celery-task-meta-${r.id}`));
  assert.ok(ttl > 86_000 && ttl <= 86_400, `ttl ${ttl}`);
  assert.equal(await redis.cli('LLEN', `celeriac:processing:${hostname}:celery`), '0', 'acked: nothing left in the processing list');
});

test('the task handle, kwargs bound by name and a bound task see what was sent', async () => {
  assert.equal(await (await client.task('celery_app.tasks.mul').delay(6, 7)).get({ timeout: 10_000 }), 42);
  assert.equal(await (await client.send('celery_app.tasks.add', [1], { y: 2 })).get({ timeout: 10_000 }), 3);
  const r = await client.send('celery_app.tasks.whoami', [1, 'two'], { three: 3 }, { taskId: 'my-task-id' });
  assert.equal(r.id, 'my-task-id');
  assert.deepEqual(await r.get({ timeout: 10_000 }), { id: 'my-task-id', task: 'celery_app.tasks.whoami', retries: 0, hostname, args: [1, 'two'], kwargs: { three: 3 } });
});

test('a failing task rejects get() with its exception type, message and stack', async () => {
  const r = await client.send('celery_app.tasks.fail', ['it broke']);
  const err = await r.get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof TaskFailedError);
  assert.equal(err.code, 'E_TASK_FAILED');
  assert.equal(err.name, 'ValueError');
  assert.equal(err.excModule, 'builtins');
  assert.equal(err.message, 'it broke');
  assert.match(String(err.remoteTraceback), /celery_app\.js/);
  const unknownKw = await (await client.send('celery_app.tasks.add', [1, 2], { z: 3 })).get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(unknownKw instanceof TaskFailedError);
  assert.equal(unknownKw.name, 'TypeError');
  assert.match(unknownKw.message, /unexpected keyword argument 'z'/);
});

test('a result JSON cannot hold is an EncodeError; a thread that exits is a WorkerLostError; the worker goes on', async () => {
  const enc = await (await client.send('celery_app.tasks.unserializable')).get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(enc instanceof TaskFailedError);
  assert.equal(enc.name, 'EncodeError');
  assert.equal(enc.excModule, 'kombu.exceptions');
  const lost = await (await client.send('celery_app.tasks.crash')).get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(lost instanceof TaskFailedError);
  assert.equal(lost.name, 'WorkerLostError');
  assert.equal(await (await client.send('celery_app.tasks.add', [2, 3])).get({ timeout: 10_000 }), 5);
});

test('results outside ASCII are stored byte for byte', async () => {
  const text = 'héllo ☃ 日本 🎉';
  assert.equal(await (await client.send('celery_app.tasks.add', [text, '!'])).get({ timeout: 10_000 }), `${text}!`);
});

test('an ack finds the server without its scripts (restarted, flushed): the result is stored and the message acked', async () => {
  const noscript = async (): Promise<number> => Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(await redis.cli('INFO', 'errorstats'))?.[1] ?? 0);
  assert.equal(await (await client.send('celery_app.tasks.add', [1, 1])).get({ timeout: 10_000 }), 2);
  const before = await noscript();
  await redis.cli('SCRIPT', 'FLUSH');
  assert.equal(await (await client.send('celery_app.tasks.add', [2, 2])).get({ timeout: 10_000 }), 4);
  assert.ok((await noscript()) > before, 'the worker met NOSCRIPT');
  assert.equal(await (await client.send('celery_app.tasks.add', [3, 3])).get({ timeout: 10_000 }), 6);
  assert.equal(await redis.cli('LLEN', `celeriac:processing:${hostname}:celery`), '0');
});

test('ignore_result stores nothing and still acks', async () => {
  const r = await client.send('celery_app.tasks.add', [1, 1], {}, { ignoreResult: true });
  await worker.waitFor((l) => l.event === 'task:succeeded' && l.task_id === r.id);
  assert.equal(await redis.cli('EXISTS', `celery-task-meta-${r.id}`), '0');
  assert.equal(await redis.cli('LLEN', `celeriac:processing:${hostname}:celery`), '0');
});

test('get() times out with a TimeoutError and leaves no subscription behind', async () => {
  const r = client.result('no-such-task');
  const err = await r.get({ timeout: 200 }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof TimeoutError);
  assert.equal(err.code, 'E_TIMEOUT');
  assert.equal(client.subscriptions, 0);
  assert.equal(await redis.cli('PUBSUB', 'NUMSUB', 'celery-task-meta-no-such-task'), 'celery-task-meta-no-such-task\n0');
  const done = await client.send('celery_app.tasks.add', [1, 2]);
  await done.get({ timeout: 10_000 });
  assert.equal(await redis.cli('PUBSUB', 'CHANNELS', 'celery-task-meta-*'), '');
});

test('get() reads a result stored before it, and waiters for one id share a subscription that ends with them', async () => {
  const done = await client.send('celery_app.tasks.add', [4, 5]);
  await worker.waitFor((l) => l.event === 'task:succeeded' && l.task_id === done.id);
  assert.equal(await done.get({ timeout: 10_000 }), 9);

  const taskId = `shared-${process.pid}`;
  const waiting = [client.result(taskId).get({ timeout: 10_000 }), client.result(taskId).get({ timeout: 10_000 })];
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(client.subscriptions, 1);
  assert.equal(await redis.cli('PUBSUB', 'NUMSUB', `celery-task-meta-${taskId}`), `celery-task-meta-${taskId}\n1`);
  await client.send('celery_app.tasks.add', [2, 3], {}, { taskId });
  assert.deepEqual(await Promise.all(waiting), [5, 5]);
  assert.equal(client.subscriptions, 0);
  assert.equal(await redis.cli('PUBSUB', 'NUMSUB', `celery-task-meta-${taskId}`), `celery-task-meta-${taskId}\n0`);
});

test('get() on a key that holds no Celery result rejects and leaves no subscription behind', async () => {
  await redis.cli('SET', 'celery-task-meta-foreign', 'not a meta');
  await assert.rejects(client.result('foreign').get({ timeout: 1_000 }), /not a Celery result meta/);
  assert.equal(client.subscriptions, 0);
  assert.equal(await redis.cli('PUBSUB', 'NUMSUB', 'celery-task-meta-foreign'), 'celery-task-meta-foreign\n0');
});

test('sendMany sends in bulk and every task is answered once', async () => {
  const results = await client.sendMany(Array.from({ length: 500 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 1] })));
  const values = await Promise.all(results.map((r) => r.get({ timeout: 20_000 })));
  assert.deepEqual(values, Array.from({ length: 500 }, (_, i) => i + 1));
});

test('a countdown waits in the ETA set, not in the worker, then runs', async () => {
  const sent = Date.now();
  const r = await client.send('celery_app.tasks.add', [4, 4], {}, { countdown: 1.5 });
  await worker.waitFor((l) => l.event === 'task:deferred' && l.task_id === r.id);
  assert.equal(await redis.cli('ZCARD', 'celeriac:eta'), '1');
  assert.equal(await r.get({ timeout: 10_000 }), 8);
  assert.ok(Date.now() - sent >= 1500, 'not before its eta');
  assert.equal(await redis.cli('ZCARD', 'celeriac:eta'), '0');
});

test('countdown tasks survive their worker: SIGKILLed while they wait, they run under the next one', async () => {
  const results = await client.sendMany(Array.from({ length: 200 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 1], options: { countdown: 2 } })));
  for (let i = 0; i < 100 && (await redis.cli('ZCARD', 'celeriac:eta')) !== '200'; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await redis.cli('ZCARD', 'celeriac:eta'), '200', 'all 200 wait in the ETA set');
  await worker.kill();
  worker = await startWorker({ url: redis.url, hostname, concurrency: 2 });
  const values = await Promise.all(results.map((r) => r.get({ timeout: 15_000 })));
  assert.deepEqual(values, results.map((_, i) => i + 1));
  assert.equal(await redis.cli('ZCARD', 'celeriac:eta'), '0');
});

test('an expired task is not run: REVOKED is stored', async () => {
  const r = await client.send('celery_app.tasks.add', [1, 1], {}, { expires: new Date(Date.now() - 1000) });
  const err = await r.get({ timeout: 10_000 }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof TaskFailedError);
  assert.equal(err.name, 'TaskRevokedError');
  assert.equal(await r.state(), 'REVOKED');
  assert.equal(worker.events('task:succeeded').filter((l) => l.task_id === r.id).length, 0);
});

test('priority sub-lists are drained highest priority first', async () => {
  await worker.stop();
  const low = await client.sendMany(Array.from({ length: 5 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 0], options: { priority: 9 } })));
  const high = await client.sendMany(Array.from({ length: 5 }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 100], options: { priority: 0 } })));
  assert.equal(await redis.cli('LLEN', 'celery\x06\x169'), '5');
  worker = await startWorker({ url: redis.url, hostname, concurrency: 1, args: ['--prefetch-multiplier', '1'] });
  await Promise.all([...low, ...high].map((r) => r.get({ timeout: 10_000 })));
  const order = worker.events('task:received').map((l) => l.task_id);
  const highIds = new Set(high.map((r) => r.id));
  assert.deepEqual(order.slice(0, 5).map((id) => highIds.has(String(id))), [true, true, true, true, true]);
});
