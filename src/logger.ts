// The pino factory and the log lines of a worker: one JSON line per task received / succeeded / failed
// (with id, name and runtime) and lifecycle lines (`worker ready`, `worker stopped`) that operators and
// tests wait for. Lifecycle lines are written at any log level. Passwords in URLs never reach a line.

import { pino, type Logger, type Level } from 'pino';
import type { EventBus } from './events.js';

export type { Logger };

/** `redis://user:secret@host` → `redis://user:***@host`; anything unparsable is returned with no userinfo. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

export function createLogger(level: Level, base: Record<string, unknown> = {}): Logger {
  return pino(
    { level, base: { pid: process.pid, ...base }, timestamp: pino.stdTimeFunctions.isoTime },
    // Asynchronous writes keep logging off the hot path; flushed on shutdown.
    pino.destination({ dest: 1, sync: false }),
  );
}

/** A child that writes at least at info, so `ready` and `stopped` lines show even with --loglevel error. */
export function lifecycleLogger(logger: Logger): Logger {
  const levels = logger.levels.values;
  const current = levels[logger.level] ?? levels.info ?? 30;
  return logger.child({}, { level: current > (levels.info ?? 30) ? 'info' : logger.level });
}

/** Writes the task and worker events of `bus` to `logger`. */
export function logEvents(bus: EventBus, logger: Logger): void {
  const life = lifecycleLogger(logger);
  bus.on('task:received', (e) => logger.info({ event: 'task:received', task_id: e.id, task: e.name, queue: e.queue, eta: e.eta, retries: e.retries }, 'task received'));
  bus.on('task:succeeded', (e) => logger.info({ event: 'task:succeeded', task_id: e.id, task: e.name, runtime_ms: round(e.runtimeMs) }, 'task succeeded'));
  bus.on('task:failed', (e) =>
    logger.error({ event: 'task:failed', task_id: e.id, task: e.name, runtime_ms: round(e.runtimeMs), exc_type: e.excType, exc_message: e.excMessage, traceback: e.traceback }, 'task failed'));
  bus.on('task:deferred', (e) => logger.info({ event: 'task:deferred', task_id: e.id, task: e.name, eta: new Date(e.eta).toISOString() }, 'task deferred until its eta'));
  bus.on('task:retried', (e) => logger.warn({ event: 'task:retried', task_id: e.id, task: e.name, retries: e.retries, eta: new Date(e.eta).toISOString(), exc_type: e.excType, exc_message: e.excMessage }, 'task retried'));
  bus.on('task:revoked', (e) => logger.warn({ event: 'task:revoked', task_id: e.id, task: e.name, reason: e.reason }, 'task revoked'));
  bus.on('task:rejected', (e) => logger.error({ event: 'task:rejected', task_id: e.id, task: e.name, queue: e.queue, code: e.code, reason: e.reason }, 'message dead-lettered'));
  bus.on('ack:failed', (e) => logger.error({ event: 'ack:failed', count: e.count, err: e.error, retry_in_ms: e.retryInMs }, 'storing results failed; retrying'));
  bus.on('worker:recovered', (e) => life.warn({ event: 'worker:recovered', count: e.count, from: e.from }, 'messages of a dead worker handed back to their queues'));
  bus.on('pool:thread-restart', (e) => logger.warn({ event: 'pool:thread-restart', reason: e.reason }, 'a pool thread was replaced'));
  bus.on('worker:superseded', (e) => life.warn({ event: 'worker:superseded', count: e.count }, 'reserved messages handed to other workers while this worker\'s heartbeat was expired; not run here'));
  bus.on('worker:reconciled', (e) => life.warn({ event: 'worker:reconciled', count: e.count }, 'messages moved into our processing lists by a fetch whose reply was lost, handed back to their queues'));
  // The node name is already on every line (the logger's `hostname` base field).
  bus.on('worker:ready', ({ hostname: _, ...e }) => life.info({ event: 'worker:ready', ...e }, 'worker ready'));
  bus.on('worker:shutdown', ({ hostname: _, ...e }) => life.info({ event: 'worker:shutdown', ...e }, 'worker stopped'));
  bus.onListenerError = (name, err) => logger.error({ event: name, err: String(err) }, 'an event listener threw');
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
