// The README's metrics table, the dashboard and what the worker really exposes agree: every family a
// worker (or a producer's producerMetrics) emits has a row with its real type and labels, is charted
// or listed as not charted, and every metric a panel reads exists. A name documented ahead of the code
// has a row that says "not emitted yet", and that mark must not go stale.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { producerMetrics } from '../src/index.js';
import { useRedis } from './helpers/setup.js';
import { freePort } from './helpers/redis-server.js';
import { startWorker } from './helpers/daemon.js';
import { families, parseMetrics, scrape, type Sample } from './helpers/prom.js';
import { allPanels, seriesIn } from './helpers/dashboard.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

interface Row {
  name: string;
  type: string;
  labels: string[];
  meaning: string;
}

function metricsSection(): string {
  const start = README.indexOf('\n## Metrics\n');
  assert.ok(start >= 0, 'README has a "## Metrics" section');
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** Rows of the metrics table: | `name` | type | `label`, ... (or —) | meaning | */
function tableRows(): Row[] {
  const rows: Row[] = [];
  for (const line of metricsSection().split('\n')) {
    const m = /^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \| (\w+) \| ([^|]*) \| (.*) \|$/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] as string).matchAll(/`([a-zA-Z_][a-zA-Z0-9_]*)`/g)].map((l) => l[1] as string);
    rows.push({ name: m[1] as string, type: m[2] as string, labels: labels.sort(), meaning: m[4] as string });
  }
  return rows;
}

/** The names in the paragraph that starts with **Not charted**. */
function notCharted(): Set<string> {
  const section = metricsSection();
  const start = section.indexOf('**Not charted**');
  assert.ok(start >= 0, 'the Metrics section has a **Not charted** paragraph');
  const paragraph = section.slice(start, section.indexOf('\n\n', start));
  return new Set([...paragraph.matchAll(/`([a-zA-Z_:][a-zA-Z0-9_:]*)`/g)].map((m) => m[1] as string));
}

/** Every panel target as written in the dashboard. */
function targets(): { panel: string; expr: string }[] {
  return allPanels().flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** The family a series belongs to: histogram series fold into their histogram. */
function familyOf(series: string, types: Map<string, string>): string {
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  if (m && types.get(m[1] as string) === 'histogram') return m[1] as string;
  return series;
}

const env = useRedis();
/** Family name → type, from the worker's /metrics and a producer's registry. */
const emitted = new Map<string, string>();
const samples: Sample[] = [];

// Collected once, by whichever test runs first (a top-level before() would race useRedis's own).
let collected: Promise<void> | undefined;
const collect = (): Promise<void> => (collected ??= observeWorker());

async function observeWorker(): Promise<void> {
  const registry = new Registry();
  producerMetrics(env.client.events, registry, 'producer@docs');
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, args: ['--metrics-port', String(port), '--metrics-bind', '127.0.0.1'] });
  try {
    // One run of each outcome, so every labelled series exists: success, failure, retry, expiry (revoked),
    // a dead letter and a countdown (deferred).
    const [ok, bad, retried, expired] = await env.client.sendMany([
      { name: 'celery_app.tasks.add', args: [1, 2] },
      { name: 'celery_app.tasks.fail', args: ['docs'] },
      { name: 'celery_app.tasks.flaky', args: [1, 0.1] },
      { name: 'celery_app.tasks.add', args: [1, 2], options: { expires: new Date(Date.now() - 1000) } },
      { name: 'celery_app.tasks.add', args: [1, 2], options: { countdown: 600 } },
    ]);
    await env.raw.lpush('celery', '{"truncated');
    await ok?.get({ timeout: 10_000 });
    await retried?.get({ timeout: 10_000 });
    await bad?.get({ timeout: 10_000 }).catch(() => undefined);
    await expired?.get({ timeout: 10_000 }).catch(() => undefined);
    await worker.waitFor(() => worker.events('task:rejected').length === 1, 10_000, 'the dead letter');
    // prom-client measures nodejs_eventloop_lag_seconds after a scrape: the second one has it.
    await scrape(port);
    const { text } = await scrape(port);
    const producerText = await registry.metrics();
    for (const [name, type] of [...families(text), ...families(producerText)]) emitted.set(name, type);
    samples.push(...parseMetrics(text), ...parseMetrics(producerText));
  } finally {
    await worker.stop();
  }
}

test('every family the worker and a producer emit has a row in the README metrics table, with its type and labels', async () => {
  await collect();
  const rows = new Map(tableRows().map((r) => [r.name, r]));
  for (const [name, type] of emitted) {
    const row = rows.get(name);
    assert.ok(row, `${name} has a row in the README metrics table`);
    assert.equal(row.type, type, `${name} is a ${type}`);
    const series = samples.filter((s) => familyOf(s.name, emitted) === name);
    // Our own families all have series after one run of each outcome; prom-client's defaults may have
    // none at a given moment (nodejs_active_requests while no libuv request is in flight).
    if (/^celer(y|iac)_/.test(name)) assert.ok(series.length > 0, `${name} has samples after one run of each outcome`);
    if (series.length === 0) continue;
    const labels = [...new Set(series.flatMap((s) => Object.keys(s.labels)).filter((l) => l !== 'le'))].sort();
    assert.deepEqual(row.labels, labels, `labels of ${name}`);
  }
});

test('every name in the README table is emitted, except rows marked "not emitted yet", which must not be', async () => {
  await collect();
  const rows = tableRows();
  assert.ok(rows.length > 20, 'the README has its metrics table');
  for (const row of rows) {
    if (row.meaning.includes('not emitted yet')) assert.ok(!emitted.has(row.name), `${row.name} is marked "not emitted yet" but is emitted`);
    else assert.ok(emitted.has(row.name), `${row.name} (README) is emitted`);
  }
});

test('every emitted family is charted in the dashboard or listed as not charted, and never both', async () => {
  await collect();
  const charted = new Set(targets().flatMap((t) => seriesIn(t.expr).map((s) => familyOf(s, emitted))));
  const skipped = notCharted();
  for (const name of emitted.keys()) {
    assert.ok(charted.has(name) || skipped.has(name), `${name} is charted or listed as not charted`);
    assert.ok(!(charted.has(name) && skipped.has(name)), `${name} is charted but listed as not charted`);
  }
  for (const name of skipped) assert.ok(emitted.has(name), `${name} (not charted) is a family we emit`);
});

test('every metric a dashboard panel reads is one we emit', async () => {
  await collect();
  const all = targets();
  assert.ok(all.length > 20, 'the dashboard has its panels');
  for (const { panel, expr } of all) {
    const series = seriesIn(expr);
    assert.ok(series.length > 0, `${panel} reads a metric: ${expr}`);
    for (const s of series) assert.ok(emitted.has(familyOf(s, emitted)), `${panel} reads ${s}, which nothing emits`);
  }
});
