// What crosses the thread boundary between the supervisor (src/pool.ts) and a pool thread
// (workers/entry.ts). Plain data only: Piscina structured-clones it, and an Error's class and fields
// would not survive, so failures travel as fields.

import type { RawBody } from '../src/protocol.js';

/** What a task sees as `self.request` (Celery's Context), minus what cannot be cloned. */
export interface RequestData {
  id: string;
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  retries: number;
  eta: number | null;
  expires: number | null;
  timeLimit: [number | null, number | null];
  rootId: string | null;
  parentId: string | null;
  group: string | null;
  groupIndex: number | null;
  origin: string | null;
  hostname: string;
  deliveryInfo: { routingKey: string | null; priority: number };
  headers: Record<string, unknown>;
  ignoreResult: boolean;
}

/**
 * A task travels as strings and numbers the supervisor has already validated (all but the body):
 * cloning a string is a copy, while cloning the decoded request walks every field. The thread decodes
 * only `body` (a few bytes for most tasks), and the whole raw message again only to build
 * `self.request`.
 */
export interface BatchItem {
  /** The whole message, sent only when the thread needs it (a bound task, or protocol 1); else null. */
  raw: string | null;
  /** The v2 body as the envelope carries it, `[args, kwargs, embed]`; null (protocol 1): the thread decodes `raw`. */
  body: RawBody | null;
  id: string;
  task: string;
  retries: number;
  /** The message's own soft time limit, seconds (Celery's `timelimit[1]`). */
  softTimeLimit: number | null;
  ignoreResult: boolean;
}

/** A batch as it is posted to a thread (columns.ts): index i of every array is task i. */
export interface BatchColumns {
  raw: (string | null)[];
  body: (string | null)[];
  bodyBase64: boolean[];
  id: string[];
  task: string[];
  retries: number[];
  softTimeLimit: (number | null)[];
  ignoreResult: boolean[];
}

/** A batch's outcomes as they are posted back (columns.ts): `exc` null is a success, its `json` the result. */
export interface OutcomeColumns {
  /** Non-null: the task's body could not be decoded, for this reason; the other fields mean nothing. */
  rejected: (string | null)[];
  runtimeMs: number[];
  json: (string | null)[];
  exc: (ExceptionData | null)[];
  retryAt: (number | null)[];
}

/**
 * The most tasks in one batch (one postMessage to a thread). Under load a hand-off costs the
 * supervisor far more than its clone (100-180 µs: waking the thread), so fewer, larger batches pay:
 * in 20,000-task drains 64 beat 32 in 7 of 8 interleaved pairs; 128 was no better than 64 (the two
 * threads took the ready list in halves and then waited for the next fetch).
 */
export const MAX_BATCH = 64;

/** A task's progress in its batch, kept in shared memory so it survives the thread's death. */
export const TaskProgress = { NotStarted: 0, Running: 1, Finished: 2 } as const;

/** `progressAt`: index of the batch's first cell in the shared progress array. */
export type PoolRequest = { kind: 'describe' } | { kind: 'run'; items: BatchColumns; progressAt: number };

export interface TaskInfo {
  name: string;
  ignoreResult: boolean;
  /** Seconds (Celery's `time_limit`, `soft_time_limit`), or null. */
  timeLimit: number | null;
  softTimeLimit: number | null;
  /** Milliseconds between starts under the task's rate limit (all workers together), or null. */
  rateIntervalMs: number | null;
  /** Reads `self.request`: its thread needs the whole message. */
  bind: boolean;
}

/** Set once per thread through Piscina's workerData. */
export interface ThreadConfig {
  app: string;
  hostname: string;
  progress: SharedArrayBuffer;
  /** Worker defaults (seconds) for tasks that set no limit of their own. */
  softTimeLimit: number | null;
  /** The thread retires after this many tasks (Celery's max_tasks_per_child); 0 = never. */
  maxTasksPerThread: number;
  /** Added to the thread's niceness when it starts (Linux). */
  nice: number;
}

/** `retiring`: the thread has run its share of tasks and exits right after this reply. */
export interface BatchResult {
  outcomes: OutcomeColumns;
  /** The thread exits after this reply (--max-tasks-per-thread). */
  retiring: boolean;
  /** The thread was already retiring when the batch arrived: none of it ran. */
  declined?: true;
}

export interface Manifest {
  tasks: TaskInfo[];
}

/** A task's exception in Celery's terms; see README "How JavaScript errors reach Python". */
export interface ExceptionData {
  excType: string;
  excModule: string | null;
  excMessage: string;
  traceback: string | null;
}

/** `json` is the return value already encoded for the result meta (null: nothing to store). */
/** `retryAt` (epoch ms): the task asked to run again then (Celery's retry); `exc` is the reason. */
export type Outcome =
  | { ok: true; json: string | null; runtimeMs: number }
  | { ok: false; exc: ExceptionData; runtimeMs: number; retryAt?: number };

/** The thread could not decode the task's body (`decodeBody`): not run, dead-lettered with `rejected` as the reason. */
export interface Rejection {
  rejected: string;
}

/** What a thread reports for one task of a batch. */
export type ThreadOutcome = Outcome | Rejection;
