// The Piscina adapter: runs tasks on pool threads in small batches and always resolves with one Outcome
// per task. One batch per thread at a time, so `free` counts idle threads and a warm shutdown knows
// which tasks were handed over.
//
// Why batches: on this machine the fixed cost of one postMessage to a thread (the thread's wake-up) was
// the largest cost of dispatch on the supervisor's thread, and a thread waited a full hop between tasks.
// The consumer sizes batches from measured run times, so only short tasks share a batch; a long task
// travels alone and never waits behind another on a busy thread while a thread is idle.
//
// A thread that dies fails only the task it was running: WorkerLostError (process.exit, crash),
// MemoryError (past --max-memory-per-thread), or `aborted` when the caller ended it (hard time limit,
// revoke --terminate). Each task's progress is kept in shared memory (not started / running /
// finished), so the others of its batch come back as `notRun` for the consumer to dispatch again:
// untouched ones never ran, and finished ones whose outcome died with the thread run again
// (at-least-once). A thread that has run --max-tasks-per-thread tasks exits after its reply and
// Piscina starts a fresh one.

import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Piscina } from 'piscina';
import { AppLoadError } from './errors.js';
import type { EventBus } from './events.js';
import { fromOutcomeColumns, toBatchColumns } from '../workers/columns.js';
import { MAX_BATCH, TaskProgress, type BatchItem, type BatchResult, type Manifest, type ThreadConfig, type ThreadOutcome } from '../workers/types.js';

const ENTRY = fileURLToPath(new URL('../workers/entry.js', import.meta.url));

export interface PoolOptions {
  /** The user's task module: a path (relative to the working directory) or a package specifier. */
  app: string;
  threads: number;
  /** The worker's node name, for `self.request.hostname`. */
  hostname: string;
  bus: EventBus;
  softTimeLimit: number | null;
  maxTasksPerThread: number;
  /** Old-generation heap cap per thread in MB; 0 = Node's default. */
  maxMemoryPerThreadMb: number;
  /** Added to each thread's niceness (Linux). */
  nice: number;
}

/** Why the caller ended a batch: it becomes the thread-restart reason. */
export type AbortReason = 'time_limit' | 'terminate';

/** What became of one task of a batch. */
export type BatchOutcome = ThreadOutcome | { notRun: true } | { aborted: AbortReason; runtimeMs: number };

/** Turns `-A` into something `import()` inside a thread resolves the same way from anywhere. */
export function resolveApp(app: string): string {
  const asPath = resolve(app);
  if (existsSync(asPath)) return pathToFileURL(asPath).href;
  try {
    return pathToFileURL(createRequire(pathToFileURL(resolve('package.json')).href).resolve(app)).href;
  } catch {
    throw new AppLoadError(`cannot find the task module ${app} (a path to a .js file, or an installed package)`);
  }
}

export class Pool {
  readonly #piscina: Piscina;
  readonly threads: number;
  readonly #bus: EventBus;
  /** One region of MAX_BATCH progress cells per batch in flight (at most one batch per thread). */
  readonly #progress: Int32Array;
  readonly #freeRegions: number[];
  #destroyed = false;

  constructor(options: PoolOptions) {
    this.threads = options.threads;
    this.#bus = options.bus;
    const shared = new SharedArrayBuffer(options.threads * MAX_BATCH * Int32Array.BYTES_PER_ELEMENT);
    this.#progress = new Int32Array(shared);
    this.#freeRegions = Array.from({ length: options.threads }, (_, i) => i);
    this.#piscina = new Piscina({
      filename: ENTRY,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Measured (design.md): 'disabled' dispatches ~20% faster than 'sync' and lets a thread run
      // timers and async I/O between tasks.
      atomics: 'disabled',
      workerData: {
        app: resolveApp(options.app),
        hostname: options.hostname,
        progress: shared,
        softTimeLimit: options.softTimeLimit,
        maxTasksPerThread: options.maxTasksPerThread,
        nice: options.nice,
      } satisfies ThreadConfig,
      ...(options.maxMemoryPerThreadMb > 0 ? { resourceLimits: { maxOldGenerationSizeMb: options.maxMemoryPerThreadMb } } : {}),
    });
  }

  /** Loads the task module in a thread and lists its tasks; a module that fails to load is an AppLoadError. */
  async describe(): Promise<Manifest> {
    try {
      return (await this.#piscina.run({ kind: 'describe' })) as Manifest;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new AppLoadError(`the task module failed to load: ${message}`, { cause: err });
    }
  }

  /** Threads without a batch. */
  get free(): number {
    return this.#freeRegions.length;
  }

  /** Threads running a batch. */
  get busy(): number {
    return this.threads - this.#freeRegions.length;
  }

  /**
   * Runs up to MAX_BATCH tasks, one after the other, on one idle thread (the caller checks `free`).
   * Aborting `signal` with an AbortReason terminates the thread.
   */
  async runBatch(items: readonly BatchItem[], signal?: AbortSignal): Promise<BatchOutcome[]> {
    const region = this.#freeRegions.pop();
    if (region === undefined || items.length === 0 || items.length > MAX_BATCH) throw new RangeError('runBatch needs an idle thread and 1 to MAX_BATCH tasks');
    const base = region * MAX_BATCH;
    this.#progress.fill(TaskProgress.NotStarted, base, base + items.length);
    const started = performance.now();
    try {
      const result = (await this.#piscina.run({ kind: 'run', items: toBatchColumns(items), progressAt: base }, signal ? { signal } : {})) as BatchResult;
      if (result.declined) return items.map(() => ({ notRun: true }));
      if (result.retiring) this.#bus.emit('pool:thread-restart', { reason: 'recycle' });
      return fromOutcomeColumns(result.outcomes);
    } catch (err) {
      const running = items.findIndex((_, i) => Atomics.load(this.#progress, base + i) === TaskProgress.Running);
      const aborted = signal?.aborted ? (signal.reason as AbortReason) : null;
      const outOfMemory = (err as { code?: unknown }).code === 'ERR_WORKER_OUT_OF_MEMORY';
      // Piscina starts a replacement. A thread that died between tasks was one retiring.
      if (!this.#destroyed && running >= 0) this.#bus.emit('pool:thread-restart', { reason: aborted ?? (outOfMemory ? 'memory' : 'crash') });
      const runtimeMs = performance.now() - started;
      const message = err instanceof Error ? err.message : String(err);
      return items.map((_, i): BatchOutcome => {
        if (i !== running) return { notRun: true };
        if (aborted) return { aborted, runtimeMs };
        if (outOfMemory) return { ok: false, runtimeMs, exc: { excType: 'MemoryError', excModule: 'builtins', excMessage: `the task's thread ran out of memory: ${message}`, traceback: null } };
        return { ok: false, runtimeMs, exc: { excType: 'WorkerLostError', excModule: 'celery.exceptions', excMessage: `worker thread exited while running the task: ${message}`, traceback: null } };
      });
    } finally {
      this.#freeRegions.push(region);
    }
  }

  /** Terminates every thread at once; what was running comes back as WorkerLostError or notRun. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    await this.#piscina.destroy();
  }
}

export function defaultConcurrency(): number {
  return availableParallelism();
}
