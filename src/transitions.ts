// The writes that end a reserved message's stay in this worker's processing list once its fate is
// known: acked with its result, replaced by its retry, parked until its ETA, dead-lettered, stored as
// revoked, or handed back unrun. Each one is a single atomic step (broker.ts, acks.ts), builds the
// Celery meta it stores, and emits its task event once written. The consumer keeps the bookkeeping
// around them (prefetch slots, the reservations, idleness).
//
// Acks and dead letters are retried by the AckWriter; the others here, with backoff, until written or
// until the worker stops (the message then stays in the processing list for the final requeue).

import type { AckWriter } from './acks.js';
import type { Ack, Broker, Fetched } from './broker.js';
import { REJECTION_EXCEPTIONS, type ProtocolError } from './errors.js';
import type { EventBus } from './events.js';
import type { Logger } from './logger.js';
import { retryMessage, type TaskEnvelope } from './protocol.js';
import { exceptionMeta, successMeta, type ExceptionInfo } from './results.js';
import type { Scheduler } from './scheduler.js';
import type { Outcome } from '../workers/types.js';

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

export interface TransitionsOptions {
  broker: Broker;
  acks: AckWriter;
  scheduler: Scheduler;
  bus: EventBus;
  logger: Logger;
  hostname: string;
  /** True once the worker has stopped: writes still failing are given up. */
  stopped: () => boolean;
}

/** A task that ran, with what it came with. */
export interface Completed {
  fetched: Fetched;
  msg: TaskEnvelope;
  outcome: Outcome;
  ignoreResult: boolean;
  enqueuedAt: number;
}

export class Transitions {
  readonly #o: TransitionsOptions;

  constructor(options: TransitionsOptions) {
    this.#o = options;
  }

  /**
   * Tasks of one batch ran: a retry replaces its message (a retry outcome), the others' results are
   * stored with one ack for all (SUCCESS or FAILURE, nothing under ignore_result). Resolves once all
   * are written, calling `written` for each as it lands: one retry that keeps failing does not hold
   * back the others. `enqueuedAt` starts each one's end-to-end latency.
   */
  async complete(done: readonly Completed[], written: (f: Fetched) => void): Promise<void> {
    const acked: Completed[] = [];
    const acks: Ack[] = [];
    const retries: Promise<void>[] = [];
    for (const c of done) {
      const { fetched: f, msg, outcome, ignoreResult } = c;
      if (!outcome.ok && outcome.retryAt !== undefined) {
        retries.push(this.#retry(f, msg, outcome.exc, outcome.retryAt, ignoreResult).then(() => written(f)));
        continue;
      }
      let meta: string | null = null;
      if (!ignoreResult) meta = outcome.ok ? successMeta(msg.id, outcome.json ?? 'null') : exceptionMeta('FAILURE', msg.id, outcome.exc);
      acked.push(c);
      acks.push({ pair: f.pair, bytes: f.bytes, taskId: msg.id, meta });
    }
    if (acks.length > 0) {
      await this.#o.acks.ack(acks);
      const { bus } = this.#o;
      const now = Date.now();
      for (const { fetched: f, msg, outcome, enqueuedAt } of acked) {
        const queue = msg.routingKey ?? f.pair.source;
        const latencyMs = Math.max(0, now - enqueuedAt);
        if (outcome.ok) bus.emit('task:succeeded', { id: msg.id, name: msg.task, queue, runtimeMs: outcome.runtimeMs, latencyMs });
        else bus.emit('task:failed', { id: msg.id, name: msg.task, queue, runtimeMs: outcome.runtimeMs, latencyMs, excType: outcome.exc.excType, excMessage: outcome.exc.excMessage, traceback: outcome.exc.traceback });
        written(f);
      }
    }
    await Promise.all(retries);
  }

  async #retry(f: Fetched, msg: TaskEnvelope, exc: ExceptionInfo, retryAt: number, ignoreResult: boolean): Promise<void> {
    const queue = msg.routingKey ?? f.pair.source;
    const raw = retryMessage(f.bytes.toString(), msg, retryAt, queue);
    const meta = ignoreResult ? null : exceptionMeta('RETRY', msg.id, exc);
    const published = await this.persist({ event: 'retry:failed', taskId: msg.id, message: 'publishing a retry failed; trying again' }, () => this.#o.broker.retry(f.pair, f.bytes, raw, msg.id, meta));
    if (published) this.#o.bus.emit('task:retried', { id: msg.id, name: msg.task, queue, eta: retryAt, retries: msg.retries + 1, excType: exc.excType, excMessage: exc.excMessage });
  }

  /** Moves a message that must not run to the dead-letter list with its reason (and a FAILURE for its client). */
  async deadLetter(f: Fetched, err: ProtocolError): Promise<void> {
    const exc = REJECTION_EXCEPTIONS[err.code];
    const meta = err.taskId === null ? null : exceptionMeta('FAILURE', err.taskId, { ...exc, excMessage: err.message, traceback: null });
    const record = JSON.stringify({
      reason: err.message,
      code: err.code,
      task_id: err.taskId,
      task: err.taskName,
      queue: f.pair.source,
      hostname: this.#o.hostname,
      time: new Date().toISOString(),
      raw: f.bytes.toString(),
    });
    await this.#o.acks.deadLetter({ pair: f.pair, bytes: f.bytes, taskId: err.taskId, meta, record });
    this.#o.bus.emit('task:rejected', { id: err.taskId, name: err.taskName, queue: f.pair.source, code: err.code, reason: err.message });
  }

  /** Stores REVOKED (Celery's TaskRevokedError) instead of running the task, and acks. */
  async revoke(f: Fetched, msg: TaskEnvelope, reason: string): Promise<void> {
    const meta = exceptionMeta('REVOKED', msg.id, { excType: 'TaskRevokedError', excModule: 'celery.exceptions', excMessage: reason, traceback: null });
    await this.#o.acks.ack([{ pair: f.pair, bytes: f.bytes, taskId: msg.id, meta: msg.ignoreResult ? null : meta }]);
    this.#o.bus.emit('task:revoked', { id: msg.id, name: msg.task, queue: msg.routingKey ?? f.pair.source, reason });
  }

  /** Parks the message in the ETA set until `eta` (as `stored`, when it changes on the way). */
  async defer(f: Fetched, msg: TaskEnvelope, eta: number, queue: string, stored: string | Buffer = f.bytes): Promise<void> {
    const parked = await this.persist({ event: 'defer:failed', taskId: msg.id, message: 'deferring failed; retrying' }, () => this.#o.broker.defer(f.pair, f.bytes, eta, stored));
    if (parked) this.#o.bus.emit('task:deferred', { id: msg.id, name: msg.task, queue, eta });
    if (parked !== null) this.#o.scheduler.wake(eta);
  }

  /** Hands a reserved message back to the consumer end of its queue, unrun: true once it is there. */
  async unfetch(f: Fetched): Promise<boolean> {
    return (await this.persist({ event: 'unfetch:failed', taskId: null, message: 'releasing a message failed; retrying' }, () => this.#o.broker.unfetch(f))) === true;
  }

  /**
   * Runs one Redis write until it lands, backing off between tries (Redis away); gives up, resolving
   * with null, once `keepTrying` says no (by default: once the worker has stopped).
   */
  async persist<T>(what: { event: string; taskId: string | null; message: string }, write: () => Promise<T>, keepTrying = () => !this.#o.stopped()): Promise<T | null> {
    for (let delay = RETRY_MIN_MS; keepTrying(); delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        return await write();
      } catch (err) {
        this.#o.logger.warn({ event: what.event, task_id: what.taskId, err: String(err), retry_in_ms: delay }, what.message);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    return null;
  }
}
