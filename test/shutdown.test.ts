// Warm shutdown lets running tasks finish and puts the rest back at once; past --shutdown-timeout, or on
// a second signal, the shutdown turns cold and still puts unfinished tasks back; a stop during the start
// ends the start. Exit code 0 each time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { useRedis } from './helpers/setup.js';
import { EXAMPLE_TASKS, spawnWorker, startWorker } from './helpers/daemon.js';
import { freePort } from './helpers/redis-server.js';
import { createConnection } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { loadWorkerConfig, Supervisor } from '../src/index.js';
import { createLogger } from '../src/logger.js';

const SLOW_LOAD = fileURLToPath(new URL('../../test/fixtures/tasks/slow-load.js', import.meta.url));

const env = useRedis({ appendonly: true });

const sleeps = (n: number, seconds: number) =>
  env.client.sendMany(Array.from({ length: n }, () => ({ name: 'celery_app.tasks.sleep', args: [seconds] })));

test('SIGTERM: running tasks finish, reserved ones go back to the queue at once', async () => {
  await env.raw.flushall();
  const worker = await startWorker({ url: env.redis.url, concurrency: 2, args: ['--prefetch-multiplier', '3'] });
  const results = await sleeps(6, 1);
  await worker.waitFor(() => worker.events('task:received').length === 6, 10_000, 'six reserved');
  await new Promise((r) => setTimeout(r, 300));
  worker.child.kill('SIGTERM');
  // At once: back in the queue while the two running tasks still have most of their second to go.
  for (let i = 0; i < 50 && (await env.raw.llen('celery')) < 4; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await env.raw.llen('celery'), 4, 'the four not started are back before the worker is done');
  assert.equal(worker.child.exitCode, null, 'while the running tasks still run');
  const exit = await worker.exited;
  assert.equal(exit.code, 0);
  const stopped = await worker.waitFor((l) => l.event === 'worker:shutdown');
  assert.equal(stopped.mode, 'warm');
  assert.equal(stopped.requeued, 4);
  assert.equal(worker.events('task:succeeded').length, 2, 'the two running tasks finished');
  assert.equal(await env.raw.llen('celery'), 4, 'the four not started are back in the queue');
  const states = await Promise.all(results.map((r) => r.state()));
  assert.equal(states.filter((s) => s === 'SUCCESS').length, 2);

  const next = await startWorker({ url: env.redis.url, concurrency: 2 });
  assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeout: 15_000 }))), Array(6).fill(1));
  await next.stop();
});

test('past --shutdown-timeout the shutdown turns cold and the running tasks go back too', async () => {
  await env.raw.flushall();
  const worker = await startWorker({ url: env.redis.url, concurrency: 2, args: ['--shutdown-timeout', '0.5'] });
  const results = await sleeps(2, 30);
  await worker.waitFor(() => worker.events('task:received').length === 2, 10_000, 'two running');
  const t = Date.now();
  assert.equal((await worker.stop('SIGTERM')).code, 0);
  assert.ok(Date.now() - t < 10_000, 'did not wait for the 30 s tasks');
  const stopped = await worker.waitFor((l) => l.event === 'worker:shutdown');
  assert.equal(stopped.mode, 'cold');
  assert.equal(stopped.requeued, 2);
  assert.equal(await env.raw.llen('celery'), 2);
  assert.deepEqual(await Promise.all(results.map((r) => r.state())), ['PENDING', 'PENDING']);
});

test('a second signal makes it cold at once, and unfinished tasks are still put back', async () => {
  await env.raw.flushall();
  const worker = await startWorker({ url: env.redis.url, concurrency: 1, args: ['--shutdown-timeout', '60'] });
  await sleeps(3, 30);
  await worker.waitFor(() => worker.events('task:received').length === 3, 10_000, 'three reserved');
  worker.child.kill('SIGTERM');
  await worker.waitFor((l) => l.event === 'worker:signal');
  const t = Date.now();
  assert.equal((await worker.stop('SIGINT')).code, 0);
  assert.ok(Date.now() - t < 10_000);
  const stopped = await worker.waitFor((l) => l.event === 'worker:shutdown');
  assert.equal(stopped.mode, 'cold');
  assert.equal(await env.raw.llen('celery'), 3);
  assert.equal(await env.raw.llen(`celeriac:processing:${String(stopped.hostname)}:celery`), 0);
});

test('with Redis gone, a shutdown still ends: exit code 0, and the unfinished tasks run once Redis is back', async () => {
  await env.raw.flushall();
  const hostname = `redis-gone-${process.pid}@test`;
  const worker = await startWorker({ url: env.redis.url, hostname, concurrency: 2, args: ['--shutdown-timeout', '1'] });
  const results = await sleeps(4, 2);
  await worker.waitFor(() => worker.events('task:received').length === 4, 10_000, 'four reserved');
  await env.redis.kill();
  const t = Date.now();
  const exit = await worker.stop('SIGTERM', 20_000);
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - t < 12_000, `stopped in ${Date.now() - t} ms`);
  assert.ok(worker.lines.some((l) => l.event === 'shutdown:redis-down'), 'it says why nothing was requeued');
  await env.redis.start();
  const next = await startWorker({ url: env.redis.url, hostname, concurrency: 2 });
  assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeout: 20_000 }))), Array(4).fill(2));
  await next.stop();
});

test('SIGTERM while the task module loads ends the start: exit code 0, no error, nothing of the worker left in Redis', async () => {
  await env.raw.flushall();
  const queued = await env.client.send('slow.tasks.one');
  const worker = spawnWorker({ url: env.redis.url, app: SLOW_LOAD, args: ['-l', 'info'] });
  await worker.waitFor((l) => l.event === 'fixture:loading', 15_000, 'the module beginning to load');
  const exit = await worker.stop('SIGTERM', 15_000);
  assert.equal(exit.code, 0, `stderr: ${worker.stderr}`);
  assert.equal(worker.stderr, '');
  assert.deepEqual(worker.errorLines(), []);
  assert.equal(worker.events('worker:ready').length, 0);
  assert.equal(worker.events('worker:shutdown').length, 1);
  assert.deepEqual(await env.raw.keys('celeriac:*'), [], 'no heartbeat, registration or processing list');
  assert.equal(await env.raw.llen('celery'), 1, 'the task waits in its queue');
  assert.equal(await queued.state(), 'PENDING');
});

test('SIGTERM while Redis cannot be reached at start: exit code 0 at once, cutting the backoff short, not after --connect-timeout', async () => {
  const worker = spawnWorker({ url: `redis://127.0.0.1:${await freePort()}/0`, args: ['--connect-timeout', '60'] });
  await worker.waitFor((l) => l.event === 'redis:unreachable' && Number(l.retry_in_ms) >= 2000, 20_000, 'a warning with a backoff of 2 s or more');
  const t = Date.now();
  const exit = await worker.stop('SIGTERM', 15_000);
  assert.equal(exit.code, 0, `stderr: ${worker.stderr}`);
  assert.ok(Date.now() - t < 1_500, `stopped in ${Date.now() - t} ms`);
  assert.deepEqual(worker.errorLines(), []);
});

test('SIGTERM while the task module never finishes loading: the start is given up on, exit code 0', async () => {
  const worker = spawnWorker({ url: env.redis.url, app: SLOW_LOAD, env: { TEST_LOAD_MS: 'Infinity' } });
  await worker.waitFor((l) => l.event === 'fixture:loading', 15_000, 'the module beginning to load');
  const exit = await worker.stop('SIGTERM', 20_000);
  assert.equal(exit.code, 0, `stderr: ${worker.stderr}`);
  const step = await worker.waitFor((l) => l.event === 'shutdown:step-failed', 0, 'the step that did not finish');
  assert.equal(step.step, 'start');
  assert.equal(worker.events('worker:ready').length, 0);
});

test('a second SIGTERM while the task module never finishes loading stops the worker at once: exit code 0', async () => {
  const worker = spawnWorker({ url: env.redis.url, app: SLOW_LOAD, env: { TEST_LOAD_MS: 'Infinity' } });
  await worker.waitFor((l) => l.event === 'fixture:loading', 15_000, 'the module beginning to load');
  const t = Date.now();
  worker.child.kill('SIGTERM');
  await worker.waitFor((l) => l.event === 'worker:signal', 5_000, 'the first signal logged');
  const exit = await worker.stop('SIGTERM', 20_000);
  assert.equal(exit.code, 0, `stderr: ${worker.stderr}`);
  assert.ok(Date.now() - t < 3_000, `stopped in ${Date.now() - t} ms (a warm stop waits 6 s for the start)`);
  assert.equal(worker.events('worker:shutdown')[0]?.mode, 'cold');
});

test('a task module that fails to load while a stop is asked for is still reported: exit code 1', async () => {
  const worker = spawnWorker({ url: env.redis.url, app: SLOW_LOAD, env: { TEST_LOAD_THROW: '1' } });
  await worker.waitFor((l) => l.event === 'fixture:loading', 15_000, 'the module beginning to load');
  const exit = await worker.stop('SIGTERM', 20_000);
  assert.equal(exit.code, 1);
  const failed = await worker.waitFor((l) => l.event === 'worker:failed', 0, 'the worker:failed line');
  assert.equal(failed.code, 'E_APP_LOAD');
  assert.match(String(failed.err), /fails to load on purpose/);
});

test('SIGTERM while waiting for a hostname a live worker holds: exit code 0 at once, the live worker untouched', async () => {
  await env.raw.flushall();
  const hostname = `busy-${process.pid}@test`;
  const live = await startWorker({ url: env.redis.url, hostname });
  const heartbeat = await env.raw.get(`celeriac:heartbeat:${hostname}`);
  assert.ok(heartbeat);
  const second = spawnWorker({ url: env.redis.url, hostname });
  await second.waitFor((l) => l.event === 'hostname:busy', 15_000, 'the hostname:busy warning');
  const t = Date.now();
  const exit = await second.stop('SIGTERM', 20_000);
  assert.equal(exit.code, 0, `stderr: ${second.stderr}`);
  assert.ok(Date.now() - t < 3_000, `stopped in ${Date.now() - t} ms (the wait for the hostname lasts a heartbeat period)`);
  assert.equal(await env.raw.get(`celeriac:heartbeat:${hostname}`), heartbeat, 'the live worker still holds its hostname');
  assert.equal(await (await env.client.send('celery_app.tasks.add', [2, 3])).get({ timeout: 10_000 }), 5);
  await live.stop();
});

test('a cold stop while the start is still opening the metrics port leaves nothing listening (library use)', async () => {
  const port = await freePort();
  const config = loadWorkerConfig({ broker: `redis://127.0.0.1:${await freePort()}/0`, 'metrics-port': String(port), app: EXAMPLE_TASKS, hostname: `lib-${process.pid}@test` }, {});
  const supervisor = new Supervisor(config, createLogger('fatal'));
  const started = supervisor.start().catch((err: unknown) => err);
  await nextTurn();
  void supervisor.stop('warm');
  await supervisor.stop('cold');
  assert.equal(((await started) as Error).name, 'StartCancelled');
  const refused = await new Promise<boolean>((resolve) => {
    const socket = createConnection(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(true));
  });
  assert.ok(refused, `port ${port} still accepts connections after the stop`);
});
