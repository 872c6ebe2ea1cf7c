// Celery's Redis result backend: the meta JSON stored under `celery-task-meta-<id>` and published on the
// channel of the same name, and the client side that waits for it (`AsyncResult.get`).
// Meta strings are built by concatenation around a result that the pool thread already encoded, so the
// hot path never parses and re-serialises a task's return value.

import type { Redis } from 'ioredis';
import { TaskFailedError, TimeoutError } from './errors.js';
import { parseJson, stringifyJson } from './json.js';
import { resultKey } from './keys.js';
import { formatDateDone } from './protocol.js';

export type TaskState = 'PENDING' | 'STARTED' | 'RETRY' | 'SUCCESS' | 'FAILURE' | 'REVOKED';
export const READY_STATES: ReadonlySet<TaskState> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);

/** A task's exception as Celery stores it; `excModule` "builtins" makes Python raise the real builtin. */
export interface ExceptionInfo {
  excType: string;
  excModule: string | null;
  excMessage: string;
  traceback: string | null;
}

export interface ResultMeta {
  status: TaskState;
  result: unknown;
  traceback: string | null;
  date_done: string | null;
  task_id: string;
  children?: unknown[];
}

const str = (s: string): string => JSON.stringify(s);

/** SUCCESS meta around an already-encoded JSON value. */
export function successMeta(taskId: string, resultJson: string, now = Date.now()): string {
  return `{"status": "SUCCESS", "result": ${resultJson}, "traceback": null, "children": [], "date_done": ${str(formatDateDone(now))}, "task_id": ${str(taskId)}}`;
}

/** FAILURE / RETRY / REVOKED meta: `result` is the exception in Celery's `{exc_type, exc_message, exc_module}` form. */
export function exceptionMeta(
  state: 'FAILURE' | 'RETRY' | 'REVOKED',
  taskId: string,
  exc: ExceptionInfo,
  now = Date.now(),
): string {
  const result = `{"exc_type": ${str(exc.excType)}, "exc_message": [${str(exc.excMessage)}], "exc_module": ${exc.excModule === null ? 'null' : str(exc.excModule)}}`;
  const done = state === 'RETRY' ? 'null' : str(formatDateDone(now));
  return `{"status": "${state}", "result": ${result}, "traceback": ${exc.traceback === null ? 'null' : str(exc.traceback)}, "children": [], "date_done": ${done}, "task_id": ${str(taskId)}}`;
}

/** Parses a stored meta; throws when it is not one (a foreign key that happens to share the name). */
export function parseMeta(text: string): ResultMeta {
  let meta: unknown;
  try {
    meta = parseJson(text);
  } catch {
    meta = null;
  }
  if (typeof meta !== 'object' || meta === null || typeof (meta as { status?: unknown }).status !== 'string') {
    throw new Error(`not a Celery result meta: ${text.slice(0, 200)}`);
  }
  return meta as ResultMeta;
}

/** The error a FAILURE (or REVOKED) meta stands for. */
export function errorOf(meta: ResultMeta): TaskFailedError {
  const r = (typeof meta.result === 'object' && meta.result !== null ? meta.result : {}) as Record<string, unknown>;
  return new TaskFailedError(meta.task_id, {
    excType: typeof r.exc_type === 'string' ? r.exc_type : meta.status,
    excModule: typeof r.exc_module === 'string' ? r.exc_module : null,
    excMessage: r.exc_message ?? null,
    traceback: meta.traceback ?? null,
  });
}

/**
 * One subscriber connection shared by every `get()` of a producer: a waiter per task id, SUBSCRIBE on
 * first interest and UNSUBSCRIBE when the last waiter for that id leaves, so no subscription outlives
 * its callers.
 * The stored meta is read on the same connection, sent behind the SUBSCRIBE: Redis runs one
 * connection's commands in order, so the read sees a result stored before the subscription and the
 * subscription sees one stored after, in one round trip instead of a SUBSCRIBE and then a GET on the
 * command connection. That needs RESP3 (Redis ≥ 6, which ioredis negotiates by default): RESP2 allows
 * only subscriber commands on a subscribed connection.
 */
export class ResultListener {
  readonly #sub: Redis;
  readonly #waiters = new Map<string, Set<(meta: ResultMeta) => void>>();

  constructor(sub: Redis) {
    this.#sub = sub;
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.#deliver(channel.toString(), message.toString()));
  }

  #deliver(channel: string, message: string): void {
    const waiters = this.#waiters.get(channel);
    if (!waiters) return;
    let meta: ResultMeta;
    try {
      meta = parseMeta(message);
    } catch {
      return;
    }
    for (const w of [...waiters]) w(meta);
  }

  /**
   * Calls `onMeta` with the stored meta, if any, then for every state published for `taskId` until
   * the returned function is called; that one drops the waiter at once.
   */
  async listen(taskId: string, onMeta: (meta: ResultMeta) => void): Promise<() => void> {
    const channel = resultKey(taskId);
    let set = this.#waiters.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.#waiters.set(channel, set);
    }
    set.add(onMeta);
    const stop = (): void => {
      const current = this.#waiters.get(channel);
      if (!current || !current.delete(onMeta) || current.size > 0) return;
      this.#waiters.delete(channel);
      // After the caller has its result: the UNSUBSCRIBE's write need not come before it. A waiter
      // for the same id that came meanwhile keeps the subscription (its SUBSCRIBE was a no-op).
      setImmediate(() => {
        if (!this.#waiters.has(channel)) this.#sub.unsubscribe(channel).catch(() => undefined);
      });
    };
    try {
      const stored = first ? await this.#subscribeAndRead(channel) : await this.#sub.get(channel);
      if (stored !== null) onMeta(parseMeta(stored));
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }

  async #subscribeAndRead(channel: string): Promise<string | null> {
    const replies = (await this.#sub.pipeline().subscribe(channel).get(channel).exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    return (replies[1]?.[1] ?? null) as string | null;
  }

  get subscriptions(): number {
    return this.#waiters.size;
  }
}

export interface GetOptions {
  /** Milliseconds; default: wait forever (as Celery's `get()` does). */
  timeout?: number;
}

/** A handle on a task's result, like Celery's `AsyncResult`. */
export class AsyncResult {
  readonly id: string;
  readonly #cmd: Redis;
  readonly #listener: ResultListener;

  constructor(id: string, cmd: Redis, listener: ResultListener) {
    this.id = id;
    this.#cmd = cmd;
    this.#listener = listener;
  }

  /** The stored meta, or null while PENDING (Celery never stores PENDING). */
  async meta(): Promise<ResultMeta | null> {
    const text = await this.#cmd.get(resultKey(this.id));
    return text === null ? null : parseMeta(text);
  }

  async state(): Promise<TaskState> {
    return (await this.meta())?.status ?? 'PENDING';
  }

  /**
   * Resolves with the return value on SUCCESS; rejects with a TaskFailedError on FAILURE/REVOKED and
   * a TimeoutError when `timeout` passes. A result stored before the call is read, one stored after is
   * heard (ResultListener).
   */
  async get(options: GetOptions = {}): Promise<unknown> {
    let settle!: (meta: ResultMeta) => void;
    const ready = new Promise<ResultMeta>((resolve) => {
      settle = (meta) => {
        if (READY_STATES.has(meta.status)) resolve(meta);
      };
    });
    const stop = await this.#listener.listen(this.id, settle);
    let timer: NodeJS.Timeout | undefined;
    try {
      const timedOut = new Promise<never>((_, reject) => {
        if (options.timeout === undefined) return;
        timer = setTimeout(
          () => reject(new TimeoutError(`no result for task ${this.id} within ${options.timeout} ms`)),
          options.timeout,
        );
      });
      const meta = await Promise.race([ready, timedOut]);
      if (meta.status === 'SUCCESS') return meta.result;
      throw errorOf(meta);
    } finally {
      clearTimeout(timer);
      stop();
    }
  }

  /** Deletes the stored result (Celery's `forget()`). */
  async forget(): Promise<void> {
    await this.#cmd.del(resultKey(this.id));
  }
}

/** Encodes a task's return value for the meta; a value JSON cannot hold is a TypeError, as in Celery's encoder. */
export function encodeResult(value: unknown): string {
  const json = stringifyJson(value === undefined ? null : value);
  if (json === undefined) throw new TypeError(`Object of type ${typeof value} is not JSON serializable`);
  return json;
}
