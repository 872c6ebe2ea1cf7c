// The Piscina `filename`: runs inside each pool thread. Loads the user's task module once per thread,
// finds a task by its full Celery name, runs it, and returns a plain Outcome with the result already
// JSON-encoded (so the supervisor never re-encodes it). It never throws across the thread boundary:
// Piscina would lose the error's class and fields.

import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { workerData } from 'node:worker_threads';
import { stringifyJson } from '../src/json.js';
import { ProtocolError } from '../src/errors.js';
import { decode, decodeBody, type RawBody } from '../src/protocol.js';
import { allTasks, autoretries, autoretryCountdown, bindArguments, getTask, Retry, SoftTimeLimitExceeded, type RetryOptions, type TaskDefinition, type TaskRequest } from './registry.js';
import { fromBatchColumns, toOutcomeColumns } from './columns.js';
import { TaskProgress, type BatchItem, type BatchResult, type ExceptionData, type Manifest, type Outcome, type PoolRequest, type RequestData, type ThreadConfig, type ThreadOutcome } from './types.js';

const config = workerData as ThreadConfig;
const { app, hostname } = config;
const progress = new Int32Array(config.progress);

/**
 * Lowers this thread's priority below the supervisor's. On two cores, a pool thread woken for a batch
 * took the core from the supervisor while it was still handing out work, and the threads then waited
 * for it (20,000-task drains at +5 against 0: faster in 12 of 15 interleaved pairs, medians +4-10%).
 * Linux sets niceness per thread, by the thread's id. Where the worker is its own CPU group (a
 * container, a systemd service with a CPU weight) this orders only its own threads.
 */
function lowerPriority(increment: number): void {
  if (increment === 0 || process.platform !== 'linux') return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    setPriority(tid, Math.min(19, getPriority(tid) + increment));
  } catch {
    // No /proc (an unusual sandbox): the thread runs at the supervisor's priority, as with 0.
  }
}
lowerPriority(config.nice);
let tasksRun = 0;
let retired = false;
let loaded: Promise<unknown> | null = null;
const load = (): Promise<unknown> => (loaded ??= import(app));

// Python builtin exception names: a JS error with one of these names becomes that builtin in Python, so
// `except TypeError:` works there. Any other name reaches Python as a class of the same name.
const PY_BUILTINS = new Set([
  'ArithmeticError', 'AssertionError', 'AttributeError', 'BaseException', 'BufferError', 'ConnectionError',
  'EOFError', 'Exception', 'FileExistsError', 'FileNotFoundError', 'FloatingPointError', 'ImportError',
  'IndexError', 'KeyError', 'LookupError', 'MemoryError', 'ModuleNotFoundError', 'NameError',
  'NotImplementedError', 'OSError', 'OverflowError', 'PermissionError', 'RecursionError', 'ReferenceError',
  'RuntimeError', 'StopIteration', 'SyntaxError', 'SystemError', 'TimeoutError', 'TypeError',
  'UnicodeError', 'ValueError', 'ZeroDivisionError',
]);

export function exceptionOf(err: unknown): ExceptionData {
  if (!(err instanceof Error)) {
    return { excType: 'Exception', excModule: 'builtins', excMessage: describe(err), traceback: null };
  }
  const ctor = (err.constructor as { name?: unknown } | undefined)?.name;
  const excType = err.name !== 'Error' ? err.name : typeof ctor === 'string' && ctor !== '' ? ctor : 'Error';
  return {
    excType,
    excModule: PY_BUILTINS.has(excType) ? 'builtins' : null,
    excMessage: err.message,
    traceback: err.stack ?? null,
  };
}

function describe(value: unknown): string {
  try {
    return typeof value === 'string' ? value : stringifyJson(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function encodeValue(value: unknown): string {
  const json = stringifyJson(value === undefined ? null : value);
  if (json === undefined) throw new TypeError(`Object of type ${typeof value} is not JSON serializable`);
  return json;
}

/** What a run needs of its message besides `self.request`. */
interface Call {
  id: string;
  retries: number;
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** A protocol 2 message's call, from its body (`decodeBody` throws a ProtocolError for a bad one). */
function callOf(item: BatchItem): Call {
  const { args, kwargs } = decodeBody(item.body as RawBody, { taskId: item.id, taskName: item.task });
  return { id: item.id, retries: item.retries, args: args as unknown[], kwargs: kwargs as Record<string, unknown> };
}

async function run(item: BatchItem): Promise<ThreadOutcome> {
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  const def = getTask(item.task);
  if (!def) {
    return { ok: false, runtimeMs: 0, exc: { excType: 'NotRegistered', excModule: 'celery.exceptions', excMessage: item.task, traceback: null } };
  }
  // The supervisor sends the whole message only when it must be decoded again: a bound task reads
  // `self.request`, and protocol 1 has no separate body. The supervisor validated all but the body.
  let request: RequestData | null;
  let data: Call;
  try {
    request = item.raw === null ? null : requestOf(item.raw, item.ignoreResult);
    data = request ?? callOf(item);
  } catch (err) {
    if (err instanceof ProtocolError) return { rejected: err.message };
    throw err;
  }
  let value: unknown;
  // Celery's order: the message's limit, then the task's, then the worker's.
  const soft = item.softTimeLimit ?? def.options.softTimeLimit ?? config.softTimeLimit;
  const controller = new AbortController();
  const timer = soft === null ? null : setTimeout(() => controller.abort(new SoftTimeLimitExceeded(soft)), soft * 1000);
  try {
    const args = bindArguments(def, data.args, data.kwargs);
    if (def.options.bind) {
      const retry = (options: RetryOptions = {}): never => {
        throw new Retry(options);
      };
      value = await def.fn({ name: def.name, request: Object.freeze(request as RequestData) as TaskRequest, signal: controller.signal, retry }, ...args);
    } else {
      value = await def.fn(...args);
    }
  } catch (err) {
    if (err instanceof Retry) return retryOutcome(def, data, err.options, elapsed());
    if (autoretries(def, err)) return retryOutcome(def, data, { exc: err, countdown: autoretryCountdown(def, data.retries) }, elapsed());
    // Awaiting with the signal rejects with an AbortError caused by the limit: report the limit.
    const reason: unknown = controller.signal.reason;
    const softLimit = reason instanceof SoftTimeLimitExceeded && (err === reason || (err as { cause?: unknown } | null)?.cause === reason);
    const exc = exceptionOf(softLimit ? reason : err);
    if (softLimit) exc.excModule = 'celery.exceptions';
    return { ok: false, exc, runtimeMs: elapsed() };
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (item.ignoreResult || def.options.ignoreResult) return { ok: true, json: null, runtimeMs: elapsed() };
  try {
    return { ok: true, json: encodeValue(value), runtimeMs: elapsed() };
  } catch (err) {
    // What Celery raises when a result cannot be serialised.
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, runtimeMs: elapsed(), exc: { excType: 'EncodeError', excModule: 'kombu.exceptions', excMessage: message, traceback: err instanceof Error ? err.stack ?? null : null } };
  }
}

/** Celery's retry: again later (same id, retries + 1), or past maxRetries, FAILURE with the reason. */
function retryOutcome(def: TaskDefinition, data: Call, o: RetryOptions, runtimeMs: number): Outcome {
  const max = o.maxRetries === undefined ? def.options.maxRetries : o.maxRetries;
  if (max !== null && data.retries >= max) {
    if (o.exc !== undefined) return { ok: false, runtimeMs, exc: exceptionOf(o.exc) };
    const message = `Can't retry ${def.name}[${data.id}] args:${stringifyJson(data.args)} kwargs:${stringifyJson(data.kwargs)}`;
    return { ok: false, runtimeMs, exc: { excType: 'MaxRetriesExceededError', excModule: 'celery.exceptions', excMessage: message, traceback: null } };
  }
  const eta = o.eta instanceof Date ? o.eta.getTime() : o.eta;
  const retryAt = eta ?? Date.now() + 1000 * (o.countdown ?? def.options.defaultRetryDelay);
  const exc: ExceptionData = o.exc === undefined
    ? { excType: 'Retry', excModule: 'celery.exceptions', excMessage: `Retry at ${new Date(retryAt).toISOString()}`, traceback: null }
    : exceptionOf(o.exc);
  return { ok: false, runtimeMs, exc, retryAt };
}

/** `self.request` from a message whose envelope the supervisor accepted: only its body can be refused. */
function requestOf(raw: string, ignoreResult: boolean): RequestData {
  const msg = decode(raw, { maxBytes: Number.POSITIVE_INFINITY });
  return {
    id: msg.id,
    task: msg.task,
    args: msg.args as unknown[],
    kwargs: msg.kwargs as Record<string, unknown>,
    retries: msg.retries,
    eta: msg.eta,
    expires: msg.expires,
    timeLimit: [msg.timeLimit[0], msg.timeLimit[1]],
    rootId: msg.rootId,
    parentId: msg.parentId,
    group: msg.group,
    groupIndex: msg.groupIndex,
    origin: msg.origin,
    hostname,
    deliveryInfo: { routingKey: msg.routingKey, priority: msg.priority },
    headers: msg.headers as Record<string, unknown>,
    ignoreResult,
  };
}

async function runBatch(items: readonly BatchItem[], progressAt: number): Promise<BatchResult> {
  // Piscina may hand this thread another batch between its retiring reply and its exit.
  if (retired) return { outcomes: toOutcomeColumns([]), retiring: false, declined: true };
  const outcomes: ThreadOutcome[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as BatchItem;
    Atomics.store(progress, progressAt + i, TaskProgress.Running);
    outcomes.push(await run(item));
    Atomics.store(progress, progressAt + i, TaskProgress.Finished);
  }
  tasksRun += items.length;
  const retiring = config.maxTasksPerThread > 0 && tasksRun >= config.maxTasksPerThread;
  // After the reply is posted (it is, before a macrotask runs): Piscina replaces the thread, and
  // whatever memory the tasks leaked goes with it.
  if (retiring) {
    retired = true;
    setImmediate(() => process.exit(0));
  }
  return { outcomes: toOutcomeColumns(outcomes), retiring };
}

export default async function handle(req: PoolRequest): Promise<BatchResult | Manifest> {
  await load();
  if (req.kind === 'describe') {
    return {
      tasks: allTasks().map((t) => ({ name: t.name, ignoreResult: t.options.ignoreResult, timeLimit: t.options.timeLimit, softTimeLimit: t.options.softTimeLimit, rateIntervalMs: t.options.rateIntervalMs, bind: t.options.bind })),
    };
  }
  return runBatch(fromBatchColumns(req.items), req.progressAt);
}
