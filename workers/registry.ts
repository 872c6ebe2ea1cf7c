// The task API for user modules (`import { defineTask } from 'celeriac/task'`): tasks are registered
// under their full Celery name, and a bound task gets Celery's `self` with `self.request`.
// Runs inside pool threads; it never touches Redis.

import type { RequestData } from './types.js';

/** `self.request` of a bound task (Celery's task Context). */
export type TaskRequest = Readonly<RequestData>;

/** `self` of a bound task. */
export interface BoundTask {
  readonly name: string;
  readonly request: TaskRequest;
  /**
   * Aborted at the soft time limit with a SoftTimeLimitExceeded reason: pass it to what the task awaits
   * (fetch, timers) or check it; the hard limit still ends the task if it carries on.
   */
  readonly signal: AbortSignal;
  /**
   * Celery's `self.retry()`: ends this run and sends the task again (same id, retries + 1) after
   * `countdown` seconds (default: the task's defaultRetryDelay) or at `eta`. Past maxRetries the task
   * fails with `exc` if given, else MaxRetriesExceededError. Always throws: `throw self.retry(...)`
   * reads well and keeps TypeScript's control flow right.
   */
  retry(options?: RetryOptions): never;
}

export interface RetryOptions {
  /** The reason, stored in the RETRY meta and raised when retries run out. */
  exc?: unknown;
  countdown?: number;
  eta?: Date | number;
  /** Overrides the task's maxRetries for this call (null: forever). */
  maxRetries?: number | null;
}

/** Thrown by `self.retry()`; the pool thread turns it into a retry outcome. */
export class Retry extends Error {
  readonly options: RetryOptions;
  constructor(options: RetryOptions) {
    super('Retry');
    this.name = 'Retry';
    this.options = options;
  }
}

/** Celery's soft time limit error (`celery.exceptions.SoftTimeLimitExceeded`); a task may catch it. */
export class SoftTimeLimitExceeded extends Error {
  constructor(seconds: number) {
    super(`SoftTimeLimitExceeded(${seconds})`);
    this.name = 'SoftTimeLimitExceeded';
  }
}

export interface TaskOptions {
  /** Pass `self` (name and request) as the first argument, like Celery's `bind=True`. */
  bind?: boolean;
  /**
   * Parameter names, so keyword arguments from Python (`add.delay(x=1, y=2)`) bind to positions as they
   * would in Python. Without it, non-empty kwargs are passed as one extra, last argument.
   */
  params?: readonly string[];
  /** Store no result, like Celery's `ignore_result=True`. */
  ignoreResult?: boolean;
  /** Seconds before the task's thread is terminated (Celery's `time_limit`): FAILURE TimeLimitExceeded. */
  timeLimit?: number;
  /** Seconds before `self.signal` aborts with SoftTimeLimitExceeded (Celery's `soft_time_limit`). */
  softTimeLimit?: number;
  /** Celery's `rate_limit`: '10/s', '100/m', '1000/h' (or a number per second), for all workers together. */
  rateLimit?: string | number;
  /** Retries before giving up (Celery's `max_retries`, default 3; null: forever). */
  maxRetries?: number | null;
  /** Seconds a retry waits by default (Celery's `default_retry_delay`, 180). */
  defaultRetryDelay?: number;
  /** Errors (classes or `name`s) that retry the task automatically (Celery's `autoretry_for`). */
  autoretryFor?: readonly (string | (new (...args: any[]) => Error))[];
  /** Exponential backoff for automatic retries: true = 1 s, 2 s, 4 s..., a number = that factor. */
  retryBackoff?: boolean | number;
  /** Cap of the backoff in seconds (Celery's `retry_backoff_max`, 600). */
  retryBackoffMax?: number;
  /** Randomise the backoff between 0 and its value (Celery's `retry_jitter`, default true). */
  retryJitter?: boolean;
}

// Loose on purpose: task functions take whatever the message carries; the task validates its input.
type AnyFn = (...args: any[]) => unknown;

export interface TaskDefinition {
  readonly name: string;
  readonly fn: AnyFn;
  readonly options: Readonly<Required<Pick<TaskOptions, 'bind' | 'ignoreResult'>>> & {
    readonly params: readonly string[] | null;
    readonly timeLimit: number | null;
    readonly softTimeLimit: number | null;
    readonly maxRetries: number | null;
    /** From rateLimit: ms between starts, or null. */
    readonly rateIntervalMs: number | null;
    readonly defaultRetryDelay: number;
    readonly autoretryFor: readonly (string | (new (...args: any[]) => Error))[];
    readonly retryBackoff: number;
    readonly retryBackoffMax: number;
    readonly retryJitter: boolean;
  };
}

// Keyed on a global symbol so two copies of this module (say, the app importing 'celeriac/task' from
// another node_modules) still share one registry per thread.
const REGISTRY = Symbol.for('celeriac.registry');
type Store = Map<string, TaskDefinition>;
const store: Store = ((globalThis as Record<symbol, unknown>)[REGISTRY] as Store | undefined) ??
  ((globalThis as Record<symbol, unknown>)[REGISTRY] = new Map<string, TaskDefinition>()) as Store;

const NAME = /^[^\s]+$/;

/**
 * Registers a task under its full Celery name (`celery_app.tasks.add`). With `bind: true` the function
 * is called as `fn(self, ...args)`.
 */
export function defineTask(name: string, fn: AnyFn): TaskDefinition;
export function defineTask(name: string, options: TaskOptions, fn: AnyFn): TaskDefinition;
export function defineTask(name: string, a: AnyFn | TaskOptions, b?: AnyFn): TaskDefinition {
  const fn = typeof a === 'function' ? a : b;
  const options = typeof a === 'function' ? {} : a;
  if (typeof name !== 'string' || !NAME.test(name)) throw new TypeError(`task name must be a non-empty string without spaces, got ${String(name)}`);
  if (typeof fn !== 'function') throw new TypeError(`task ${name}: expected a function`);
  if (store.has(name)) throw new Error(`task ${name} is defined twice`);
  const def: TaskDefinition = Object.freeze({
    name,
    fn,
    options: Object.freeze({
      bind: options.bind ?? false,
      ignoreResult: options.ignoreResult ?? false,
      params: options.params ? Object.freeze([...options.params]) : null,
      timeLimit: seconds(name, 'timeLimit', options.timeLimit),
      softTimeLimit: seconds(name, 'softTimeLimit', options.softTimeLimit),
      maxRetries: options.maxRetries === undefined ? 3 : options.maxRetries,
      rateIntervalMs: options.rateLimit === undefined ? null : rateInterval(name, options.rateLimit),
      defaultRetryDelay: options.defaultRetryDelay ?? 180,
      autoretryFor: Object.freeze([...(options.autoretryFor ?? [])]),
      retryBackoff: options.retryBackoff === true ? 1 : options.retryBackoff === false || options.retryBackoff === undefined ? 0 : options.retryBackoff,
      retryBackoffMax: options.retryBackoffMax ?? 600,
      retryJitter: options.retryJitter ?? true,
    }),
  });
  store.set(name, def);
  return def;
}

const PER: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/** Celery's rate syntax to ms between starts: '10/s' → 100. */
export function rateInterval(task: string, limit: string | number): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/.exec(String(limit));
  const count = m ? Number(m[1]) : Number.NaN;
  if (!m || !(count > 0)) throw new TypeError(`task ${task}: rateLimit must look like '10/s', '100/m' or '1000/h', got '${String(limit)}'`);
  return (PER[m[2] ?? 's'] as number) / count;
}

function seconds(task: string, option: string, value: number | undefined): number | null {
  if (value === undefined) return null;
  if (typeof value !== 'number' || !(value > 0)) throw new TypeError(`task ${task}: ${option} must be a positive number of seconds`);
  return value;
}

export function getTask(name: string): TaskDefinition | undefined {
  return store.get(name);
}

export function allTasks(): TaskDefinition[] {
  return [...store.values()];
}

/**
 * The positional arguments a call gets: Python's binding rules when `params` is declared (a keyword for a
 * parameter already given positionally, or an unknown keyword, is a TypeError), else kwargs appended.
 */
export function bindArguments(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>): unknown[] {
  const names = Object.keys(kwargs);
  if (names.length === 0) return [...args];
  if (def.options.params === null) return [...args, kwargs];
  const bound = [...args];
  for (const key of names) {
    const index = def.options.params.indexOf(key);
    if (index < 0) throw new TypeError(`${def.name}() got an unexpected keyword argument '${key}'`);
    if (index < args.length) throw new TypeError(`${def.name}() got multiple values for argument '${key}'`);
    bound[index] = kwargs[key];
  }
  return bound;
}

/** Whether `err` is one the task retries automatically. */
export function autoretries(def: TaskDefinition, err: unknown): boolean {
  return def.options.autoretryFor.some((e) => (typeof e === 'string' ? (err as { name?: unknown } | null)?.name === e : err instanceof e));
}

/** Seconds an automatic retry waits: Celery's exponential backoff (with full jitter), else the default delay. */
export function autoretryCountdown(def: TaskDefinition, retries: number): number {
  const o = def.options;
  if (o.retryBackoff === 0) return o.defaultRetryDelay;
  const countdown = Math.min(o.retryBackoffMax, o.retryBackoff * 2 ** retries);
  // Full jitter, as Celery's: anywhere from 0 to the backoff (uniform; Celery draws whole seconds).
  return o.retryJitter ? Math.random() * countdown : countdown;
}
