// The worker's Prometheus metrics, in its own prom-client Registry. Task metrics follow the community
// celery-exporter's names and labels (`name`, `hostname`, `queue_name`, `exception`) so existing
// dashboards keep working; engine metrics use the `celeriac_` prefix. Counters and histograms are fed by
// the event bus (the hot path only emits events); gauges that need Redis are read at scrape time in one
// command with a time bound. The README's metrics table lists every name here (a test checks).

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Backlog } from './broker.js';
import type { EventBus } from './events.js';
import { bump, TaskMetrics, type Chunk } from './task-metrics.js';

/** From 1 ms tasks to 10 minute tasks. */
export const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const REDIS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const SCRAPE_REDIS_TIMEOUT_MS = 1000;

/** What the scrape reads from the running worker. */
export interface WorkerState {
  threads: number;
  busyThreads: number;
  /** Tasks handed to pool threads and not finished (a thread runs a batch of short ones in turn). */
  activeTasks: number;
  waiting: number;
  reserved: number;
  up: boolean;
}

export interface WorkerMetricsOptions {
  bus: EventBus;
  /** The scrape-time read of what waits in Redis (Broker.backlog). */
  backlog: (queues: readonly string[]) => Promise<Backlog>;
  hostname: string;
  queues: readonly string[];
  state: () => WorkerState;
}

const TASK_LABELS = ['name', 'hostname', 'queue_name'] as const;

const WARM_SERIES = 300;

/**
 * Writes the exposition of made-up series three times, then drops them, so that the first real scrape
 * with many series runs compiled code rather than the interpreter. With 1,000 task names on 50 queues,
 * the max of the first five scrapes after all series changed went from 47.7 to 37.9 ms (medians of 12
 * interleaved bench runs), their p50 from 25.2 to 21.0 ms.
 *
 * A prom-client counter is incremented twice first. Its first increment reassigns the `value` of a
 * `{ value, labels }` object, and V8 then stops treating `value` fields of that shape as constant:
 * compiled code that relied on it, the warm-up's exposition among it (V8's --trace-deopt), was thrown
 * away at the worker's first tasks, and the first real scrape ran in the interpreter again. Done
 * before the warm-up, the first scrape after 1,000 new series took 28-32 ms instead of 26-84 ms
 * (5 interleaved runs each).
 */
function warmUp(tasks: TaskMetrics): void {
  const settle = new Counter({ name: 'celeriac_warm_up', help: 'not registered', registers: [] });
  settle.inc();
  settle.inc();
  tasks.warmUp((t, series) => {
    for (let i = 0; i < series; i++) {
      const c = t.touch(`warm${i}`, 'warm');
      c.received = c.started = c.succeeded = c.retried = c.revoked = c.deferred = 1 + i * 1000;
      bump(c.failed, 'Error');
      bump(c.rejected, 'E_PROTOCOL');
      for (const h of [c.runtime, c.queueWait, c.latency]) for (const v of [0.0005, 0.003, 0.2, 7, 1000]) h.observe(v);
    }
  }, WARM_SERIES, 3);
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #tasks: TaskMetrics;

  constructor(o: WorkerMetricsOptions) {
    const r = [this.registry];
    const h = o.hostname;
    // Per task: plain numbers on the hot path, labelled at scrape time (task-metrics.ts).
    const tasks = (this.#tasks = new TaskMetrics(h, SECONDS_BUCKETS));
    tasks.counter('celery_task_received_total', 'Tasks received by this worker', (c) => c.received);
    tasks.counter('celery_task_started_total', 'Tasks started on a pool thread', (c) => c.started);
    tasks.counter('celery_task_succeeded_total', 'Tasks that succeeded (result stored)', (c) => c.succeeded);
    tasks.labelledCounter('celery_task_failed_total', 'Tasks that failed (FAILURE stored)', 'exception', (c) => c.failed);
    tasks.labelledCounter('celery_task_rejected_total', 'Messages dead-lettered, by reason code', 'reason', (c) => c.rejected);
    tasks.counter('celery_task_retried_total', 'Task runs that asked to run again (retry)', (c) => c.retried);
    tasks.counter('celery_task_revoked_total', 'Tasks revoked instead of run (expired)', (c) => c.revoked);
    tasks.counter('celeriac_task_deferred_total', 'Messages parked in the ETA set until due', (c) => c.deferred);
    tasks.histogram('celery_task_runtime', 'Task run time on the pool thread, seconds', (c) => c.runtime);
    tasks.histogram('celery_task_queue_wait_time', 'Enqueued (or due) until started, seconds', (c) => c.queueWait);
    tasks.histogram('celeriac_task_latency_seconds', 'Enqueued (or due) until the result was stored, seconds', (c) => c.latency);
    warmUp(tasks);

    const restarts = new Counter({ name: 'celeriac_pool_thread_restarts_total', help: 'Pool threads replaced, by reason', labelNames: ['hostname', 'reason'], registers: r });
    const recovered = new Counter({ name: 'celeriac_recovered_messages_total', help: 'Messages handed back to their queues from a dead run of a worker', labelNames: ['hostname'], registers: r });
    const superseded = new Counter({ name: 'celeriac_superseded_messages_total', help: 'Reserved messages not started that a sweep handed to other workers while this worker\'s heartbeat was expired (not run here)', labelNames: ['hostname'], registers: r });
    const reconciled = new Counter({ name: 'celeriac_reconciled_messages_total', help: 'Messages found in this worker\'s processing lists after a reconnect that it had not seen (a fetch reply lost), handed back', labelNames: ['hostname'], registers: r });
    const redisLatency = new Histogram({ name: 'celeriac_redis_command_duration_seconds', help: 'Round trips of work-queue Redis commands, seconds', labelNames: ['hostname', 'command'], buckets: REDIS_BUCKETS, registers: r });

    // Every reason a thread can be replaced, so the series exist (at 0) before the first restart.
    for (const reason of ['crash', 'time_limit', 'memory', 'recycle', 'terminate']) restarts.labels(h, reason).inc(0);
    recovered.labels(h).inc(0);
    reconciled.labels(h).inc(0);
    superseded.labels(h).inc(0);

    const bus = o.bus;
    bus.on('task:received', (e) => {
      tasks.touch(e.name, e.queue).received += 1;
    });
    bus.on('task:started', (e) => {
      const c = tasks.touch(e.name, e.queue);
      c.started += 1;
      c.queueWait.observe(e.queueWaitMs / 1000);
    });
    bus.on('task:succeeded', (e) => {
      const c = tasks.touch(e.name, e.queue);
      c.succeeded += 1;
      c.runtime.observe(e.runtimeMs / 1000);
      c.latency.observe(e.latencyMs / 1000);
    });
    bus.on('task:failed', (e) => {
      const c = tasks.touch(e.name, e.queue);
      bump(c.failed, e.excType);
      c.runtime.observe(e.runtimeMs / 1000);
      c.latency.observe(e.latencyMs / 1000);
    });
    bus.on('task:rejected', (e) => bump(tasks.touch(e.name ?? 'unknown', e.queue).rejected, e.code));
    bus.on('task:revoked', (e) => {
      tasks.touch(e.name, e.queue).revoked += 1;
    });
    bus.on('task:retried', (e) => {
      tasks.touch(e.name, e.queue).retried += 1;
    });
    bus.on('task:deferred', (e) => {
      tasks.touch(e.name, e.queue).deferred += 1;
    });
    bus.on('pool:thread-restart', (e) => restarts.labels(h, e.reason).inc());
    bus.on('redis:command', (e) => redisLatency.labels(h, e.command).observe(e.seconds));
    bus.on('worker:recovered', (e) => recovered.labels(h).inc(e.count));
    bus.on('worker:reconciled', (e) => reconciled.labels(h).inc(e.count));
    bus.on('worker:superseded', (e) => superseded.labels(h).inc(e.count));

    const gauge = (name: string, help: string, read: (s: WorkerState) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['hostname'],
        registers: r,
        collect() {
          this.labels(h).set(read(o.state()));
        },
      });
    gauge('celery_worker_up', '1 while this worker consumes, 0 while it shuts down', (s) => (s.up ? 1 : 0));
    gauge('celery_worker_tasks_active', 'Tasks handed to pool threads and not finished', (s) => s.activeTasks);
    gauge('celeriac_pool_threads', 'Pool threads', (s) => s.threads);
    gauge('celeriac_pool_busy_threads', 'Pool threads running a task', (s) => s.busyThreads);
    gauge('celeriac_pool_utilization_ratio', 'Busy threads / threads', (s) => (s.threads === 0 ? 0 : s.busyThreads / s.threads));
    gauge('celeriac_pool_waiting_tasks', 'Reserved tasks waiting for a free thread', (s) => s.waiting);
    gauge('celeriac_prefetched_messages', 'Messages reserved in this worker\'s processing lists, not yet acked', (s) => s.reserved);

    // Redis-backed gauges share one read per scrape (one script, see src/lua/backlog.lua).
    // prom-client calls collect() once per metric; one shared read serves the three.
    let pending: Promise<void> | null = null;
    const collect = (): Promise<void> => (pending ??= readRedis().finally(() => (pending = null)));
    const queueLength = new Gauge({ name: 'celery_queue_length', help: 'Messages waiting in a queue, priority sub-lists included', labelNames: ['queue_name'], registers: r, collect });
    const etaBacklog = new Gauge({ name: 'celeriac_eta_backlog', help: 'Messages waiting for their ETA (all workers)', registers: r, collect });
    const deadLetters = new Gauge({ name: 'celeriac_dead_letter_length', help: 'Messages in the dead-letter list', registers: r, collect });
    const readRedis = async (): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      const backlog = await Promise.race([
        o.backlog(o.queues).catch(() => null),
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), SCRAPE_REDIS_TIMEOUT_MS);
        }),
      ]).finally(() => clearTimeout(timer));
      queueLength.reset();
      etaBacklog.reset();
      deadLetters.reset();
      // No answer in time (Redis down): the series are left out of this scrape rather than stale.
      if (!backlog) return;
      o.queues.forEach((q, i) => queueLength.labels(q).set(backlog.queues[i] ?? 0));
      etaBacklog.set(backlog.eta);
      deadLetters.set(backlog.deadLetters);
    };

    collectDefaultMetrics({ register: this.registry, labels: { hostname: h } });
    // Gauges named like counters fail `promtool check metrics`; the same numbers stay available
    // without the suffix (nodejs_active_handles, ...).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
  }

  /**
   * The whole scrape: prom-client's families, then the per-task ones, in chunks to write out as they
   * come (see TaskMetrics.exposition), each released once written.
   */
  async metrics(): Promise<Iterable<Chunk>> {
    const head = Buffer.from(`${await this.registry.metrics()}\n`);
    const tasks = this.#tasks;
    return (function* () {
      yield { bytes: head, release: () => undefined };
      yield* tasks.exposition();
    })();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Producer-side metrics: `celery_task_sent_total`, for an application to include in its own registry. */
export function producerMetrics(bus: EventBus, registry: Registry, hostname: string): Counter {
  const sent = new Counter({ name: 'celery_task_sent_total', help: 'Tasks sent by this producer', labelNames: TASK_LABELS, registers: [registry] });
  bus.on('task:sent', (e) => sent.labels(e.name, hostname, e.queue).inc(e.count));
  return sent;
}
