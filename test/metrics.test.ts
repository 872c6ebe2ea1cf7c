// The worker as a Prometheus scrape target: exact counters after a known mix of outcomes, histogram
// counts that match, gauges read from Redis at scrape time, promtool-clean output, /healthz and
// /readyz (503 while Redis is down, 200 again when it is back), and the producer's sent counter.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Registry } from 'prom-client';
import { producerMetrics } from '../src/index.js';
import { encode } from '../src/protocol.js';
import { useRedis } from './helpers/setup.js';
import { freePort } from './helpers/redis-server.js';
import { startWorker } from './helpers/daemon.js';
import { families, parseMetrics, scrape, total } from './helpers/prom.js';

const env = useRedis({ appendonly: true });

function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
    );
    child.stdin?.end(text);
  });
}

test('counters are exact after a known mix of succeeded, failed and dead-lettered tasks', async () => {
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, args: ['--metrics-port', String(port), '--metrics-bind', '127.0.0.1'] });
  try {
    const N = 7, M = 3;
    const ok = await env.client.sendMany(Array.from({ length: N }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, 1] })));
    const bad = await env.client.sendMany(Array.from({ length: M }, () => ({ name: 'celery_app.tasks.fail', args: ['m'] })));
    await env.raw.lpush('celery', '{"truncated', encode({ task: 'not.a.task', args: [], kwargs: {}, queue: 'celery' }).raw);
    await Promise.all(ok.map((r) => r.get({ timeout: 10_000 })));
    await Promise.all(bad.map((r) => r.get({ timeout: 10_000 }).catch(() => undefined)));
    await worker.waitFor(() => worker.events('task:rejected').length === 2, 10_000, 'two rejections');

    const { status, text } = await scrape(port);
    assert.equal(status, 200);
    const s = parseMetrics(text);
    const host = { hostname: String(worker.lines[0]?.hostname) };
    assert.equal(total(s, 'celery_task_succeeded_total', { ...host, name: 'celery_app.tasks.add', queue_name: 'celery' }), N);
    assert.equal(total(s, 'celery_task_failed_total', { ...host, name: 'celery_app.tasks.fail', exception: 'ValueError' }), M);
    assert.equal(total(s, 'celery_task_rejected_total', { reason: 'E_PROTOCOL', name: 'unknown' }), 1);
    assert.equal(total(s, 'celery_task_rejected_total', { reason: 'E_UNKNOWN_TASK', name: 'not.a.task' }), 1);
    assert.equal(total(s, 'celery_task_received_total'), N + M);
    assert.equal(total(s, 'celery_task_started_total'), N + M);
    assert.equal(total(s, 'celery_task_runtime_count'), N + M);
    assert.equal(total(s, 'celery_task_runtime_bucket', { le: '+Inf' }), N + M);
    assert.equal(total(s, 'celery_task_queue_wait_time_count'), N + M);
    assert.equal(total(s, 'celeriac_task_latency_seconds_count'), N + M);
    assert.equal(total(s, 'celery_worker_up', host), 1);
    assert.equal(total(s, 'celeriac_pool_threads', host), 2);
    assert.equal(total(s, 'celeriac_dead_letter_length'), 2);
    assert.equal(total(s, 'celeriac_redis_command_duration_seconds_count', { command: 'ack' }) > 0, true);
    assert.ok(total(s, 'process_resident_memory_bytes') > 10e6);

    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);

    // A thread that dies is counted as a restart.
    await (await env.client.send('celery_app.tasks.crash')).get({ timeout: 10_000 }).catch(() => undefined);
    const after = parseMetrics((await scrape(port)).text);
    assert.equal(total(after, 'celeriac_pool_thread_restarts_total', { reason: 'crash' }), 1);
    assert.equal(total(after, 'celeriac_pool_thread_restarts_total', { reason: 'time_limit' }), 0);
  } finally {
    await worker.stop();
  }
});

test('queue length (priority sub-lists included), ETA backlog and prefetched messages are read at scrape time', async () => {
  await env.raw.flushall();
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, concurrency: 1, args: ['--metrics-port', String(port), '--prefetch-multiplier', '1', '-Q', 'celery,other'] });
  try {
    const first = await env.client.send('celery_app.tasks.sleep', [3]);
    await worker.waitFor((l) => l.event === 'task:received' && l.task_id === first.id);
    await env.client.sendMany([
      ...Array.from({ length: 2 }, () => ({ name: 'celery_app.tasks.sleep', args: [0] })),
      ...Array.from({ length: 3 }, () => ({ name: 'celery_app.tasks.sleep', args: [0], options: { priority: 5 } })),
      { name: 'celery_app.tasks.sleep', args: [0], options: { queue: 'other', priority: 9 } },
    ]);
    const s = parseMetrics((await scrape(port)).text);
    assert.equal(total(s, 'celery_queue_length', { queue_name: 'celery' }), 5);
    assert.equal(total(s, 'celery_queue_length', { queue_name: 'other' }), 1);
    assert.equal(total(s, 'celeriac_prefetched_messages'), 1);
    assert.equal(total(s, 'celery_worker_tasks_active'), 1);
    assert.equal(total(s, 'celeriac_pool_utilization_ratio'), 1);
    await env.client.sendMany(Array.from({ length: 4 }, () => ({ name: 'celery_app.tasks.add', args: [1, 1], options: { countdown: 600 } })));
    await worker.waitFor(() => worker.events('task:deferred').length === 4, 15_000, 'four deferred');
    const s2 = parseMetrics((await scrape(port)).text);
    assert.equal(total(s2, 'celeriac_eta_backlog'), 4);
    assert.equal(total(s2, 'celeriac_task_deferred_total'), 4);
  } finally {
    await worker.stop('SIGINT');
    await worker.stop('SIGINT');
  }
});

test('/readyz is 503 while Redis is down and 200 again when it is back; /healthz stays 200', async () => {
  await env.raw.flushall();
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, args: ['--metrics-port', String(port)] });
  try {
    assert.equal((await scrape(port, '/readyz')).status, 200);
    assert.equal((await scrape(port, '/healthz')).status, 200);
    assert.equal((await scrape(port, '/nowhere')).status, 404);
    await env.redis.kill();
    let status = 200;
    for (let i = 0; i < 100 && status === 200; i++) {
      status = (await scrape(port, '/readyz')).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 503);
    assert.match((await scrape(port, '/readyz')).text, /"redis":false/);
    assert.equal((await scrape(port, '/healthz')).status, 200, 'alive while Redis is down');
    const down = parseMetrics((await scrape(port)).text);
    assert.equal(down.filter((s) => s.name === 'celery_queue_length').length, 0, 'no stale queue lengths');
    await env.redis.start();
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await scrape(port, '/readyz')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200);
    assert.equal(await (await env.client.send('celery_app.tasks.add', [2, 2])).get({ timeout: 15_000 }), 4, 'the worker carried on');
  } finally {
    await worker.stop();
  }
});

test('the producer counts what it sends in celery_task_sent_total', async () => {
  const registry = new Registry();
  producerMetrics(env.client.events, registry, 'producer@test');
  await env.client.sendMany([
    { name: 'celery_app.tasks.add', args: [1, 2] },
    { name: 'celery_app.tasks.add', args: [1, 2], options: { queue: 'other' } },
    { name: 'celery_app.tasks.mul', args: [1, 2] },
  ]);
  const s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'celery_task_sent_total', { name: 'celery_app.tasks.add', queue_name: 'celery', hostname: 'producer@test' }), 1);
  assert.equal(total(s, 'celery_task_sent_total', { name: 'celery_app.tasks.add', queue_name: 'other' }), 1);
  assert.equal(total(s, 'celery_task_sent_total'), 3);
  assert.equal(families(await registry.metrics()).get('celery_task_sent_total'), 'counter');
});

test('/healthz is 503 after the event loop stalled (SIGSTOP for 6 s); /readyz is 503 as soon as a shutdown begins', async () => {
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, args: ['--metrics-port', String(port), '--shutdown-timeout', '10'] });
  try {
    assert.equal((await scrape(port, '/healthz')).status, 200);
    worker.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 6000));
    worker.child.kill('SIGCONT');
    await new Promise((r) => setTimeout(r, 700));
    const stalled = await scrape(port, '/healthz');
    assert.equal(stalled.status, 503, stalled.text);
    assert.match(stalled.text, /"status":"event loop stalled"/);

    const running = await env.client.send('celery_app.tasks.sleep', [3]);
    await worker.waitFor((l) => l.event === 'task:received' && l.task_id === running.id);
    assert.equal((await scrape(port, '/readyz')).status, 200);
    worker.child.kill('SIGTERM');
    let status = 200;
    for (let i = 0; i < 50 && status === 200; i++) {
      status = (await scrape(port, '/readyz')).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(status, 503, 'not ready while it shuts down');
    assert.equal(worker.child.exitCode, null, 'still finishing its task');
    assert.equal(await running.get({ timeout: 10_000 }), 3);
  } finally {
    await worker.stop();
  }
});
