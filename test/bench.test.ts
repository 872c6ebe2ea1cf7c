// `npm run bench` smoke test: the harness runs a few scenarios at tiny sizes against its own private
// Redis, BullMQ and Python Celery, and writes the JSON and SVG it promises. Speed is not asserted:
// tiny runs on a shared machine say nothing about it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToCompletion } from './helpers/process.js';

const BENCH = fileURLToPath(new URL('../bench/run.js', import.meta.url));
const FLOOR_WORKER = fileURLToPath(new URL('../bench/floor-worker.js', import.meta.url));

interface Report {
  date: string;
  mode: string;
  machine: { cores: number; mem_gb: number; cpu: string };
  versions: Record<string, string | null>;
  scenarios: Record<string, Record<string, Record<string, number>>>;
  ratios: Record<string, number>;
  targets: Record<string, { op: string; value: number; met: boolean }>;
  failures: unknown[];
}

test('bench --smoke runs enqueue, drain, cpu, roundtrip and memory for all three systems and writes JSON and SVG', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-test-'));
  try {
    const json = join(dir, 'bench.json');
    const svg = join(dir, 'ratios.svg');
    const r = await runToCompletion(process.execPath, [BENCH, '--smoke', '--only', 'enqueue,drain,cpu,roundtrip,memory', '--json', json, '--svg', svg], {}, 110_000);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^\| scenario +\| system +\| configuration +\| figures +\| celeriac\/BullMQ +\| celeriac\/Celery +\| target +\|$/m);

    const report = JSON.parse(readFileSync(json, 'utf8')) as Report;
    assert.equal(report.mode, 'smoke');
    assert.deepEqual(report.failures, []);
    assert.ok(!Number.isNaN(Date.parse(report.date)));
    assert.ok(report.machine.cores > 0 && report.machine.mem_gb > 0 && report.machine.cpu.length > 0);
    for (const v of ['celeriac', 'node', 'redis', 'bullmq', 'celery']) assert.ok(report.versions[v], `versions.${v}`);

    const ratioKeys = [
      'enqueue_awaited_vs_bullmq',
      'enqueue_bulk_vs_bullmq',
      'enqueue_awaited_vs_celery',
      'enqueue_awaited_vs_library_floor',
      'enqueue_library_floor_vs_bullmq',
      'drain_vs_bullmq',
      'drain_vs_celery',
      'drain_vs_floor',
      'drain_floor_vs_bullmq',
      'cpu_efficiency',
      'cpu_vs_bullmq',
      'cpu_vs_celery',
      'roundtrip_p50_vs_bullmq',
      'roundtrip_p99_vs_bullmq',
      'roundtrip_p50_vs_celery',
      'roundtrip_p50_vs_floor',
      'roundtrip_floor_vs_bullmq',
      'roundtrip_nothread_floor_vs_bullmq',
      'rss_after_drain_vs_bullmq',
      'idle_rss_vs_bullmq',
      'idle_rss_vs_floor',
      'idle_rss_floor_vs_bullmq',
    ];
    for (const key of ratioKeys) {
      const v = report.ratios[key];
      assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `ratios.${key} = ${v}`);
    }
    for (const key of ['drain_vs_bullmq', 'drain_vs_celery', 'cpu_efficiency', 'roundtrip_p50_vs_bullmq', 'enqueue_bulk_vs_bullmq']) {
      const t = report.targets[key];
      assert.ok(t && (t.op === '>=' || t.op === '<=') && t.value > 0 && typeof t.met === 'boolean', `targets.${key}`);
    }

    // Every figure of every scenario is a positive number, and each scenario has all three systems.
    for (const scenario of ['enqueue', 'drain', 'cpu', 'roundtrip', 'memory']) {
      const systems = Object.keys(report.scenarios[scenario] ?? {});
      for (const name of ['celeriac', 'bullmq', 'celery']) assert.ok(systems.some((s) => s.startsWith(`${name} `)), `${scenario}: ${name} in ${systems.join(', ')}`);
      for (const [system, figures] of Object.entries(report.scenarios[scenario] ?? {})) {
        for (const [k, v] of Object.entries(figures)) assert.ok(Number.isFinite(v) && v > 0, `${scenario} / ${system} / ${k} = ${v}`);
      }
    }

    // Both systems' drains are swept with V8's helper threads cut to one as well.
    const drains = Object.keys(report.scenarios.drain ?? {});
    for (const name of ['celeriac', 'bullmq']) assert.ok(drains.some((s) => s.startsWith(`${name} `) && s.endsWith('NODE_OPTIONS=--v8-pool-size=1')), `drain: ${name} with one V8 helper thread in ${drains.join(', ')}`);

    const chart = readFileSync(svg, 'utf8');
    assert.match(chart, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(chart, /<\/svg>\n$/);
    assert.match(chart, /no-op drain, best settings/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench refuses an unknown scenario with exit code 2', async () => {
  const r = await runToCompletion(process.execPath, [BENCH, '--only', 'nope'], {}, 30_000);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown scenario 'nope'/);
});

test('the floor worker refuses a missing or bad thread count or capacity with its usage and exit code 2', async () => {
  // 0 threads only for a round trip (with a queue and no capacity): an idle floor or a drain without
  // threads measures nothing of ours.
  const url = 'redis://127.0.0.1:1/0';
  for (const args of [[], [url], [url, '0'], [url, 'two'], [url, '-1', 'q'], [url, '0', 'q', '200'], [url, '1', 'q', '0'], [url, '1', 'q', 'many']]) {
    const r = await runToCompletion(process.execPath, [FLOOR_WORKER, ...args], {}, 30_000);
    assert.equal(r.code, 2, `args ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /^usage: node floor-worker\.js URL THREADS \[QUEUE \[CAPACITY\]\]$/m);
  }
});
