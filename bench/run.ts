// `npm run bench`: celeriac against BullMQ and Python Celery on one private redis-server, on this
// machine, each with its best settings; prints one table with every figure and the ratios
// celeriac/BullMQ and celeriac/Celery, and writes JSON and an SVG chart of the ratios.
//
//   node dist/bench/run.js [--quick | --smoke] [--only enqueue,drain,...] [--reps N] [--json FILE] [--svg FILE]
//
// The peers run from bench/peers (bullmq-worker.mjs, celery_side.py, bench_app/), adapted from the
// reference harness in shared/bench. celeriac workers run as child processes of the real CLI.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { createClient, encode, type Client, type TaskCall } from '../src/index.js';
import { closeRedis, connect as connectRedis } from '../src/connection.js';
import { resultKey } from '../src/keys.js';
import { formatRatio, meets, ratiosSvg, type ChartRow } from './chart.js';
import {
  BENCH_TASKS,
  CLI,
  Child,
  FLOOR_WORKER,
  PEERS,
  cpuBusyElsewhere,
  PrivateRedis,
  ROOT,
  freePort,
  killAllChildren,
  median,
  percentile,
  rssMb,
  rssTreeMb,
  run,
  runningChildren,
  sleep,
  treeCpuSeconds,
  type JsonLine,
} from './harness.js';

// --- options -------------------------------------------------------------------------------------

const SCENARIOS = ['enqueue', 'drain', 'cpu', 'roundtrip', 'memory', 'metrics', 'eta', 'scaleout', 'floor'] as const;
type Scenario = (typeof SCENARIOS)[number];

const HELP = `npm run bench [-- options]   (or: node dist/bench/run.js [options])

  --quick          smaller sizes, one repetition (under 2 minutes on 2 cores)
  --smoke          tiny sizes, one configuration each (for the test suite; figures mean little)
  --only a,b       scenarios to run: ${SCENARIOS.join(', ')}
  --reps N         repetitions of each celeriac and BullMQ figure (median); default 3, quick 1
  --json FILE      write every figure, the ratios, the machine and the versions as JSON
  --svg FILE       write the ratio chart (default on a full run of every scenario: bench/ratios.svg)
  --python PATH    the Python with Celery (default /usr/bin/python3)
`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      only: { type: 'string' },
      reps: { type: 'string' },
      json: { type: 'string' },
      svg: { type: 'string' },
      python: { type: 'string', default: '/usr/bin/python3' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
} catch (err) {
  console.error(`bench: ${(err as Error).message}\n\n${HELP}`);
  process.exit(2);
}
const opt = parsed.values;
if (opt.help) {
  console.log(HELP);
  process.exit(0);
}
const MODE: 'smoke' | 'quick' | 'full' = opt.smoke ? 'smoke' : opt.quick ? 'quick' : 'full';
const only = opt.only ? opt.only.split(',').map((s) => s.trim()).filter(Boolean) : null;
for (const name of only ?? []) {
  if (!(SCENARIOS as readonly string[]).includes(name)) {
    console.error(`bench: --only: unknown scenario '${name}' (known: ${SCENARIOS.join(', ')})`);
    process.exit(2);
  }
}
const want = (s: Scenario): boolean => !only || only.includes(s);
const REPS = opt.reps !== undefined ? Number(opt.reps) : MODE === 'full' ? 3 : 1;
if (!Number.isInteger(REPS) || REPS < 1) {
  console.error(`bench: --reps: expected a whole number >= 1, got '${opt.reps}'`);
  process.exit(2);
}
/** Python Celery runs are long; they are repeated only when asked with --reps. */
const CELERY_REPS = opt.reps !== undefined ? REPS : 1;
const METRICS_PAIRS = MODE === 'full' ? Math.max(REPS, 5) : REPS;
const PYTHON = opt.python as string;
const CORES = availableParallelism();
const JSON_OUT = opt.json;
const SVG_OUT = opt.svg ?? (MODE === 'full' && !only ? join(ROOT, 'bench', 'ratios.svg') : undefined);

interface Sizes {
  enqueue: number;
  bulk: number;
  drain: number;
  celeryDrain: number;
  cpu: number;
  rt: number;
  eta: number;
  etaPrecision: number;
  etaSpreadMs: number;
  /** How long the RSS after the ETA burst may take to settle. */
  etaSettleMs: number;
  scale: number;
  floor: number;
}
const SIZES: Record<typeof MODE, Sizes> = {
  full: { enqueue: 5000, bulk: 50000, drain: 20000, celeryDrain: 5000, cpu: 1000, rt: 1000, eta: 100000, etaPrecision: 2000, etaSpreadMs: 5000, etaSettleMs: 120000, scale: 20000, floor: 200000 },
  quick: { enqueue: 2000, bulk: 10000, drain: 5000, celeryDrain: 2000, cpu: 400, rt: 300, eta: 20000, etaPrecision: 500, etaSpreadMs: 2000, etaSettleMs: 15000, scale: 5000, floor: 50000 },
  smoke: { enqueue: 200, bulk: 2000, drain: 1000, celeryDrain: 200, cpu: 40, rt: 40, eta: 2000, etaPrecision: 100, etaSpreadMs: 500, etaSettleMs: 5000, scale: 1000, floor: 5000 },
};
const N = SIZES[MODE];

/**
 * Node's option that gives V8 one helper thread (compiling, GC) instead of four. On 2 cores, four
 * compiling at the supervisor's priority take its core while a fresh worker warms up (README,
 * Configuration); both systems' drains are swept with and without it.
 */
const ONE_V8_HELPER = '--v8-pool-size=1';

/** A celeriac worker's settings in the drain sweep. */
interface DrainConfig {
  concurrency: number;
  prefetch: number;
  /** NODE_OPTIONS of the worker process ('' = none). */
  nodeOptions: string;
}
const drainConfig = (concurrency: number, prefetch: number, nodeOptions = ''): DrainConfig => ({ concurrency, prefetch, nodeOptions });
const withNodeOptions = (label: string, nodeOptions: string): string => (nodeOptions ? `${label}, NODE_OPTIONS=${nodeOptions}` : label);
const drainLabel = (d: DrainConfig): string => withNodeOptions(`-c ${d.concurrency} --prefetch-multiplier ${d.prefetch}`, d.nodeOptions);

const CELERIAC_SWEEP: Record<typeof MODE, DrainConfig[]> = {
  full: [drainConfig(1, 4), drainConfig(1, 200), drainConfig(2, 4), drainConfig(2, 50), drainConfig(2, 200), drainConfig(4, 200), drainConfig(1, 200, ONE_V8_HELPER), drainConfig(2, 200, ONE_V8_HELPER)],
  quick: [drainConfig(1, 200), drainConfig(2, 4), drainConfig(2, 200), drainConfig(2, 200, ONE_V8_HELPER)],
  smoke: [drainConfig(2, 50), drainConfig(2, 50, ONE_V8_HELPER)],
};
/** BullMQ drain sweep: [concurrency, NODE_OPTIONS]. */
const BULL_SWEEP: Record<typeof MODE, [number, string][]> = {
  full: [[1, ''], [10, ''], [100, ''], [100, ONE_V8_HELPER]],
  quick: [[1, ''], [10, ''], [100, ''], [100, ONE_V8_HELPER]],
  smoke: [[10, ''], [10, ONE_V8_HELPER]],
};
const CELERY_POOLS: Record<typeof MODE, [string, number][]> = {
  full: [['solo', 0], ['threads', 8], ['prefork', 2]],
  quick: [['solo', 0], ['threads', 8], ['prefork', 2]],
  smoke: [['solo', 0]],
};
/** The configuration of the celeriac-only scenarios when the drain sweep did not run. */
const DEFAULT_BEST = drainConfig(2, 200);

const DRAIN_FLOOR = 'fetch.lua, 1 Piscina thread, ack.lua, prefetch 200 (one JSON.parse, nothing checked)';
const NOOP = 'bench_app.tasks.noop';
const BURN = 'bench_app.tasks.burn';
const NOW = 'bench_app.tasks.now';

// --- results -------------------------------------------------------------------------------------

type System = 'celeriac' | 'bullmq' | 'celery' | 'redis' | 'floor';
type Figures = Record<string, number>;
interface Entry {
  scenario: Scenario;
  system: System;
  config: string;
  figures: Figures;
}
const entries: Entry[] = [];
const warnings: string[] = [];
const failures: { scenario: string; error: string }[] = [];

const SYSTEM_NAME: Record<System, string> = { celeriac: 'celeriac', bullmq: 'BullMQ', celery: 'Python Celery', redis: 'Redis', floor: 'floor' };

let lastMark = performance.now();
/** The seconds spent on the runs behind figures taken in turns, which record() cannot time itself. */
const turnSeconds = new WeakMap<Figures, number>();

function record(scenario: Scenario, system: System, config: string, figures: Figures): Entry {
  const entry = { scenario, system, config, figures };
  entries.push(entry);
  const took = (turnSeconds.get(figures) ?? (performance.now() - lastMark) / 1000).toFixed(1);
  lastMark = performance.now();
  console.error(`  ${scenario.padEnd(10)} ${`${SYSTEM_NAME[system]} ${config}`.padEnd(44)} ${formatFigures(figures)}  (${took} s)`);
  return entry;
}

function warn(text: string): void {
  warnings.push(text);
  console.error(`  warning: ${text}`);
}

/**
 * Each figure's median over the runs that have it: the CPU meter leaves its figures out of a run too
 * short to measure. A figure that came out NaN stays in, to show in the table.
 */
function medianFigures(runs: readonly Figures[]): Figures {
  const out: Figures = {};
  for (const key of new Set(runs.flatMap((r) => Object.keys(r)))) {
    const values = runs.flatMap((r) => (key in r ? [r[key] as number] : []));
    out[key] = median(values);
  }
  return out;
}

/**
 * Runs each of `fns` `times` times in turns (a, b, c, a, b, c, ...) and returns each one's medians.
 * This VM's speed moves from minute to minute (a raw LPUSH round trip from 3,600 to 25,000/s on one
 * day): taking turns lets every system see the same spells of it.
 */
async function interleaved<K extends string>(times: number, fns: Record<K, () => Promise<Figures>>): Promise<Record<K, Figures>> {
  const keys = Object.keys(fns) as K[];
  const runs = Object.fromEntries(keys.map((k) => [k, [] as Figures[]])) as Record<K, Figures[]>;
  const seconds = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  for (let i = 0; i < times; i++) {
    for (const k of keys) {
      const start = performance.now();
      runs[k].push(await fns[k]());
      seconds[k] += (performance.now() - start) / 1000;
    }
  }
  return Object.fromEntries(
    keys.map((k) => {
      const medians = medianFigures(runs[k]);
      turnSeconds.set(medians, seconds[k]);
      return [k, medians];
    }),
  ) as Record<K, Figures>;
}

async function repeat(times: number, fn: () => Promise<Figures>): Promise<Figures> {
  return (await interleaved(times, { only: fn })).only;
}

const fmtInt = (v: number): string => Math.round(v).toLocaleString('en-US');
const fmtMs = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const FIGURE_FORMAT: Record<string, (v: number) => string> = {
  jobs_per_s: (v) => `${fmtInt(v)} jobs/s`,
  efficiency: (v) => `${(v * 100).toFixed(0)}% of ideal`,
  p50_ms: (v) => `p50 ${fmtMs(v)} ms`,
  p99_ms: (v) => `p99 ${fmtMs(v)} ms`,
  max_ms: (v) => `max ${fmtMs(v)} ms`,
  min_ms: (v) => `min ${fmtMs(v)} ms`,
  rss_idle_mb: (v) => `RSS idle ${v.toFixed(1)} MB`,
  rss_ready_mb: (v) => `RSS at ready ${v.toFixed(1)} MB`,
  rss_after_mb: (v) => `RSS after ${v.toFixed(1)} MB`,
  cpu_us: (v) => `CPU per task ${v.toFixed(0)} µs`,
  worker_cpu_us: (v) => `worker ${v.toFixed(0)} µs`,
  redis_cpu_us: (v) => `Redis ${v.toFixed(0)} µs`,
  rss_growth_mb: (v) => `${v >= 0 ? '+' : ''}${v.toFixed(1)} MB kept`,
  rss_settled_mb: (v) => `RSS settled ${v.toFixed(1)} MB`,
  settle_s: (v) => `after ${v.toFixed(0)} s`,
  send_per_s: (v) => `sent ${fmtInt(v)}/s`,
  defer_per_s: (v) => `deferred ${fmtInt(v)}/s`,
  overhead_pct: (v) => `metrics cost ${v.toFixed(1)}%`,
  scrape_p50_ms: (v) => `scrape p50 ${fmtMs(v)} ms`,
  scrape_max_ms: (v) => `max ${fmtMs(v)} ms (target < 50 ms)`,
  scrape_unchanged_p50_ms: (v) => `unchanged series p50 ${fmtMs(v)} ms`,
  scrape_after_burst_p50_ms: (v) => `as a burst ends p50 ${fmtMs(v)} ms`,
  scrape_after_burst_max_ms: (v) => `max ${fmtMs(v)} ms`,
  series: (v) => `${fmtInt(v)} series`,
  on_jobs_per_s: (v) => `on ${fmtInt(v)} jobs/s`,
  off_jobs_per_s: (v) => `off ${fmtInt(v)} jobs/s`,
  tasks: (v) => `${fmtInt(v)} tasks`,
  set: (v) => `SET ${fmtInt(v)}/s`,
  lpush: (v) => `LPUSH ${fmtInt(v)}/s`,
  rpop: (v) => `RPOP ${fmtInt(v)}/s`,
  round_trips_per_s: (v) => `${fmtInt(v)} round trips/s`,
};
function formatFigures(f: Figures): string {
  return Object.entries(f)
    .map(([k, v]) => (FIGURE_FORMAT[k] ?? ((x: number) => `${k} ${Number.isInteger(x) ? x : x.toFixed(2)}`))(v))
    .join(', ');
}

// --- the private Redis and the processes ---------------------------------------------------------

let server = null as PrivateRedis | null;
let admin = null as Redis | null;
let url = '';
let port = 0;

function cleanupSync(): void {
  killAllChildren();
  server?.cleanup();
}
process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}: stopping workers and redis-server`);
    process.exit(130);
  });
}

function redis(): Redis {
  if (!admin) throw new Error('redis not started');
  return admin;
}

async function flush(): Promise<void> {
  await redis().flushall();
}

/** Keys with a TTL (INFO keyspace `expires=`): stored results, plus one heartbeat per celeriac worker. */
async function expiringKeys(): Promise<number> {
  const m = /expires=(\d+)/.exec(await redis().info('keyspace'));
  return m ? Number(m[1]) : 0;
}

interface Drained {
  jobs_per_s: number;
  /** performance.now() of the last poll, when all results were stored. */
  last: number;
}

/** Calls `each` with every batch of stored result keys; their count. */
async function scanResults(each: (keys: string[]) => Promise<unknown> = async () => undefined): Promise<number> {
  let cursor = '0';
  let count = 0;
  do {
    const [next, keys] = await redis().scan(cursor, 'MATCH', 'celery-task-meta-*', 'COUNT', 10000);
    cursor = next;
    count += keys.length;
    if (keys.length > 0) await each(keys);
  } while (cursor !== '0');
  return count;
}

/** The exact number of stored results: result keys, by SCAN (about 30 ms for 20,000 keys). */
const countResults = (): Promise<number> => scanResults();

/**
 * Polls the number of stored results (every 5 ms, as the reference harness does for Celery) until `n`
 * are stored. The rate counts from the first poll that saw a result to the one that saw them all.
 * The cheap count is INFO keyspace `expires=` (keys with a TTL) less `otherTtlKeys` (a celeriac
 * worker's heartbeat); other keys with a TTL (a lease, say) can make it run ahead by a few, so once it
 * says done, the exact count (SCAN) decides, polled until it is `n` too.
 */
async function waitStored(n: number, otherTtlKeys: number, timeoutMs: number, alive: () => boolean): Promise<Drained> {
  const start = performance.now();
  let first = 0;
  let firstCount = 0;
  const check = (stored: number, now: number): void => {
    if (now - start > timeoutMs) throw new Error(`only ${stored} of ${n} results stored after ${timeoutMs} ms`);
    if (!alive()) throw new Error(`the worker died with ${stored} of ${n} results stored`);
  };
  for (;;) {
    const stored = (await expiringKeys()) - otherTtlKeys;
    const now = performance.now();
    if (!first && stored >= 1) {
      first = now;
      firstCount = stored;
    }
    if (stored >= n) break;
    check(stored, now);
    await sleep(first ? 5 : 2);
  }
  for (;;) {
    const exact = await countResults();
    const now = performance.now();
    if (exact >= n) {
      if (now === first) throw new Error(`all ${n} results appeared between two polls: too few tasks to time`);
      return { jobs_per_s: (exact - firstCount) / ((now - first) / 1000), last: now };
    }
    check(exact, now);
    await sleep(5);
  }
}

/**
 * Checks the results a drain stored: `n` result keys (so the TTL-key count the rate was timed by was
 * right), and one of them a SUCCESS (so the rate is not one of failures).
 */
async function checkResults(what: string, n: number): Promise<void> {
  const count = await countResults();
  if (count !== n) warn(`${what}: ${count} result keys stored, expected ${n}`);
  const [, keys] = await redis().scan('0', 'MATCH', 'celery-task-meta-*', 'COUNT', 1000);
  const sample = keys[0];
  if (!sample) return;
  const meta = JSON.parse((await redis().get(sample)) ?? 'null') as { status?: string } | null;
  if (meta?.status !== 'SUCCESS') warn(`${what}: a stored result is ${meta?.status ?? 'missing'}: ${JSON.stringify(meta).slice(0, 300)}`);
}

const drainTimeout = (n: number, perSecond: number): number => 60_000 + (n / perSecond) * 1000 * 5;

// --- celeriac --------------------------------------------------------------------------------------

let workerSeq = 0;

interface CeleriacWorkerOptions {
  concurrency: number;
  prefetch: number;
  nodeOptions?: string;
  metricsPort?: number;
  /** Do not wait for the ready line. */
  noWait?: boolean;
}

async function startCeleriac(o: CeleriacWorkerOptions): Promise<Child> {
  const k = ++workerSeq;
  const args = [CLI, 'worker', '-A', BENCH_TASKS, '-c', String(o.concurrency), '--prefetch-multiplier', String(o.prefetch)];
  args.push('--metrics-port', String(o.metricsPort ?? 0), '--metrics-bind', '127.0.0.1');
  args.push('-n', `bench${k}-${process.pid}@%h`, '-l', 'warning', '--broker', url);
  const nodeOptions = o.nodeOptions ?? '';
  const child = new Child(`celeriac worker ${drainLabel({ nodeOptions, ...o })}`, process.execPath, args, { env: { NODE_OPTIONS: nodeOptions } });
  if (!o.noWait) await child.nextJson((l) => l.event === 'worker:ready', 30_000, 'worker:ready line');
  return child;
}

const workerReady = (child: Child): Promise<JsonLine> => child.nextJson((l) => l.event === 'worker:ready', 30_000, 'worker:ready line');

/** Warm shutdown; an exit code other than 0 or an error line is a warning in the report. */
async function stopCeleriac(child: Child): Promise<void> {
  const code = await child.stop('SIGTERM', 30_000);
  if (code !== 0) warn(`${child.name} exited with ${code ?? 'SIGKILL after 30 s'}: ${child.output.slice(-500)}`);
  for (;;) {
    const bad = await child.nextJson((l) => typeof l.level === 'number' && l.level >= 50, 0, '').catch(() => null);
    if (!bad) break;
    warn(`${child.name} logged: ${JSON.stringify(bad).slice(0, 400)}`);
  }
}

async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = createClient({ brokerUrl: url });
  try {
    await client.redis.ping();
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Queues `n` tasks with sendMany in batches of 1000. */
async function prefillCeleriac(n: number, call: (i: number) => TaskCall): Promise<void> {
  await withClient(async (client) => {
    for (let i = 0; i < n; i += 1000) await client.sendMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => call(i + j)));
  });
}

/**
 * CPU per task of a drain, from now until the returned function is called: the worker's (its threads
 * and child processes) and redis-server's. Set against the cores, they say what caps the rate. Left
 * out when either used less than 50 ms: /proc counts in ticks of 10 ms.
 */
function cpuMeter(workerPid: number, tasks: number): () => Figures {
  const redisPid = server?.child.pid;
  if (redisPid === undefined) return () => ({});
  const worker0 = treeCpuSeconds(workerPid);
  const redis0 = treeCpuSeconds(redisPid);
  return (): Figures => {
    const worker = treeCpuSeconds(workerPid) - worker0;
    const redis = treeCpuSeconds(redisPid) - redis0;
    if (worker < 0.05 || redis < 0.05) return {};
    const us = (seconds: number): number => (seconds / tasks) * 1e6;
    return { cpu_us: us(worker + redis), worker_cpu_us: us(worker), redis_cpu_us: us(redis) };
  };
}

async function celeriacDrain(n: number, config: DrainConfig, task: 'noop' | 'burn', metricsPort = 0): Promise<Figures> {
  await flush();
  await prefillCeleriac(n, (i) => (task === 'noop' ? { name: NOOP, args: [i, 1] } : { name: BURN, args: [5] }));
  const worker = await startCeleriac({ ...config, metricsPort, noWait: true });
  try {
    // Polling starts before the worker is ready, so the first result is not missed.
    const drained = waitStored(n, 1, drainTimeout(n, task === 'noop' ? 1000 : 50), () => worker.running);
    drained.catch(() => undefined); // awaited below; this only keeps a failed start from leaving it unhandled
    const ready = await workerReady(worker).then(() => rssMb(worker.pid));
    const cpu = cpuMeter(worker.pid, n);
    const { jobs_per_s } = await drained;
    const cpuFigures = cpu();
    const rssAfter = rssMb(worker.pid);
    await checkResults(`celeriac ${task} drain`, n);
    return { jobs_per_s, rss_ready_mb: ready, rss_after_mb: rssAfter, ...cpuFigures };
  } finally {
    await stopCeleriac(worker);
  }
}

/**
 * The drain floor (floor-worker.ts): the least a worker of our design can cost per task, on the same
 * queued messages, with the prefetch bound of our best configuration (-c 1, 200).
 */
async function floorDrain(n: number): Promise<Figures> {
  await flush();
  await prefillCeleriac(n, (i) => ({ name: NOOP, args: [i, 1] }));
  const worker = floorWorker('drain', '1', 'celery', '200');
  try {
    await worker.nextJson((l) => l.ready === true, 30_000, 'ready line');
    const cpu = cpuMeter(worker.pid, n);
    const { jobs_per_s } = await waitStored(n, 0, drainTimeout(n, 1000), () => worker.running);
    const cpuFigures = cpu();
    await checkResults('floor drain', n);
    return { jobs_per_s, ...cpuFigures };
  } finally {
    await worker.stop('SIGTERM', 10_000);
  }
}

// --- BullMQ ----------------------------------------------------------------------------------------

const bullConnection = (): { host: string; port: number; maxRetriesPerRequest: null } => ({ host: '127.0.0.1', port, maxRetriesPerRequest: null });

function startBull(queue: string, mode: 'noop' | 'burn' | 'sandbox', concurrency: number, expected: number, nodeOptions = ''): Child {
  const args = [join(PEERS, 'bullmq-worker.mjs'), url, queue, mode, String(concurrency), String(expected)];
  return new Child(withNodeOptions(`bullmq worker ${mode} c=${concurrency}`, nodeOptions), process.execPath, args, { cwd: PEERS, env: { NODE_OPTIONS: nodeOptions } });
}

async function bullDrain(n: number, mode: 'noop' | 'burn' | 'sandbox', concurrency: number, nodeOptions = ''): Promise<Figures> {
  await flush();
  const q = new Queue('bench', { connection: bullConnection() });
  try {
    for (let i = 0; i < n; i += 1000) {
      await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'j', data: mode === 'noop' ? { x: i + j, y: 1 } : { ms: 5 } })));
    }
  } finally {
    await q.close();
  }
  const w = startBull('bench', mode, concurrency, n, nodeOptions);
  try {
    const ready = await w.nextJson((l) => l.ready === true, 30_000, 'ready line');
    const cpu = cpuMeter(w.pid, n);
    const done = await w.nextJson((l) => typeof l.first_to_last_s === 'number', drainTimeout(n, mode === 'noop' ? 1000 : 50), 'done line');
    const cpuFigures = cpu();
    if (Number(done.failed) > 0) warn(`BullMQ ${mode} c=${concurrency}: ${String(done.failed)} jobs failed`);
    return { jobs_per_s: (n - 1) / Number(done.first_to_last_s), rss_ready_mb: Number(ready.rss_mb), rss_after_mb: Number(done.rss_mb), ...cpuFigures };
  } finally {
    await w.stop('SIGTERM', 10_000);
  }
}

// --- Python Celery ---------------------------------------------------------------------------------

const celeryEnv = (): NodeJS.ProcessEnv => ({ BENCH_REDIS_URL: url, PYTHONDONTWRITEBYTECODE: '1' });

async function py(args: string[], timeoutMs = 600_000): Promise<JsonLine> {
  const child = new Child(`celery_side.py ${args[0] ?? ''}`, PYTHON, ['celery_side.py', ...args], { cwd: PEERS, env: celeryEnv() });
  try {
    const line = await child.nextJson(() => true, timeoutMs, 'JSON line');
    await child.waitExit(30_000);
    return line;
  } finally {
    await child.stop('SIGKILL', 1000);
  }
}

function startCelery(pool: string, concurrency: number, loglevel = 'warning'): Child {
  const k = ++workerSeq;
  const args = ['-m', 'celery', '-A', 'bench_app', 'worker', `--pool=${pool}`, `--loglevel=${loglevel}`, '--without-heartbeat', '--without-gossip', '--without-mingle', '-n', `bench${k}-${process.pid}@%h`];
  if (concurrency) args.push('-c', String(concurrency));
  return new Child(`celery worker ${pool}${concurrency ? ` -c ${concurrency}` : ''}`, PYTHON, args, { cwd: PEERS, env: celeryEnv() });
}

async function celeryDrain(n: number, pool: string, concurrency: number, burnMs?: number): Promise<Figures> {
  await flush();
  await py(['prefill', String(n), ...(burnMs ? [String(burnMs)] : [])]);
  const w = startCelery(pool, concurrency);
  try {
    const { jobs_per_s } = await waitStored(n, 0, drainTimeout(n, burnMs ? 20 : 200), () => w.running);
    const rssAfter = rssTreeMb(w.pid);
    await checkResults(`Celery ${pool} drain`, n);
    return { jobs_per_s, rss_after_mb: rssAfter };
  } finally {
    await w.stop('SIGTERM', 15_000);
  }
}

const celeryLabel = (pool: string, concurrency: number): string => `${pool}${concurrency ? ` -c ${concurrency}` : ''}`;

/** The issue's bound: a scrape stays under 50 ms with this many task names and queues. */
const SCRAPE_TASKS = 1000;
const SCRAPE_QUEUES = 50;

/**
 * A worker with SCRAPE_TASKS registered tasks on SCRAPE_QUEUES queues: the time of a whole scrape
 * (Redis-read gauges included, and reading the body), after every task name ran once more (all series
 * changed), both with the worker idle and as its burst ends, and again with nothing run in between.
 */
async function scrapeTime(): Promise<Figures> {
  await flush();
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-scrape-'));
  const app = join(dir, 'many.mjs');
  writeFileSync(app, `import { defineTask } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'workers', 'registry.js')).href)};\nfor (let i = 0; i < ${SCRAPE_TASKS}; i++) defineTask(\`bench_app.many.t\${i}\`, () => i);\n`);
  const queues = Array.from({ length: SCRAPE_QUEUES }, (_, i) => `scrape${i}`);
  const metricsPort = await freePort();
  const args = [CLI, 'worker', '-A', app, '-c', '2', '-Q', queues.join(','), '--metrics-port', String(metricsPort), '--metrics-bind', '127.0.0.1', '-n', `scrape-${process.pid}@%h`, '-l', 'warning', '--broker', url];
  const worker = new Child('celeriac worker (1,000 tasks, 50 queues)', process.execPath, args);
  try {
    await workerReady(worker);
    // Timed until the last byte arrives, read into one buffer used again and again, as a Prometheus
    // server reuses its buffers: node:http allocates each read afresh, and fresh memory costs about
    // 3 ms per MB in this VM (page faults), 24 ms of the client's own on the clock for 8 MB.
    const readBuffer = Buffer.allocUnsafe(1 << 20);
    const scrape = (): Promise<number> =>
      new Promise((resolve, reject) => {
        const t = performance.now();
        let status = '';
        const socket = connect({
          host: '127.0.0.1',
          port: metricsPort,
          onread: {
            buffer: readBuffer,
            callback: (n) => {
              if (status === '') status = readBuffer.toString('latin1', 0, Math.min(n, 12));
              return true;
            },
          },
        });
        socket.on('connect', () => socket.write('GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'));
        socket.on('error', reject);
        socket.on('end', () => {
          const ms = performance.now() - t;
          if (status !== 'HTTP/1.1 200') reject(new Error(`/metrics answered ${status}`));
          else resolve(ms);
        });
      });
    /** Lines with a value, from a scrape off the clock. */
    const countSeries = (): Promise<number> =>
      new Promise((resolve, reject) => {
        httpGet(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve(Buffer.concat(chunks).toString().split('\n').filter((l) => l !== '' && !l.startsWith('#')).length));
        }).on('error', reject);
      });
    // Prometheus scrapes a worker from its start: one scrape before the tasks ever ran.
    await scrape();
    // Every task name runs once more before each of these scrapes, so every series has changed. A
    // Prometheus scrape lands at any moment; most find the worker idle, timed 250 ms after the last
    // result. Others land as a burst ends, while the worker finishes it (acks, then arming one
    // BLMOVE per watched list: 200 here, 5-9 ms of its event loop): those are timed apart, the scrape
    // starting as the last result is stored.
    const runAll = async (): Promise<void> => {
      // Only the results go: a FLUSHALL would also take the worker's heartbeat and claim, and the
      // worker busy re-registering and reconciling its lists (5-10 ms) would be timed as the scrape.
      await scanResults((keys) => redis().del(...keys));
      await prefillCeleriac(SCRAPE_TASKS, (i) => ({ name: `bench_app.many.t${i}`, args: [], options: { queue: queues[i % SCRAPE_QUEUES] as string } }));
      await waitStored(SCRAPE_TASKS, 1, drainTimeout(SCRAPE_TASKS, 100), () => worker.running);
    };
    const changed: number[] = [];
    const afterBurst: number[] = [];
    for (let round = 0; round < 5; round++) {
      await runAll();
      await sleep(250);
      changed.push(await scrape());
      await runAll();
      afterBurst.push(await scrape());
    }
    const unchanged: number[] = [];
    for (let i = 0; i < 10; i++) unchanged.push(await scrape());
    const series = await countSeries();
    return {
      scrape_p50_ms: median(changed),
      scrape_max_ms: Math.max(...changed),
      scrape_unchanged_p50_ms: median(unchanged),
      scrape_after_burst_p50_ms: median(afterBurst),
      scrape_after_burst_max_ms: Math.max(...afterBurst),
      series,
    };
  } finally {
    await stopCeleriac(worker);
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- scenarios -------------------------------------------------------------------------------------

const ideal = CORES * 200;
/** Round trips before the timed ones, the same for every system: the JIT of both Node peers warms up. */
const RT_WARM = MODE === 'smoke' ? 20 : 500;
/** Round trips each client makes in its turn of the round-trip scenario. */
const RT_ROUND = 100;

/**
 * Producers run in this process, one after the other, and share ioredis: whoever runs first would pay
 * for warming up the JIT of both. Each producer sends `warm` untimed messages before the timed `n`.
 */
async function timedSends(n: number, warm: number, step: number, send: (i: number) => Promise<unknown>): Promise<Figures> {
  for (let i = 0; i < warm; i += step) await send(i);
  const t = performance.now();
  for (let i = 0; i < n; i += step) await send(i);
  return { jobs_per_s: n / ((performance.now() - t) / 1000) };
}

async function withBullQueue<T>(fn: (q: Queue) => Promise<T>): Promise<T> {
  const q = new Queue('bench', { connection: bullConnection() });
  try {
    await q.waitUntilReady();
    return await fn(q);
  } finally {
    await q.close();
  }
}

const RT_SYSTEMS = ['celeriac', 'bullmq', 'floor', 'floorThread'] as const;
type RtSystem = (typeof RT_SYSTEMS)[number];
/** The queues of the two floor workers (floor-worker.ts): without a thread, and with a thread hop. */
const RT_FLOOR_QUEUES = { floor: 'bench-rt-floor', floorThread: 'bench-rt-floor-thread' } as const;

/**
 * The floors' client: listening for every result already (one PSUBSCRIBE, as BullMQ's QueueEvents
 * reads one stream for every job), so a round trip is one LPUSH and the wait for the PUBLISH.
 */
async function withFloorClient<T>(fn: (trip: (queue: string, i: number) => Promise<void>) => Promise<T>): Promise<T> {
  const cmd = connectRedis(url);
  const sub = connectRedis(url);
  const waiting = new Map<string, () => void>();
  sub.on('pmessage', (_pattern: string, channel: string) => waiting.get(channel)?.());
  try {
    await sub.psubscribe(resultKey('*'));
    return await fn(async (queue, i) => {
      const msg = encode({ task: NOOP, args: [i, 1], kwargs: {}, queue, sentAt: Date.now() });
      const channel = resultKey(msg.id);
      let timer: NodeJS.Timeout | undefined;
      const published = new Promise<void>((resolve, reject) => {
        waiting.set(channel, resolve);
        timer = setTimeout(() => reject(new Error(`the floor worker on ${queue} sent no result within 10 s`)), 10_000);
      });
      try {
        await cmd.lpush(msg.list, msg.raw);
        await published;
      } finally {
        clearTimeout(timer);
        waiting.delete(channel);
      }
    });
  } finally {
    await Promise.all([closeRedis(cmd), closeRedis(sub)]);
  }
}

/** Sequential round trips, each system's client taking turns of RT_ROUND; every worker is up. */
async function roundTripsInTurns(): Promise<Record<RtSystem, number[]>> {
  const q = new Queue('rt', { connection: bullConnection() });
  const qe = new QueueEvents('rt', { connection: bullConnection() });
  try {
    await qe.waitUntilReady();
    return await withClient((client) => withFloorClient(async (floorTrip) => {
      const once: Record<RtSystem, (i: number) => Promise<unknown>> = {
        celeriac: async (i) => (await client.send(NOOP, [i, 1])).get({ timeout: 10_000 }),
        bullmq: async (i) => (await q.add('j', { x: i, y: 1 })).waitUntilFinished(qe, 10_000),
        floor: (i) => floorTrip(RT_FLOOR_QUEUES.floor, i),
        floorThread: (i) => floorTrip(RT_FLOOR_QUEUES.floorThread, i),
      };
      const out: Record<RtSystem, number[]> = { celeriac: [], bullmq: [], floor: [], floorThread: [] };
      for (const system of RT_SYSTEMS) for (let i = 0; i < RT_WARM; i++) await once[system](i);
      for (let done = 0; done < N.rt; done += RT_ROUND) {
        for (const system of RT_SYSTEMS) {
          for (let i = done; i < Math.min(N.rt, done + RT_ROUND); i++) {
            const t = performance.now();
            await once[system](i);
            out[system].push(performance.now() - t);
          }
        }
      }
      return out;
    }));
  } finally {
    await Promise.allSettled([qe.close(), q.close()]);
  }
}

const scenarios: Record<Scenario, () => Promise<void>> = {
  async enqueue() {
    const warm = Math.max(50, N.enqueue / 4);
    const warmBulk = Math.max(1000, Math.round(N.bulk / 4000) * 1000);
    const batch = (i: number): number[] => Array.from({ length: 1000 }, (_, j) => i + j);
    // The floor of an awaited send, measured in turns with the sends (see interleaved).
    const awaited = await interleaved(REPS, {
      floor: () => sequentialLpush(N.enqueue),
      library: () => sequentialLibraryLpush(N.enqueue, warm),
      celeriac: async () => {
        await flush();
        return withClient((client) => timedSends(N.enqueue, warm, 1, (i) => client.send(NOOP, [i, 1])));
      },
      bullmq: async () => {
        await flush();
        return withBullQueue((q) => timedSends(N.enqueue, warm, 1, (i) => q.add('j', { x: i, y: 1 })));
      },
    });
    const bulk = await interleaved(REPS, {
      celeriac: async () => {
        await flush();
        return withClient((client) => timedSends(N.bulk, warmBulk, 1000, (i) => client.sendMany(batch(i).map((x) => ({ name: NOOP, args: [x, 1] })))));
      },
      bullmq: async () => {
        await flush();
        return withBullQueue((q) => timedSends(N.bulk, warmBulk, 1000, (i) => q.addBulk(batch(i).map((x) => ({ name: 'j', data: { x, y: 1 } })))));
      },
    });
    record('enqueue', 'redis', 'raw socket, one LPUSH at a time (the floor)', awaited.floor);
    record('enqueue', 'redis', 'ioredis, one pre-encoded message at a time', awaited.library);
    record('enqueue', 'celeriac', 'send (awaited, one by one)', awaited.celeriac);
    record('enqueue', 'celeriac', 'sendMany (batches of 1000)', bulk.celeriac);
    record('enqueue', 'bullmq', 'add (awaited, one by one)', awaited.bullmq);
    record('enqueue', 'bullmq', 'addBulk (batches of 1000)', bulk.bullmq);
    record('enqueue', 'celery', 'apply_async (one by one)', await repeat(CELERY_REPS, async () => {
      await flush();
      const r = await py(['enqueue', String(N.enqueue)]);
      return { jobs_per_s: N.enqueue / Number(r.seconds) };
    }));
  },

  async drain() {
    // Every configuration of both systems runs once per turn: this VM's speed drifts over minutes. With
    // one system's sweep after the other's, two runs ten minutes apart gave 0.82x and 1.29x BullMQ.
    const sweep: Record<string, () => Promise<Figures>> = {};
    for (const d of CELERIAC_SWEEP[MODE]) sweep[`celeriac\t${drainLabel(d)}`] = () => celeriacDrain(N.drain, d, 'noop');
    for (const [c, o] of BULL_SWEEP[MODE]) sweep[`bullmq\t${withNodeOptions(`concurrency ${c}`, o)}`] = () => bullDrain(N.drain, 'noop', c, o);
    sweep[`floor\t${DRAIN_FLOOR}`] = () => floorDrain(N.drain);
    for (const [key, figures] of Object.entries(await interleaved(REPS, sweep))) {
      const [system, config] = key.split('\t') as [System, string];
      record('drain', system, config, figures);
    }
    for (const [pool, c] of CELERY_POOLS[MODE]) {
      record('drain', 'celery', celeryLabel(pool, c), await repeat(CELERY_REPS, () => celeryDrain(N.celeryDrain, pool, c)));
    }
  },

  async cpu() {
    const prefetches = MODE === 'full' ? [4, 16, 32] : MODE === 'quick' ? [16] : [1];
    for (const p of prefetches) {
      const f = await repeat(REPS, () => celeriacDrain(N.cpu, drainConfig(CORES, p), 'burn'));
      record('cpu', 'celeriac', `-c ${CORES} --prefetch-multiplier ${p}`, { jobs_per_s: f.jobs_per_s as number, efficiency: (f.jobs_per_s as number) / ideal });
    }
    for (const mode of MODE === 'full' ? (['sandbox', 'burn'] as const) : (['sandbox'] as const)) {
      const f = await repeat(REPS, () => bullDrain(N.cpu, mode, CORES));
      record('cpu', 'bullmq', `${mode === 'sandbox' ? 'sandboxed (worker threads)' : 'in-process'} concurrency ${CORES}`, { jobs_per_s: f.jobs_per_s as number, efficiency: (f.jobs_per_s as number) / ideal });
    }
    const f = await repeat(CELERY_REPS, () => celeryDrain(N.cpu, 'prefork', CORES, 5));
    record('cpu', 'celery', `prefork -c ${CORES}`, { jobs_per_s: f.jobs_per_s as number, efficiency: (f.jobs_per_s as number) / ideal });
  },

  async roundtrip() {
    const latencyFigures = (lat: readonly number[]): Figures => ({ p50_ms: percentile(lat, 0.5), p99_ms: percentile(lat, 0.99), max_ms: Math.max(...lat) });
    // Both workers are up and the two clients take turns of RT_ROUND round trips, as interleaved()
    // does for whole runs: a spell of this VM slowing down falls on both.
    {
      await flush();
      const w = await startCeleriac({ concurrency: 1, prefetch: 4 });
      try {
        const bull = startBull('rt', 'noop', 1, 0);
        const floors = [
          floorWorker('round trip without a thread', '0', RT_FLOOR_QUEUES.floor),
          floorWorker('round trip with a thread hop', '1', RT_FLOOR_QUEUES.floorThread),
        ];
        try {
          await Promise.all([bull, ...floors].map((c) => c.nextJson((l) => l.ready === true, 30_000, 'ready line')));
          const lat = await roundTripsInTurns();
          record('roundtrip', 'celeriac', 'send().get(), worker -c 1', latencyFigures(lat.celeriac));
          record('roundtrip', 'bullmq', 'add().waitUntilFinished(), concurrency 1', latencyFigures(lat.bullmq));
          record('roundtrip', 'floor', 'no thread: ioredis BLMOVE, one MULTI (SET, PUBLISH, LREM); client listening already', latencyFigures(lat.floor));
          record('roundtrip', 'floor', 'a bare Piscina thread between the BLMOVE and the MULTI; the same client', latencyFigures(lat.floorThread));
        } finally {
          await Promise.all([bull, ...floors].map((c) => c.stop('SIGTERM', 10_000)));
        }
      } finally {
        await stopCeleriac(w);
      }
    }
    {
      await flush();
      const w = startCelery('solo', 0);
      try {
        const r = await py(['roundtrip', String(N.rt), String(RT_WARM)]);
        record('roundtrip', 'celery', 'delay().get(), pool solo', latencyFigures(r.latencies_ms as number[]));
      } finally {
        await w.stop('SIGTERM', 15_000);
      }
    }
  },

  async memory() {
    // Idle: one second after the worker says it is ready, nothing queued.
    {
      await flush();
      const w = await startCeleriac({ concurrency: 2, prefetch: 4 });
      try {
        await sleep(1000);
        record('memory', 'celeriac', 'idle, -c 2', { rss_idle_mb: rssMb(w.pid) });
      } finally {
        await stopCeleriac(w);
      }
    }
    await flush();
    record('memory', 'bullmq', 'idle, concurrency 10', await idleRss(startBull('bench', 'noop', 10, 0)));
    // What any worker of our design weighs: Node, ioredis's two connections and two bare pool threads.
    record('memory', 'floor', 'idle: Node, ioredis (2 connections), 2 bare Piscina threads', await idleRss(floorWorker('2 threads', '2')));
    for (const [pool, c] of MODE === 'smoke' ? ([['solo', 0]] as const) : ([['solo', 0], ['prefork', 2]] as const)) {
      await flush();
      const w = startCelery(pool, c, 'info');
      try {
        await w.waitText(/ ready\./, 60_000);
        await sleep(1000);
        record('memory', 'celery', `idle, ${celeryLabel(pool, c)} (with pool processes)`, { rss_idle_mb: rssTreeMb(w.pid) });
      } finally {
        await w.stop('SIGTERM', 15_000);
      }
    }
  },

  async metrics() {
    const best = bestCeleriacDrain();
    const on: number[] = [];
    const off: number[] = [];
    // A fresh worker's drain varies by ±10 % from run to run: more interleaved pairs than elsewhere
    // for a difference of a few percent.
    for (let i = 0; i < METRICS_PAIRS; i++) {
      off.push((await celeriacDrain(N.drain, best, 'noop', 0)).jobs_per_s as number);
      on.push((await celeriacDrain(N.drain, best, 'noop', await freePort())).jobs_per_s as number);
    }
    const onRate = median(on);
    const offRate = median(off);
    record('metrics', 'celeriac', `drain ${drainLabel(best)}, /metrics on vs off`, { on_jobs_per_s: onRate, off_jobs_per_s: offRate, overhead_pct: ((offRate - onRate) / offRate) * 100 });
    record('metrics', 'celeriac', `GET /metrics, ${fmtInt(SCRAPE_TASKS)} task names on ${SCRAPE_QUEUES} queues`, await scrapeTime());
  },

  async eta() {
    // Many ETA tasks: where they are kept (Redis, not the worker's memory) and how fast they are deferred.
    {
      await flush();
      const w = await startCeleriac({ concurrency: 2, prefetch: 4 });
      try {
        await sleep(1000);
        const idle = rssMb(w.pid);
        const t = performance.now();
        await prefillCeleriac(N.eta, (i) => ({ name: NOOP, args: [i, 1], options: { countdown: 3600 } }));
        const sent = performance.now();
        const deadline = Date.now() + 60_000 + N.eta;
        let deferred = 0;
        while ((deferred = await redis().zcard('celeriac:eta')) < N.eta) {
          if (Date.now() > deadline) throw new Error(`only ${deferred} of ${N.eta} ETA tasks deferred`);
          if (!w.running) throw new Error('the worker died while deferring ETA tasks');
          await sleep(10);
        }
        const done = performance.now();
        await sleep(1000);
        const after = rssMb(w.pid);
        // The burst grows the heap; V8 gives it back once the worker has idled a while. What the
        // deferred tasks cost is what stays: RSS once it settles (within 5 MB of idle, or
        // N.etaSettleMs): V8 gave the memory back 15-30 s after a burst of 100,000 here while the
        // command connection auto-pipelined, and 60-120 s after since it does not (less garbage, so
        // no full collection soon).
        let settled = after;
        const settleStart = performance.now();
        while (settled - idle > 5 && performance.now() - settleStart < N.etaSettleMs) {
          await sleep(1000);
          settled = rssMb(w.pid);
        }
        const stored = await countResults();
        if (stored > 0) warn(`eta: ${stored} ETA tasks due in an hour ran already`);
        record('eta', 'celeriac', `${fmtInt(N.eta)} tasks due in 1 h, -c 2`, {
          tasks: N.eta,
          send_per_s: N.eta / ((sent - t) / 1000),
          defer_per_s: N.eta / ((done - t) / 1000),
          rss_idle_mb: idle,
          rss_after_mb: after,
          rss_settled_mb: settled,
          settle_s: (performance.now() - settleStart) / 1000,
          rss_growth_mb: settled - idle,
        });
      } finally {
        await stopCeleriac(w);
      }
    }
    // Precision: how late a task due at a given time starts.
    {
      await flush();
      const w = await startCeleriac({ concurrency: 2, prefetch: 4 });
      try {
        const k = N.etaPrecision;
        const base = Date.now() + 1000;
        const etas = Array.from({ length: k }, (_, i) => base + Math.round((i * N.etaSpreadMs) / k));
        const ids: string[] = [];
        await withClient(async (client) => {
          for (let i = 0; i < k; i += 1000) {
            const rs = await client.sendMany(etas.slice(i, i + 1000).map((eta) => ({ name: NOW, options: { eta } })));
            ids.push(...rs.map((r) => r.id));
          }
        });
        await waitStored(k, 1, 60_000 + N.etaSpreadMs, () => w.running);
        const late: number[] = [];
        for (let i = 0; i < k; i += 1000) {
          const metas = await redis().mget(ids.slice(i, i + 1000).map((id) => `celery-task-meta-${id}`));
          metas.forEach((m, j) => {
            const meta = JSON.parse(m ?? 'null') as { status?: string; result?: unknown } | null;
            if (meta?.status !== 'SUCCESS' || typeof meta.result !== 'number') throw new Error(`eta precision: unexpected result ${m}`);
            late.push(meta.result - (etas[i + j] as number));
          });
        }
        const early = late.filter((x) => x < 0).length;
        if (early) warn(`eta precision: ${early} of ${k} tasks started before their ETA (min ${Math.min(...late)} ms)`);
        record('eta', 'celeriac', `${fmtInt(k)} tasks due over ${N.etaSpreadMs / 1000} s: start - eta`, {
          p50_ms: percentile(late, 0.5),
          p99_ms: percentile(late, 0.99),
          max_ms: Math.max(...late),
          min_ms: Math.min(...late),
        });
      } finally {
        await stopCeleriac(w);
      }
    }
  },

  async scaleout() {
    // Workers are ready before the tasks appear: the tasks are queued under another name and renamed
    // into the queue at once (RENAME wakes blocked BLMOVEs), so no worker's start-up is in the rate.
    const best = bestCeleriacDrain();
    for (const procs of MODE === 'smoke' ? [2] : [1, 2, 4]) {
      const f = await repeat(REPS, async () => {
        await flush();
        await prefillCeleriac(N.scale, (i) => ({ name: NOOP, args: [i, 1] }));
        await redis().rename('celery', 'bench:staging');
        const workers: Child[] = [];
        try {
          for (let i = 0; i < procs; i++) workers.push(await startCeleriac({ ...best, noWait: true }));
          await Promise.all(workers.map(workerReady));
          const drained = waitStored(N.scale, procs, drainTimeout(N.scale, 1000), () => workers.every((w) => w.running));
          drained.catch(() => undefined);
          await redis().rename('bench:staging', 'celery');
          const { jobs_per_s } = await drained;
          await checkResults('scale-out drain', N.scale);
          return { jobs_per_s };
        } finally {
          for (const w of workers) await stopCeleriac(w);
        }
      });
      record('scaleout', 'celeriac', `${procs} worker process${procs > 1 ? 'es' : ''}, each ${drainLabel(best)}`, f);
    }
  },

  async floor() {
    for (const pipe of [1, 16]) {
      const out = run('redis-benchmark', ['-p', String(port), '-q', '-t', 'lpush,rpop,set', '-n', String(N.floor), '-P', String(pipe)], 300_000);
      const figures: Figures = {};
      for (const m of out.matchAll(/([A-Z]+)[^:\n]*:\s*([\d.]+) requests per second/g)) figures[(m[1] as string).toLowerCase()] = Number(m[2]);
      record('floor', 'redis', `redis-benchmark -P ${pipe}`, figures);
    }
  },
};

/**
 * The floor of an awaited send: one connection, one LPUSH of a task-sized message at a time, on a raw
 * socket that does nothing else (no client library, no encoding). redis-benchmark runs 50 clients.
 */
async function sequentialLpush(n: number): Promise<Figures> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  await flush();
  const value = 'x'.repeat(840);
  const command = Buffer.from(`*3\r\n$5\r\nLPUSH\r\n$11\r\nbench-floor\r\n$${value.length}\r\n${value}\r\n`);
  let waiter: { resolve: () => void; reject: (err: Error) => void } | null = null;
  const fail = (err: Error): void => waiter?.reject(err);
  // Each reply (`:n\r\n`, a few bytes) arrives whole: only one command is ever out.
  socket.on('data', (reply: Buffer) => (reply[0] === 0x3a ? waiter?.resolve() : fail(new Error(`LPUSH answered ${reply.toString().trim()}`))));
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('Redis closed the connection')));
  const once = (): Promise<void> =>
    new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      socket.write(command);
    });
  try {
    for (let i = 0; i < Math.min(1000, n); i++) await once();
    const lat: number[] = [];
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await once();
      lat.push(performance.now() - s);
    }
    return { round_trips_per_s: n / ((performance.now() - t) / 1000), p50_ms: percentile(lat, 0.5), p99_ms: percentile(lat, 0.99) };
  } finally {
    socket.destroy();
  }
}

/**
 * The floor of an awaited send through the client library: ioredis set up as our client sets it up,
 * sending one message that was encoded (and flattened) before timing, so no encoding at all. Our send
 * against it is our own cost per send; it against BullMQ's `add` is the most an ioredis client could show.
 */
async function sequentialLibraryLpush(n: number, warm: number): Promise<Figures> {
  const conn = connectRedis(url);
  try {
    await conn.ping();
    await flush();
    const raw = encode({ task: NOOP, args: [0, 1], kwargs: {}, queue: 'bench-floor', sentAt: Date.now() }).raw;
    const { jobs_per_s } = await timedSends(n, warm, 1, () => conn.lpush('bench-floor', raw));
    return { round_trips_per_s: jobs_per_s as number };
  } finally {
    await closeRedis(conn);
  }
}

/** floor-worker.js on the bench's Redis: THREADS, and QUEUE for a round trip. */
function floorWorker(what: string, ...args: string[]): Child {
  return new Child(`floor worker, ${what}`, process.execPath, [FLOOR_WORKER, url, ...args]);
}

/** RSS of a worker that prints a `ready` line, one second after that line; then stops it. */
async function idleRss(w: Child): Promise<Figures> {
  try {
    await w.nextJson((l) => l.ready === true, 30_000, 'ready line');
    await sleep(1000);
    return { rss_idle_mb: rssMb(w.pid) };
  } finally {
    await w.stop('SIGTERM', 10_000);
  }
}

function bestCeleriacDrain(): DrainConfig {
  const best = bestEntry('drain', 'celeriac', 'jobs_per_s', 'max');
  return CELERIAC_SWEEP[MODE].find((d) => drainLabel(d) === best?.config) ?? DEFAULT_BEST;
}

function bestEntry(scenario: Scenario, system: System, key: string, pick: 'max' | 'min'): Entry | undefined {
  let best: Entry | undefined;
  for (const e of entries) {
    if (e.scenario !== scenario || e.system !== system) continue;
    const v = e.figures[key];
    if (v === undefined || !Number.isFinite(v)) continue;
    const b = best?.figures[key];
    if (b === undefined || (pick === 'max' ? v > b : v < b)) best = e;
  }
  return best;
}

// --- ratios ------------------------------------------------------------------------------------------

interface Target {
  op: '>=' | '<=';
  value: number;
}
interface Ratio {
  key: string;
  label: string;
  value: number;
  /** The celeriac entry the ratio belongs to, and the column it is shown in. */
  ours: Entry;
  column: 'bullmq' | 'celery' | 'none';
  short: string;
  target?: Target;
}

function ratios(): Ratio[] {
  const out: Ratio[] = [];
  const add = (key: string, label: string, short: string, column: Ratio['column'], ours: Entry | undefined, ourKey: string, theirs: Entry | undefined | number, theirKey: string, target?: Target): void => {
    if (!ours || theirs === undefined) return;
    const a = ours.figures[ourKey];
    const b = typeof theirs === 'number' ? theirs : theirs.figures[theirKey];
    if (a === undefined || b === undefined || !Number.isFinite(a / b)) return;
    out.push({ key, label, short, column, ours, value: a / b, ...(target ? { target } : {}) });
  };
  const find = (scenario: Scenario, system: System, config: string): Entry | undefined => entries.find((e) => e.scenario === scenario && e.system === system && e.config.startsWith(config));

  const sendOne = find('enqueue', 'celeriac', 'send');
  const sendBulk = find('enqueue', 'celeriac', 'sendMany');
  add('enqueue_awaited_vs_bullmq', 'enqueue, awaited one by one', '', 'bullmq', sendOne, 'jobs_per_s', find('enqueue', 'bullmq', 'add '), 'jobs_per_s', { op: '>=', value: 2 });
  add('enqueue_awaited_vs_celery', 'enqueue, awaited one by one', '', 'celery', sendOne, 'jobs_per_s', find('enqueue', 'celery', 'apply_async'), 'jobs_per_s');
  add('enqueue_bulk_vs_bullmq', 'enqueue, bulk (1000)', '', 'bullmq', sendBulk, 'jobs_per_s', find('enqueue', 'bullmq', 'addBulk'), 'jobs_per_s', { op: '>=', value: 3 });
  // An awaited send is one round trip: how near it comes to a bare socket's.
  const floorRtt = find('enqueue', 'redis', 'raw socket');
  add('enqueue_awaited_vs_floor', 'awaited send vs raw-socket LPUSH floor', '', 'none', sendOne, 'jobs_per_s', floorRtt, 'round_trips_per_s');
  const libraryFloor = find('enqueue', 'redis', 'ioredis');
  add('enqueue_awaited_vs_library_floor', 'awaited send vs ioredis sending a pre-encoded message', '', 'none', sendOne, 'jobs_per_s', libraryFloor, 'round_trips_per_s');
  add('enqueue_library_floor_vs_bullmq', 'ioredis pre-encoded LPUSH vs BullMQ add (the most an ioredis client could show)', '', 'none', libraryFloor, 'round_trips_per_s', find('enqueue', 'bullmq', 'add '), 'jobs_per_s');

  const drain = bestEntry('drain', 'celeriac', 'jobs_per_s', 'max');
  const bullDrainBest = bestEntry('drain', 'bullmq', 'jobs_per_s', 'max');
  add('drain_vs_bullmq', 'no-op drain, best settings', '', 'bullmq', drain, 'jobs_per_s', bullDrainBest, 'jobs_per_s', { op: '>=', value: 2 });
  add('drain_vs_celery', 'no-op drain, best settings', '', 'celery', drain, 'jobs_per_s', bestEntry('drain', 'celery', 'jobs_per_s', 'max'), 'jobs_per_s', { op: '>=', value: 20 });
  // What our own code costs on top of the design's hot path, and the most the design could show.
  const drainFloor = find('drain', 'floor', '');
  add('drain_vs_floor', 'no-op drain vs the floor of our design (fetch.lua, a thread hop, ack.lua)', '', 'none', drain, 'jobs_per_s', drainFloor, 'jobs_per_s');
  add('drain_floor_vs_bullmq', 'no-op drain, the floor of our design vs BullMQ (the most our design could show)', '', 'none', drainFloor, 'jobs_per_s', bullDrainBest, 'jobs_per_s');

  const cpu = bestEntry('cpu', 'celeriac', 'jobs_per_s', 'max');
  add('cpu_efficiency', `CPU 5 ms tasks: share of ${CORES} × 200/s`, 'of ideal', 'none', cpu, 'jobs_per_s', ideal, '', { op: '>=', value: 0.9 });
  add('cpu_vs_bullmq', 'CPU 5 ms tasks, best settings', '', 'bullmq', cpu, 'jobs_per_s', bestEntry('cpu', 'bullmq', 'jobs_per_s', 'max'), 'jobs_per_s');
  add('cpu_vs_celery', 'CPU 5 ms tasks, best settings', '', 'celery', cpu, 'jobs_per_s', bestEntry('cpu', 'celery', 'jobs_per_s', 'max'), 'jobs_per_s');

  const rt = find('roundtrip', 'celeriac', '');
  const rtBull = find('roundtrip', 'bullmq', '');
  const rtCelery = find('roundtrip', 'celery', '');
  add('roundtrip_p50_vs_bullmq', 'round trip p50 (lower is better)', 'p50', 'bullmq', rt, 'p50_ms', rtBull, 'p50_ms', { op: '<=', value: 0.5 });
  add('roundtrip_p99_vs_bullmq', 'round trip p99 (lower is better)', 'p99', 'bullmq', rt, 'p99_ms', rtBull, 'p99_ms', { op: '<=', value: 0.5 });
  add('roundtrip_p50_vs_celery', 'round trip p50 (lower is better)', 'p50', 'celery', rt, 'p50_ms', rtCelery, 'p50_ms');
  add('roundtrip_p99_vs_celery', 'round trip p99 (lower is better)', 'p99', 'celery', rt, 'p99_ms', rtCelery, 'p99_ms');
  // Above 0.5, the p50 target is out of reach: for any worker that hands tasks to a Piscina thread
  // (thread floor), and for any worker on BLMOVE and one result write (no-thread floor).
  const rtFloor = find('roundtrip', 'floor', 'a bare Piscina thread');
  add('roundtrip_p50_vs_floor', 'round trip p50 vs the floor with a thread hop', '', 'none', rt, 'p50_ms', rtFloor, 'p50_ms');
  add('roundtrip_floor_vs_bullmq', 'round trip p50, the floor with a thread hop vs BullMQ (the least our design could show)', '', 'none', rtFloor, 'p50_ms', rtBull, 'p50_ms');
  add('roundtrip_nothread_floor_vs_bullmq', 'round trip p50, the floor without a thread vs BullMQ', '', 'none', find('roundtrip', 'floor', 'no thread'), 'p50_ms', rtBull, 'p50_ms');

  const idle = find('memory', 'celeriac', 'idle');
  add('idle_rss_vs_bullmq', 'worker idle RSS (lower is better)', '', 'bullmq', idle, 'rss_idle_mb', find('memory', 'bullmq', 'idle'), 'rss_idle_mb', { op: '<=', value: 1 });
  const idleFloor = find('memory', 'floor', 'idle');
  add('idle_rss_vs_floor', 'worker idle RSS vs Node, ioredis and 2 bare threads', '', 'none', idle, 'rss_idle_mb', idleFloor, 'rss_idle_mb');
  add('idle_rss_floor_vs_bullmq', 'Node, ioredis and 2 bare threads vs BullMQ worker (the least our design could show)', '', 'none', idleFloor, 'rss_idle_mb', find('memory', 'bullmq', 'idle'), 'rss_idle_mb');
  add('idle_rss_vs_celery', 'idle RSS vs solo (lower is better)', '', 'celery', idle, 'rss_idle_mb', find('memory', 'celery', 'idle, solo'), 'rss_idle_mb');
  add('drain_cpu_vs_bullmq', 'no-op drain, CPU per task, worker and Redis (lower is better)', 'CPU', 'bullmq', drain, 'cpu_us', bullDrainBest, 'cpu_us');
  add('rss_after_drain_vs_bullmq', 'RSS after drain (lower is better)', 'RSS', 'bullmq', drain, 'rss_after_mb', bullDrainBest, 'rss_after_mb');

  const metrics = find('metrics', 'celeriac', '');
  add('metrics_on_vs_off', 'drain with /metrics on vs off', '', 'none', metrics, 'on_jobs_per_s', metrics, 'off_jobs_per_s');
  const eta = find('eta', 'celeriac', fmtInt(N.eta));
  add('eta_rss_vs_idle', `RSS with ${fmtInt(N.eta)} ETA tasks vs idle`, '', 'none', eta, 'rss_settled_mb', eta, 'rss_idle_mb');
  const one = find('scaleout', 'celeriac', '1 worker');
  add('scaleout_2_vs_1', 'drain, 2 worker processes vs 1', '', 'none', find('scaleout', 'celeriac', '2 worker'), 'jobs_per_s', one, 'jobs_per_s');
  add('scaleout_4_vs_1', 'drain, 4 worker processes vs 1', '', 'none', find('scaleout', 'celeriac', '4 worker'), 'jobs_per_s', one, 'jobs_per_s');
  return out;
}

/** `≥ 2×`, `≤ 0.5×`; a share of ideal (cpu_efficiency) as `≥ 90%`. */
const targetText = (key: string, t: Target): string => `${t.op === '>=' ? '≥' : '≤'} ${key === 'cpu_efficiency' ? `${t.value * 100}%` : `${t.value}×`}`;
const ratioText = (key: string, v: number): string => (key === 'cpu_efficiency' ? `${(v * 100).toFixed(0)}%` : formatRatio(v));

// --- report ------------------------------------------------------------------------------------------

const SCENARIO_TITLE: Record<Scenario, string> = {
  enqueue: 'enqueue',
  drain: `no-op drain, results stored`,
  cpu: `CPU-bound 5 ms tasks`,
  roundtrip: 'round trip, sequential',
  memory: 'worker memory',
  metrics: 'metrics cost',
  eta: 'ETA tasks',
  scaleout: 'scale-out, one Redis',
  floor: 'Redis floor',
};

function table(rs: readonly Ratio[]): string {
  const bestDrain = bestEntry('drain', 'celeriac', 'jobs_per_s', 'max');
  const bestCpu = bestEntry('cpu', 'celeriac', 'jobs_per_s', 'max');
  const rows: string[][] = [['scenario', 'system', 'configuration', 'figures', 'celeriac/BullMQ', 'celeriac/Celery', 'target']];
  const order: System[] = ['celeriac', 'bullmq', 'celery', 'redis', 'floor'];
  for (const s of SCENARIOS) {
    const es = entries.filter((e) => e.scenario === s).sort((a, b) => order.indexOf(a.system) - order.indexOf(b.system));
    for (const e of es) {
      const mine = rs.filter((r) => r.ours === e);
      const cell = (column: Ratio['column']): string =>
        mine
          .filter((r) => r.column === column)
          .map((r) => `${r.short ? `${r.short} ` : ''}${formatRatio(r.value)}`)
          .join(', ');
      const targets = mine
        .filter((r) => r.target)
        .map((r) => {
          const t = r.target as Target;
          const who = r.column === 'bullmq' ? ' BullMQ' : r.column === 'celery' ? ' Celery' : '';
          const value = r.column === 'none' ? ` (${(r.value * 100).toFixed(0)}%)` : '';
          return `${r.short && r.column !== 'none' ? `${r.short} ` : ''}${targetText(r.key, t)}${who}${value} ${meets(r.value, t) ? '✓' : '✗'}`;
        })
        .join('; ');
      const best = (e === bestDrain || e === bestCpu) && es.filter((x) => x.system === 'celeriac').length > 1 ? ' (best)' : '';
      rows.push([SCENARIO_TITLE[s], SYSTEM_NAME[e.system], e.config + best, formatFigures(e.figures), cell('bullmq'), cell('celery'), targets]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c + ' '.repeat((widths[i] ?? 0) - [...c].length)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

function versions(): Record<string, string | null> {
  const tryRun = (cmd: string, args: string[]): string | null => {
    try {
      return run(cmd, args, 30_000, { PYTHONDONTWRITEBYTECODE: '1' }).trim();
    } catch {
      return null;
    }
  };
  const pkg = (path: string): string | null => {
    try {
      return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
    } catch {
      return null;
    }
  };
  let celery: string | null = null;
  let kombu: string | null = null;
  const pyv = tryRun(PYTHON, [join(PEERS, 'celery_side.py'), 'versions']);
  if (pyv) ({ celery, kombu } = JSON.parse(pyv) as { celery: string; kombu: string });
  return {
    celeriac: pkg(join(ROOT, 'package.json')),
    celeriac_commit: tryRun('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    node: process.version,
    redis: tryRun('redis-server', ['--version']),
    bullmq: pkg(join(ROOT, 'node_modules', 'bullmq', 'package.json')),
    ioredis: pkg(join(ROOT, 'node_modules', 'ioredis', 'package.json')),
    python: tryRun(PYTHON, ['--version']),
    celery,
    kombu,
  };
}

// --- main ----------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const busy = await cpuBusyElsewhere(1000);
  const machine = { cores: CORES, cpu: cpus()[0]?.model ?? 'unknown', mem_gb: Math.round(totalmem() / 2 ** 30), kernel: release(), cpu_busy_before_start: Math.round(busy * 100) / 100 };
  const vers = versions();
  console.error(`celeriac bench (${MODE}${only ? `, only ${only.join(',')}` : ''}, reps ${REPS}): ${machine.cores} cores ${machine.cpu}, ${machine.mem_gb} GB`);
  if (busy > 0.15) warn(`${(busy * 100).toFixed(0)}% of the CPUs were busy with something else just before the start: the figures will show it`);
  if (vers.celery === null) console.error(`  warning: no Celery for ${PYTHON}; install with: sudo apt-get install -y python3-celery python3-redis`);

  server = await PrivateRedis.start();
  url = server.url;
  port = server.port;
  admin = new Redis(url, { maxRetriesPerRequest: 3 });
  console.error(`  redis-server on port ${port}`);

  const seconds: Record<string, number> = {};
  for (const s of SCENARIOS) {
    if (!want(s)) continue;
    const t = performance.now();
    lastMark = t;
    console.error(`${s}:`);
    try {
      await scenarios[s]();
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      failures.push({ scenario: s, error: text });
      console.error(`  FAILED: ${text}`);
      await stopStragglers();
    }
    seconds[s] = Math.round((performance.now() - t) / 100) / 10;
  }

  const rs = ratios();
  const totalS = Math.round((performance.now() - started) / 100) / 10;
  console.log(`\nceleriac bench, ${MODE} run, ${new Date().toISOString().slice(0, 10)}: ${machine.cores} cores (${machine.cpu}), ${machine.mem_gb} GB, Node ${vers.node}, ${vers.redis?.split(' ').slice(0, 3).join(' ')}, BullMQ ${vers.bullmq}, Celery ${vers.celery ?? 'missing'}\n`);
  console.log(table(rs));
  console.log('\nratios (celeriac / peer):');
  const keyWidth = Math.max(0, ...rs.map((r) => r.key.length));
  for (const r of rs) console.log(`  ${r.key.padEnd(keyWidth)} ${ratioText(r.key, r.value).padStart(8)}${r.target ? `   target ${targetText(r.key, r.target)} ${meets(r.value, r.target) ? '✓' : '✗'}` : ''}`);
  console.log(`\ntook ${totalS} s (${Object.entries(seconds).map(([k, v]) => `${k} ${v} s`).join(', ')})`);
  for (const w of warnings) console.log(`warning: ${w}`);
  for (const f of failures) console.log(`FAILED ${f.scenario}: ${f.error}`);

  const report = {
    date: new Date().toISOString(),
    mode: MODE,
    reps: REPS,
    machine,
    versions: vers,
    sizes: N,
    scenarios: Object.fromEntries(
      SCENARIOS.filter(want).map((s) => [s, Object.fromEntries(entries.filter((e) => e.scenario === s).map((e) => [`${e.system} ${e.config}`, e.figures]))]),
    ),
    ratios: Object.fromEntries(rs.map((r) => [r.key, r.value])),
    targets: Object.fromEntries(rs.filter((r) => r.target).map((r) => [r.key, { ...(r.target as Target), met: meets(r.value, r.target as Target) }])),
    seconds: { total: totalS, ...seconds },
    warnings,
    failures,
  };
  if (JSON_OUT) {
    const path = resolve(JSON_OUT);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
    console.log(`wrote ${path}`);
  }
  if (SVG_OUT && failures.length && !opt.svg) {
    console.log(`not writing ${SVG_OUT}: ${failures.length} scenario(s) failed (pass --svg FILE to write a chart anyway)`);
  } else if (SVG_OUT) {
    const section: Record<Ratio['column'], string> = { bullmq: 'celeriac / BullMQ', celery: 'celeriac / Python Celery', none: 'celeriac on its own' };
    const rank: Ratio['column'][] = ['bullmq', 'celery', 'none'];
    const rows: ChartRow[] = [...rs]
      .sort((a, b) => rank.indexOf(a.column) - rank.indexOf(b.column))
      .map((r) => ({
      section: section[r.column],
      label: r.label,
      value: r.value,
      valueLabel: ratioText(r.key, r.value),
      ...(r.target ? { target: r.target, targetLabel: targetText(r.key, r.target).replace(' ', '') } : {}),
    }));
    const path = resolve(SVG_OUT);
    mkdirSync(dirname(path), { recursive: true });
    const subtitle = `${MODE} run ${report.date.slice(0, 10)} · ${machine.cores} cores ${machine.cpu} · Node ${vers.node} · BullMQ ${vers.bullmq} · Celery ${vers.celery ?? '-'} · ${vers.redis?.split(' ').slice(0, 3).join(' ') ?? ''}`;
    writeFileSync(path, ratiosSvg('celeriac vs BullMQ and Python Celery: ours / theirs', subtitle, rows));
    console.log(`wrote ${path}`);
  }
  return failures.length ? 1 : 0;
}

async function stopStragglers(): Promise<void> {
  // Children other than redis-server: stop them so the next scenario starts clean.
  for (const c of runningChildren()) if (c !== server?.child) await c.stop('SIGTERM', 10_000);
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  try {
    await stopStragglers();
    await admin?.quit();
    await server?.stop();
  } catch (err) {
    console.error(`bench: cleanup: ${String(err)}`);
  }
}
process.exit(code);
