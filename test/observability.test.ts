// The Grafana and Prometheus kit works against a real Prometheus: the dashboard takes its data source
// from a variable, the alert rules pass promtool (check and unit tests), the example config is valid,
// and a Prometheus run from that example config, scraping a worker under load, discovers its targets as
// the config says, answers every dashboard panel (for "All" and for one selected worker) and every
// alert expression, and fires the alerts the load calls for.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { producerMetrics } from '../src/index.js';
import { encode } from '../src/protocol.js';
import { useRedis } from './helpers/setup.js';
import { freePort } from './helpers/redis-server.js';
import { startWorker } from './helpers/daemon.js';
import { runToCompletion, track } from './helpers/process.js';
import { allPanels, dashboardExprs, GRAFANA, loadDashboard, type Datasource } from './helpers/dashboard.js';

const env = useRedis();

const PROMETHEUS_DS = { type: 'prometheus', uid: '${datasource}' };
const ALERTS = [...readFileSync(`${GRAFANA}alerts.yml`, 'utf8').matchAll(/^\s+- alert: (\S+)$/gm)].map((m) => m[1] as string);

async function promtool(...args: string[]): Promise<string> {
  const r = await runToCompletion('promtool', args, { cwd: GRAFANA }, 60_000);
  assert.equal(r.code, 0, `promtool ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** One discovered pod, as Kubernetes discovery would label it. */
interface Pod {
  address: string;
  namespace: string;
  name: string;
  annotations: Record<string, string>;
}

/**
 * grafana/prometheus.yml made runnable here, written to `dir` with alerts.yml beside it: 1 s intervals,
 * the static job aimed at `worker`, and the Kubernetes pod job fed by file discovery with `pods` (Debian's
 * Prometheus is built without Kubernetes discovery). The relabelling rules are the shipped ones, so
 * what they make of the pods' annotations is what a cluster would get.
 */
function exampleConfig(dir: string, worker: string, pods: Pod[]): string {
  let config = readFileSync(`${GRAFANA}prometheus.yml`, 'utf8');
  const swap = (from: RegExp | string, to: string): void => {
    const next = config.replace(from, to);
    assert.notEqual(next, config, `prometheus.yml has ${String(from)}`);
    config = next;
  };
  swap(/scrape_interval: \S+/, 'scrape_interval: 1s');
  swap(/evaluation_interval: \S+/, 'evaluation_interval: 1s');
  swap("targets: ['localhost:9808']", `targets: ['${worker}']`);
  swap(/kubernetes_sd_configs:\n(\s+)- role: pod\n/, `file_sd_configs:\n$1- files: ['${join(dir, 'pods.json')}']\n`);
  const meta = (p: Pod): Record<string, string> => ({
    __meta_kubernetes_namespace: p.namespace,
    __meta_kubernetes_pod_name: p.name,
    ...Object.fromEntries(Object.entries(p.annotations).map(([k, v]) => [`__meta_kubernetes_pod_annotation_${k.replace(/[^a-zA-Z0-9_]/g, '_')}`, v])),
  });
  writeFileSync(join(dir, 'pods.json'), JSON.stringify(pods.map((p) => ({ targets: [p.address], labels: meta(p) }))));
  copyFileSync(`${GRAFANA}alerts.yml`, join(dir, 'alerts.yml'));
  writeFileSync(join(dir, 'prometheus.yml'), config);
  return join(dir, 'prometheus.yml');
}

test('the dashboard takes its Prometheus from a variable and filters by worker and queue', () => {
  const dash = loadDashboard();
  assert.equal(dash.uid, 'celeriac');
  assert.ok(dash.schemaVersion >= 39, `schemaVersion ${dash.schemaVersion}`);
  const vars = new Map(dash.templating.list.map((v) => [v.name, v]));
  assert.equal(vars.get('datasource')?.type, 'datasource');
  assert.equal(vars.get('datasource')?.query, 'prometheus');
  for (const [name, metric] of [['hostname', 'celery_worker_up'], ['queue_name', 'celery_queue_length']] as const) {
    const v = vars.get(name);
    assert.equal(v?.type, 'query', name);
    assert.deepEqual(v?.datasource, PROMETHEUS_DS, name);
    assert.equal(v?.definition, `label_values(${metric}, ${name})`, name);
    assert.ok(v?.multi && v.includeAll && v.allValue === '.*', `${name} allows several values and All`);
  }
  // Every data source reference in the file is the variable, so an import never points at a uid that
  // only existed where the dashboard was made (the annotation built into every dashboard aside).
  const refs: Datasource[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'datasource' && v && typeof v === 'object') refs.push(v as Datasource);
        walk(v);
      }
    }
  };
  walk({ panels: dash.panels, templating: dash.templating.list.filter((v) => v.type !== 'datasource') });
  assert.ok(refs.length > 50, 'panels, targets and variables name their data source');
  for (const ref of refs) assert.deepEqual(ref, PROMETHEUS_DS);
  const panels = allPanels(dash.panels).filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 20);
  for (const p of panels) {
    assert.ok(['timeseries', 'stat'].includes(p.type), `${p.title}: ${p.type}`);
    assert.deepEqual(p.datasource, PROMETHEUS_DS, p.title);
    assert.ok(p.targets?.length, `${p.title} has targets`);
    for (const t of p.targets ?? []) assert.deepEqual(t.datasource, PROMETHEUS_DS, `${p.title} ${t.refId}`);
  }
  assert.equal(new Set(allPanels(dash.panels).map((p) => p.id)).size, allPanels(dash.panels).length, 'panel ids are unique');
});

test('the Grafana provisioning files parse, provide a Prometheus data source and load the dashboard from a folder', async () => {
  // Parsed by PyYAML (Debian python3-yaml), so a file Grafana cannot read fails here.
  const read = async (file: string): Promise<Record<string, any>> => {
    const r = await runToCompletion('/usr/bin/python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', join(GRAFANA, 'provisioning', file)], {}, 10_000);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, any>;
  };
  const ds = await read('datasources/celeriac.yml');
  assert.equal(ds.apiVersion, 1);
  assert.equal(ds.datasources?.length, 1);
  assert.equal(ds.datasources[0].type, 'prometheus', 'what the dashboard\'s datasource variable lists');
  assert.match(String(ds.datasources[0].url), /^https?:\/\//);
  const boards = await read('dashboards/celeriac.yml');
  assert.equal(boards.apiVersion, 1);
  const provider = boards.providers?.[0];
  assert.equal(provider?.type, 'file');
  assert.match(String(provider?.options?.path), /^\//, 'an absolute folder for celeriac-dashboard.json');
});

test('the alert rules pass promtool check and their unit tests', async () => {
  assert.match(await promtool('check', 'rules', 'alerts.yml'), new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
  assert.deepEqual(ALERTS, ['CeleriacWorkerDown', 'CeleriacBacklogGrowing', 'CeleriacFailureRatioHigh', 'CeleriacDeadLetterGrowing', 'CeleriacQueueWaitP99High']);
  assert.match(await promtool('test', 'rules', 'alerts.test.yml'), /SUCCESS/);
  // Each alert has a unit test that expects it to fire.
  const unitTests = readFileSync(`${GRAFANA}alerts.test.yml`, 'utf8');
  for (const alert of ALERTS) assert.match(unitTests, new RegExp(`alertname: ${alert}\\n\\s+eval_time: \\S+\\n\\s+exp_alerts:\\n\\s+- exp_labels`), alert);
});

test('promtool accepts the example prometheus.yml (pods job on file discovery) with its rule file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'promcfg-'));
  try {
    const config = exampleConfig(dir, '127.0.0.1:9808', []);
    const out = await promtool('check', 'config', config);
    assert.match(out, /SUCCESS: 1 rule files found/);
    assert.match(out, new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface Vector {
  status: string;
  error?: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}
interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a Prometheus run from the example config, scraping a worker under load, answers every panel and alert', async () => {
  const hostname = `observed-${process.pid}@test`;
  const workerPort = await freePort();
  const worker = await startWorker({ url: env.redis.url, hostname, args: ['--metrics-port', String(workerPort), '--metrics-bind', '127.0.0.1', '-Q', 'celery,reports'] });
  // An application that sends tasks and exposes producerMetrics() on its own path, as an annotated pod.
  const registry = new Registry();
  producerMetrics(env.client.events, registry, 'producer@test');
  const app = createServer((req, res) => {
    if (req.url !== '/app-metrics') return void res.writeHead(404).end();
    void registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text));
  });
  const appPort = await freePort();
  await new Promise<void>((resolve) => app.listen(appPort, '127.0.0.1', resolve));

  const dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
  const config = exampleConfig(dir, `127.0.0.1:${workerPort}`, [
    // The pod's address carries the container port; the annotation says where the metrics are.
    { address: '127.0.0.1:8080', namespace: 'jobs', name: 'app-1', annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(appPort), 'prometheus.io/path': '/app-metrics' } },
    { address: '127.0.0.1:8081', namespace: 'jobs', name: 'unannotated-1', annotations: {} },
  ]);
  const promPort = await freePort();
  const base = `http://127.0.0.1:${promPort}/api/v1`;
  let log = '';
  const prometheus: ChildProcess = track(spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  prometheus.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${base}${path}`);
    return ((await res.json()) as { data: T }).data;
  };
  const query = async (expr: string): Promise<Vector> => (await fetch(`${base}/query?query=${encodeURIComponent(expr)}`)).json() as Promise<Vector>;
  const alerts = async (): Promise<Alert[]> => (await api<{ alerts: Alert[] }>('/alerts')).alerts;
  /** Polls `check` (errors count as "not yet": Prometheus may still be starting) for up to 30 s. */
  const until = async <T>(what: string, check: () => Promise<T | undefined | false>): Promise<T> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      assert.equal(prometheus.exitCode, null, `prometheus exited: ${log}`);
      const value = await check().catch(() => undefined);
      if (value) return value;
      assert.ok(Date.now() < deadline, `${what} within 30 s; prometheus log: ${log}`);
      await sleep(250);
    }
  };

  try {
    // A first scrape before any load, so counters and the dead-letter length have a starting point.
    await until('both targets scraped', async () => (await query('up == 1')).data.result.length === 2);

    const targets = await api<{ activeTargets: { labels: Record<string, string>; scrapeUrl: string; health: string }[]; droppedTargets: { discoveredLabels: Record<string, string> }[] }>('/targets');
    const pod = targets.activeTargets.find((t) => t.labels.job === 'celeriac-pods');
    assert.equal(pod?.scrapeUrl, `http://127.0.0.1:${appPort}/app-metrics`, 'the port and path annotations are honoured');
    assert.equal(pod?.labels.namespace, 'jobs');
    assert.equal(pod?.labels.pod, 'app-1');
    assert.equal(targets.activeTargets.find((t) => t.labels.job === 'celeriac')?.scrapeUrl, `http://127.0.0.1:${workerPort}/metrics`);
    assert.deepEqual(targets.droppedTargets.map((t) => t.discoveredLabels.__meta_kubernetes_pod_name), ['unannotated-1'], 'pods without prometheus.io/scrape are not scraped');

    // Load in rounds spread over several scrapes, so every rate() sees its counters move: successes,
    // failures, tasks on a second queue, then a retry, a dead letter, an expired (revoked) task and a
    // deferred one.
    const ROUNDS = 5, OK = 60, BAD = 5, OTHER = 10;
    for (let round = 0; round < ROUNDS; round++) {
      const ok = await env.client.sendMany(Array.from({ length: OK }, (_, i) => ({ name: 'celery_app.tasks.add', args: [i, round] })));
      const bad = await env.client.sendMany(Array.from({ length: BAD }, () => ({ name: 'celery_app.tasks.fail', args: ['load'] })));
      const other = await env.client.sendMany(Array.from({ length: OTHER }, () => ({ name: 'celery_app.tasks.sleep', args: [0.05], options: { queue: 'reports' } })));
      await Promise.all([...ok, ...other].map((r) => r.get({ timeout: 15_000 })));
      await Promise.all(bad.map((r) => r.get({ timeout: 15_000 }).catch(() => undefined)));
      await sleep(400);
    }
    await (await env.client.send('celery_app.tasks.flaky', [1, 0.1])).get({ timeout: 15_000 });
    await env.raw.lpush('celery', '{"not": "a message"', encode({ task: 'celery_app.tasks.add', args: [1, 1], kwargs: {}, queue: 'celery', expires: Date.now() - 1000 }).raw);
    await env.client.send('celery_app.tasks.add', [1, 1], {}, { countdown: 600 });
    await worker.waitFor(() => worker.events('task:rejected').length === 1 && worker.events('task:revoked').length === 1 && worker.events('task:deferred').length >= 2, 15_000, 'the dead letter, the revoke and the deferral');

    const succeeded = ROUNDS * (OK + OTHER) + 1;
    const sent = ROUNDS * (OK + BAD + OTHER) + 2;
    await until('Prometheus has the final counts', async () =>
      (await query(`sum(celery_task_succeeded_total) == ${succeeded} and on() sum(celery_task_sent_total) == ${sent} and on() sum(celery_task_rejected_total) == 1 and on() max(celeriac_eta_backlog) == 1`)).data.result.length === 1,
    );
    assert.equal(Number((await query('sum(celery_task_failed_total)')).data.result[0]?.value[1]), ROUNDS * BAD);
    // rate() needs two samples of a series: the late ones (retried, revoked, rejected) get their second.
    const ours = (await api<string[]>('/label/__name__/values')).filter((n) => /^celer(y|iac)_/.test(n));
    await until('two samples of every task series', async () => {
      for (const name of ours) if ((await query(`count_over_time(${name}[1m]) < 2`)).data.result.length > 0) return false;
      return true;
    });

    // The variables' own queries list this worker and both queues.
    const hostnames = await api<string[]>(`/label/hostname/values?match[]=celery_worker_up`);
    assert.deepEqual(hostnames, [hostname]);
    assert.deepEqual(await api<string[]>(`/label/queue_name/values?match[]=celery_queue_length`), ['celery', 'reports']);

    // Every target, for "All" (Grafana's allValue) and for this worker and both queues picked by hand
    // (Grafana formats a multi-value selection as a regex alternation). The rate window covers the
    // whole run. No panel is allowed to be empty: the load produces every outcome, and the series
    // that count rare events (thread restarts, recoveries) exist at 0 from the start.
    const selections = {
      all: { hostname: '.*', queue_name: '.*', __rate_interval: '1m' },
      picked: { hostname: escapeRegex(hostname), queue_name: '(celery|reports)', __rate_interval: '1m' },
    };
    for (const [selection, values] of Object.entries(selections)) {
      for (const { panel, expr } of dashboardExprs(values)) {
        const r = await query(expr);
        assert.equal(r.status, 'success', `${panel} (${selection}): ${expr}: ${r.error}`);
        assert.equal(r.data.resultType, 'vector', `${panel} (${selection}): ${expr}`);
        assert.ok(r.data.result.length > 0, `${panel} (${selection}) has data: ${expr}`);
        // A quantile is NaN when its buckets did not move in the window; the spread load makes them move.
        if (expr.startsWith('histogram_quantile')) {
          assert.ok(r.data.result.some((s) => Number.isFinite(Number(s.value[1]))), `${panel} (${selection}) has a number: ${expr} = ${JSON.stringify(r.data.result)}`);
        }
      }
    }
    assert.equal(Number((await query(dashboardExprs(selections.all).find((t) => t.panel === 'Queued messages')?.expr as string)).data.result[0]?.value[1]), 0, 'the queues are drained');

    // Every rule of alerts.yml, as Prometheus loaded it: evaluated without an error, and its
    // expression answers a query with a vector.
    const rules = await until('every rule evaluated', async () => {
      const groups = (await api<{ groups: { rules: { name: string; query: string; health: string; lastError?: string }[] }[] }>('/rules')).groups;
      const all = groups.flatMap((g) => g.rules);
      return all.every((r) => r.health === 'ok') && all;
    });
    assert.deepEqual(rules.map((r) => r.name), ALERTS);
    for (const rule of rules) {
      const r = await query(rule.query);
      assert.equal(r.status, 'success', `${rule.name}: ${rule.query}`);
      assert.equal(r.data.resultType, 'vector', `${rule.name}: ${rule.query}`);
    }
    // What the load calls for: the dead letter fires at once; `fail`, which always fails, is pending
    // (the rule waits 10 minutes); nothing says the worker is down while it runs.
    await until('CeleriacDeadLetterGrowing firing', async () => (await alerts()).some((a) => a.labels.alertname === 'CeleriacDeadLetterGrowing' && a.state === 'firing'));
    const now = await alerts();
    assert.ok(now.some((a) => a.labels.alertname === 'CeleriacFailureRatioHigh' && a.labels.name === 'celery_app.tasks.fail' && a.state === 'pending'), JSON.stringify(now));
    assert.ok(!now.some((a) => a.labels.alertname === 'CeleriacFailureRatioHigh' && a.labels.name === 'celery_app.tasks.add'), JSON.stringify(now));
    assert.ok(!now.some((a) => a.labels.alertname === 'CeleriacWorkerDown'), JSON.stringify(now));

    // A worker that goes away is noticed at the next scrape.
    await worker.stop();
    await until('CeleriacWorkerDown pending for the stopped worker', async () => (await alerts()).some((a) => a.labels.alertname === 'CeleriacWorkerDown' && a.labels.instance === `127.0.0.1:${workerPort}`));
  } finally {
    const exited = new Promise((resolve) => (prometheus.exitCode === null ? prometheus.once('exit', resolve) : resolve(null)));
    prometheus.kill('SIGKILL');
    await exited;
    app.close();
    await worker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
