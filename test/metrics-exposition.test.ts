// A scrape of many series is streamed: chunks go out as they fill and are reused, each series is read
// whole even while tasks update it between chunks, and a scraper that hangs up mid-body harms nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SECONDS_BUCKETS } from '../src/metrics.js';
import { TaskMetrics } from '../src/task-metrics.js';
import { useRedis } from './helpers/setup.js';
import { freePort } from './helpers/redis-server.js';
import { ROOT, startWorker } from './helpers/daemon.js';
import { parseMetrics, scrape, total, type Sample } from './helpers/prom.js';

const env = useRedis();

/** Each histogram series: cumulative buckets that never fall, +Inf equal to _count. */
function assertWholeHistograms(samples: Sample[], family: string): number {
  const bySeries = new Map<string, Sample[]>();
  for (const s of samples.filter((x) => x.name.startsWith(family))) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(rest);
    bySeries.set(key, [...(bySeries.get(key) ?? []), s]);
  }
  for (const [key, lines] of bySeries) {
    const buckets = lines.filter((l) => l.name === `${family}_bucket`).map((l) => l.value);
    const count = lines.find((l) => l.name === `${family}_count`)?.value;
    assert.equal(buckets.length, SECONDS_BUCKETS.length + 1, key);
    for (let i = 1; i < buckets.length; i++) assert.ok((buckets[i] as number) >= (buckets[i - 1] as number), `${key}: buckets fall`);
    assert.equal(buckets.at(-1), count, `${key}: +Inf bucket and count read at one instant`);
  }
  return bySeries.size;
}

test('the exposition streams in a few reused chunks, each series whole while its cells change between chunks', () => {
  const metrics = new TaskMetrics('host "a"', SECONDS_BUCKETS);
  metrics.counter('celery_task_succeeded_total', 'Tasks that succeeded', (c) => c.succeeded);
  metrics.histogram('celery_task_runtime', 'Run time', (c) => c.runtime);
  const cells = Array.from({ length: 3000 }, (_, i) => metrics.touch(`tasks.t${i}`, `q${i % 7}`));
  for (const c of cells) {
    c.succeeded += 1;
    c.runtime.observe(0.003);
  }
  let text = '';
  const buffers = new Set<ArrayBufferLike>();
  let chunks = 0;
  for (let round = 0; round < 2; round++) {
    text = '';
    for (const chunk of metrics.exposition()) {
      chunks += 1;
      buffers.add(chunk.bytes.buffer);
      assert.equal(chunk.bytes.at(-1), 0x0a, 'a chunk ends with a whole line');
      text += chunk.bytes.toString();
      chunk.release();
      // Tasks finish between two chunks, as they do while a scrape waits for its socket.
      for (const c of cells) {
        c.succeeded += 1;
        c.runtime.observe(0.2);
      }
    }
  }
  assert.ok(chunks > 10, `several chunks (${chunks})`);
  assert.ok(buffers.size <= 3, `chunk memory is reused, scrape after scrape (${buffers.size} buffers)`);
  const samples = parseMetrics(text);
  assert.equal(samples.filter((s) => s.name === 'celery_task_succeeded_total').length, 3000);
  assert.equal(assertWholeHistograms(samples, 'celery_task_runtime'), 3000);
  assert.equal(samples[0]?.labels.hostname, 'host "a"', 'label values are escaped and read back');
});

test('the warm-up writes its made-up series and drops them; the series counted before it are untouched', () => {
  const metrics = new TaskMetrics('h', SECONDS_BUCKETS);
  metrics.counter('celery_task_succeeded_total', 'Tasks that succeeded', (c) => c.succeeded);
  metrics.labelledCounter('celery_task_failed_total', 'Tasks that failed', 'exception', (c) => c.failed);
  metrics.histogram('celery_task_runtime', 'Run time', (c) => c.runtime);
  const real = metrics.touch('tasks.real', 'celery');
  real.succeeded = 7;
  real.runtime.observe(0.02);
  const filled: number[] = [];
  metrics.warmUp((t, series) => {
    filled.push(series);
    for (let i = 0; i < series; i++) {
      const c = t.touch(`warm${i}`, 'warm');
      c.succeeded = 1;
      c.failed.set('Error', 1);
      c.runtime.observe(1);
    }
  }, 50, 2);
  assert.deepEqual(filled, [2, 50], 'small runs first, then the large ones');
  // Counted after the warm-up, as a task would be.
  metrics.touch('tasks.real', 'celery').succeeded += 1;
  const samples = parseMetrics([...metrics.exposition()].map((c) => c.bytes.toString()).join(''));
  assert.deepEqual(new Set(samples.map((s) => s.labels.name)), new Set(['tasks.real']), 'no made-up series left');
  assert.equal(total(samples, 'celery_task_succeeded_total', { name: 'tasks.real' }), 8);
  assert.equal(samples.filter((s) => s.name === 'celery_task_failed_total').length, 0);
  assert.equal(total(samples, 'celery_task_runtime_count', { name: 'tasks.real' }), 1);
});

test('a worker with 1,000 task names serves whole scrapes, and one hung up on mid-body changes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'many-tasks-'));
  const app = join(dir, 'many.mjs');
  writeFileSync(app, `import { defineTask } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'workers', 'registry.js')).href)};\nfor (let i = 0; i < 1000; i++) defineTask(\`many.t\${i}\`, () => i);\n`);
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, app, args: ['--metrics-port', String(port), '--metrics-bind', '127.0.0.1'] });
  try {
    const results = await env.client.sendMany(Array.from({ length: 2000 }, (_, i) => ({ name: `many.t${i % 1000}`, args: [] })));
    await Promise.all(results.map((r) => r.get({ timeout: 60_000 })));
    await worker.waitFor(() => worker.events('task:succeeded').length >= 2000, 10_000, '2,000 successes logged');

    // Reads the headers and a little of the body, then hangs up.
    await new Promise<void>((resolve, reject) => {
      let seen = 0;
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
      socket.on('data', (d: Buffer) => {
        seen += d.length;
        if (seen > 100_000) {
          socket.destroy();
          resolve();
        }
      });
      socket.on('error', reject);
    });

    const { status, text } = await scrape(port);
    assert.equal(status, 200);
    const samples = parseMetrics(text);
    assert.equal(total(samples, 'celery_task_succeeded_total'), 2000);
    assert.equal(samples.filter((s) => s.name === 'celery_task_succeeded_total').length, 1000);
    assert.equal(assertWholeHistograms(samples, 'celery_task_runtime'), 1000);
    assert.ok(text.endsWith('\n'));
    const again = await env.client.send('many.t1', []);
    assert.equal(await again.get({ timeout: 10_000 }), 1, 'the worker goes on');
    assert.equal((await worker.stop()).code, 0);
  } finally {
    await worker.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
