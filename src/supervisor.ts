// The worker daemon: builds the pieces (broker, pool, consumer, scheduler, heartbeat), starts them in
// order and stops them in reverse. Shutdown, in steps that each run even if an earlier one failed:
//   warm (first SIGTERM/SIGINT): stop fetching, hand reserved tasks not started back to their queues
//   at once, let running tasks finish until --shutdown-timeout;
//   cold (second signal, or the deadline): drop outcomes, destroy the pool;
//   then write pending acks, hand every message still in our processing lists back to its queue,
//   release the hostname, close Redis. Exit code 0 either way: nothing was lost.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { AckWriter } from './acks.js';
import { Broker } from './broker.js';
import type { WorkerConfig } from './config.js';
import { Consumer } from './consumer.js';
import { CeleriacError } from './errors.js';
import { EventBus } from './events.js';
import { createLogger, logEvents, redactUrl, type Logger } from './logger.js';
import { Pool } from './pool.js';
import type { HttpEndpoints } from './http.js';
import { Heartbeat, register, retire, returnStale, Sweeper } from './recovery.js';
import { Revocations } from './revocations.js';
import { Scheduler } from './scheduler.js';

const ACK_FLUSH_LIMIT_MS = 5000;
/** The longest any one shutdown step may take (the acks' flush has its own, shorter bound). */
const STEP_LIMIT_MS = 6000;
const LOOP_STOP_LIMIT_MS = 1000;

/**
 * A stop asked for while the worker was starting: `start()` rejects with it at its next step, and the
 * shutdown then undoes what had been built. Not a failure: the CLI exits 0.
 */
export class StartCancelled extends Error {
  constructor() {
    super('stopped while starting');
    this.name = 'StartCancelled';
  }
}

/**
 * Waits for Redis to answer, retrying with backoff and a log line per failure, for up to `timeoutMs`;
 * throws StartCancelled as soon as `stop` aborts, cutting a ping or a backoff short.
 */
export async function waitForRedis(redis: Redis, url: string, timeoutMs: number, log: Logger, stop: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // The connection's own error says why (refused, WRONGPASS, a certificate); a timed-out PING does not.
  let lastError: string | null = null;
  const onError = (err: Error): void => {
    lastError = err.message;
  };
  redis.on('error', onError);
  try {
    await pingUntil(redis, url, deadline, log, () => lastError, stop);
  } finally {
    redis.off('error', onError);
  }
}

async function pingUntil(redis: Redis, url: string, deadline: number, log: Logger, lastError: () => string | null, stop: AbortSignal): Promise<void> {
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    const wait = Math.max(100, Math.min(2000, deadline - Date.now()));
    try {
      await Promise.race([
        redis.ping(),
        sleep(wait, undefined, { signal: stop, ref: false }).then(() => {
          throw new Error(lastError() ?? `no answer within ${wait} ms`);
        }),
      ]);
      return;
    } catch (err) {
      if (stop.aborted) throw new StartCancelled();
      const reason = err instanceof Error ? err.message : String(err);
      if (Date.now() + delay > deadline) {
        throw new CeleriacError('E_REDIS', `cannot reach Redis at ${redactUrl(url)}: ${reason}`);
      }
      log.warn({ event: 'redis:unreachable', url: redactUrl(url), err: reason, retry_in_ms: delay }, 'Redis unreachable; retrying');
      await sleep(delay, undefined, { signal: stop }).catch(() => undefined);
      if (stop.aborted) throw new StartCancelled();
    }
  }
}

export class Supervisor {
  readonly config: WorkerConfig;
  readonly bus = new EventBus();
  readonly log: Logger;
  #broker: Broker | null = null;
  #pool: Pool | null = null;
  #consumer: Consumer | null = null;
  #scheduler: Scheduler | null = null;
  #acks: AckWriter | null = null;
  #heartbeat: Heartbeat | null = null;
  #http: HttpEndpoints | null = null;
  #consuming = false;
  /** The port the metrics endpoints listen on (null: off). */
  metricsPort: number | null = null;
  #sweeper: Sweeper | null = null;
  /** Another process holds our hostname now, and with it our processing lists: hands off them. */
  #hostnameLost = false;
  #stopping: Promise<void> | null = null;
  #starting: Promise<void> | null = null;
  /** The shutdown has begun undoing the start: a start step failing from now on is its doing. */
  #tearingDown = false;
  /** The shutdown is past closing the metrics endpoints: a start still opening them closes them itself. */
  #httpClosed = false;
  /** Aborted when a stop is asked for: the waits of a start give up on it at once. */
  readonly #stopAsked = new AbortController();
  /** A cold shutdown was asked for (by the first call or a later one). */
  #cold = false;
  #askCold!: () => void;
  /** Resolves when a cold shutdown is asked for: it ends the waits of a warm one. */
  readonly #coldAsked = new Promise<void>((resolve) => {
    this.#askCold = resolve;
  });
  #markStopped!: () => void;
  /** Resolves when a shutdown, however started, has finished. */
  readonly stopped = new Promise<void>((resolve) => {
    this.#markStopped = resolve;
  });

  constructor(config: WorkerConfig, logger?: Logger) {
    this.config = config;
    this.log = logger ?? createLogger(config.loglevel, { hostname: config.hostname });
    logEvents(this.bus, this.log);
  }

  /**
   * Starts everything; resolves once the worker is consuming (the `worker ready` line is written).
   * Rejects with StartCancelled when stop() is called meanwhile.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start().catch((err: unknown) => {
      // A step that failed because the shutdown tore down what it used is the stop's doing. Before
      // that, a failure is the start's own (a broken task module, Redis past the timeout), and said so.
      throw this.#tearingDown && !(err instanceof StartCancelled) ? new StartCancelled() : err;
    });
    return this.#starting;
  }

  /** Between the steps of a start: a stop asked for meanwhile ends it there. */
  #proceed(): void {
    if (this.#stopAsked.signal.aborted) throw new StartCancelled();
  }

  async #start(): Promise<void> {
    const c = this.config;
    const broker = (this.#broker = new Broker(c.brokerUrl, { resultExpiresSeconds: c.resultExpires, connectionName: `celeriac:${c.hostname}`, bus: this.bus }));
    broker.redis.on('error', (err: Error) => this.log.warn({ event: 'redis:error', err: err.message }, 'Redis connection error'));
    if (c.metricsPort !== 0) await this.#serveMetrics(broker);
    this.#proceed();
    await waitForRedis(broker.redis, c.brokerUrl, c.connectTimeout * 1000, this.log, this.#stopAsked.signal);
    this.#proceed();

    const pool = (this.#pool = new Pool({
      app: c.app,
      threads: c.concurrency,
      hostname: c.hostname,
      bus: this.bus,
      softTimeLimit: c.softTimeLimit,
      maxTasksPerThread: c.maxTasksPerThread,
      maxMemoryPerThreadMb: c.maxMemoryPerThread,
      nice: c.threadNice,
    }));
    const manifest = await pool.describe();
    this.#proceed();
    const heartbeat = (this.#heartbeat = new Heartbeat(broker, c.hostname, c.heartbeatTtl * 1000, this.log));
    await heartbeat.acquire(this.#stopAsked.signal);
    this.#proceed();

    const scheduler = (this.#scheduler = new Scheduler(broker, this.log));
    const revocations = new Revocations(broker.redis, broker.connection(`celeriac:${c.hostname}:revokes`));
    const acks = (this.#acks = new AckWriter(broker, this.bus, () => pool.busy > 0));
    const consumer = (this.#consumer = new Consumer({
      options: { hostname: c.hostname, queues: c.queues, concurrency: c.concurrency, prefetchMultiplier: c.prefetchMultiplier, maxMessageBytes: c.maxMessageBytes, timeLimit: c.timeLimit },
      broker,
      pool,
      acks,
      scheduler,
      revocations,
      lease: heartbeat,
      bus: this.bus,
      logger: this.log,
      tasks: manifest.tasks,
    }));
    heartbeat.start({
      lost: () => {
        this.#hostnameLost = true;
        void this.stop('cold');
      },
      // A sweep forgot this worker: list it again before anything new lands in its lists.
      expired: async () => {
        await register(broker, c.hostname, consumer.pairs);
        await consumer.revalidate();
      },
      renewed: () => consumer.resume(),
    });
    await revocations.start((id) => consumer.terminate(id));
    this.#proceed();
    const requeued = await returnStale(broker, this.bus, c.hostname, consumer.pairs, { maxRecoveries: c.maxRecoveries });
    this.#proceed();
    scheduler.start();
    consumer.start();
    this.#sweeper = new Sweeper({ broker, bus: this.bus, logger: this.log, hostname: c.hostname, options: { maxRecoveries: c.maxRecoveries, heartbeatTtlMs: c.heartbeatTtl * 1000 } });
    this.#sweeper.start();
    this.#consuming = true;
    this.bus.emit('worker:ready', { hostname: c.hostname, queues: [...c.queues], concurrency: c.concurrency, tasks: manifest.tasks.length, requeued, metricsPort: this.metricsPort });
  }

  /** Metrics subscribe before anything runs, so every event is counted; the endpoints answer from the start. */
  async #serveMetrics(broker: Broker): Promise<void> {
    const c = this.config;
    // Loaded only when served: prom-client alone adds about 6 MB to an idle worker.
    const [{ WorkerMetrics }, { HttpEndpoints }] = await Promise.all([import('./metrics.js'), import('./http.js')]);
    const metrics = new WorkerMetrics({
      bus: this.bus,
      backlog: (queues) => broker.backlog(queues),
      hostname: c.hostname,
      queues: c.queues,
      state: () => ({
        threads: this.#pool?.threads ?? 0,
        busyThreads: this.#pool?.busy ?? 0,
        activeTasks: this.#consumer?.running ?? 0,
        waiting: this.#consumer?.waiting ?? 0,
        reserved: this.#consumer?.reserved ?? 0,
        up: this.#consuming,
      }),
    });
    const http = new HttpEndpoints(metrics, { redis: broker.redis, consuming: () => this.#consuming });
    try {
      this.metricsPort = await http.listen(c.metricsPort, c.metricsBind);
    } catch (err) {
      throw new CeleriacError('E_CONFIG', `--metrics-port: cannot listen on ${c.metricsBind}:${c.metricsPort}: ${(err as Error).message}`);
    }
    // A cold stop does not wait for the start: its teardown may be past closing the endpoints already.
    if (this.#httpClosed) {
      await http.close();
      throw new StartCancelled();
    }
    this.#http = http;
  }

  /** First call: warm shutdown (or cold if asked); a later call turns a warm one cold. */
  stop(mode: 'warm' | 'cold' = 'warm'): Promise<void> {
    if (mode === 'cold') {
      this.#cold = true;
      this.#askCold();
    }
    if (this.#stopping) return this.#stopping;
    this.#stopAsked.abort();
    this.#stopping = this.#shutdown().finally(() => this.#markStopped());
    return this.#stopping;
  }

  async #shutdown(): Promise<void> {
    // A start in progress ends at its next step (StartCancelled); what it built by then is undone here.
    // A step that hangs (a task module that never finishes loading, Redis gone mid-start) is waited
    // for only so long, or not at all once a cold shutdown is asked for: the teardown below makes it fail.
    await this.#step('start', () => Promise.race([this.#starting?.catch(() => undefined), this.#coldAsked]));
    this.#tearingDown = true;
    const consumer = this.#consumer;
    const unfinished = consumer?.reserved ?? 0;
    this.#consuming = false;
    let mode: 'warm' | 'cold' = this.#cold ? 'cold' : 'warm';
    // Reserved messages not started go back to their queues now, for other workers.
    const released = consumer?.quiet() ?? Promise.resolve(0);
    // Their timers stop at once; a round trip of theirs still in flight need not be waited for.
    await this.#step('scheduler', () => this.#scheduler?.stop(), LOOP_STOP_LIMIT_MS);
    await this.#step('sweeper', () => this.#sweeper?.stop(), LOOP_STOP_LIMIT_MS);
    if (mode === 'warm' && consumer) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.config.shutdownTimeout * 1000);
      });
      const finished = await Promise.race([consumer.idle().then(() => true), this.#coldAsked.then(() => false), deadline.then(() => false)]);
      clearTimeout(timer);
      if (!finished) mode = 'cold';
    }
    consumer?.abandon();
    await this.#step('pool', () => this.#pool?.destroy());
    await this.#step('acks', () => this.#flushAcks());
    // The lease must hold while tasks run (else a sweep hands them out again); no longer after this.
    this.#heartbeat?.stop();
    let requeued = 0;
    if (this.#hostnameLost) {
      this.log.error({ event: 'shutdown:hostname-lost' }, 'another process holds this hostname and its processing lists: nothing is requeued or released');
    } else if (this.#broker?.redis.status === 'ready') {
      await this.#step('requeue', async () => {
        if (!this.#broker || !consumer) return;
        requeued += await released;
        requeued += await this.#broker.requeue(consumer.pairs);
        // Nothing of ours is left in Redis for a sweep to find.
        await retire(this.#broker, this.config.hostname);
      });
      await this.#step('heartbeat', () => this.#heartbeat?.release());
    } else if (consumer) {
      // A start that ended before the consumer existed fetched nothing: then there is nothing to say.
      this.log.error({ event: 'shutdown:redis-down' }, 'Redis is unreachable: unfinished messages stay in this worker\'s processing lists, for its next start or a sweep once its heartbeat expires');
    }
    this.bus.emit('worker:shutdown', { hostname: this.config.hostname, mode, requeued, unfinished });
    await this.#step('http', () => this.#http?.close());
    this.#httpClosed = true;
    await this.#step('redis', () => this.#broker?.close());
  }

  async #flushAcks(): Promise<void> {
    if (!this.#acks) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#acks.idle(), new Promise((r) => (timer = setTimeout(r, ACK_FLUSH_LIMIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * One shutdown step, bounded in time: with Redis unreachable a step that waits for it would hang
   * the shutdown (ioredis keeps commands until it reconnects). What such a step leaves undone stays
   * in Redis (messages in our processing lists), for the next start or a sweep.
   */
  async #step(name: string, fn: () => Promise<unknown> | unknown, limitMs = STEP_LIMIT_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), limitMs);
    });
    try {
      const result = await Promise.race([Promise.resolve(fn()).then(() => 'done' as const), timedOut]);
      if (result === 'timeout') this.log.error({ event: 'shutdown:step-failed', step: name, err: `not done within ${limitMs} ms` }, `shutdown step ${name} did not finish; going on`);
    } catch (err) {
      this.log.error({ event: 'shutdown:step-failed', step: name, err: String(err) }, `shutdown step ${name} failed`);
    } finally {
      clearTimeout(timer);
    }
  }
}
