// Worker and client configuration: one table of settings (flag, env var, default, parser), merged as
// defaults < environment < command line, validated once into a frozen object. A bad value is a
// ConfigError naming the flag or variable; nothing is coerced silently.

import { hostname as osHostname, availableParallelism } from 'node:os';
import type { Level } from 'pino';
import { checkUrlOptions } from './connection.js';
import { ConfigError } from './errors.js';

export const DEFAULT_BROKER_URL = 'redis://127.0.0.1:6379/0';

export interface WorkerConfig {
  readonly brokerUrl: string;
  readonly app: string;
  readonly concurrency: number;
  readonly queues: readonly string[];
  readonly hostname: string;
  readonly loglevel: Level;
  readonly prefetchMultiplier: number;
  /** Seconds a warm shutdown waits for running tasks. */
  readonly shutdownTimeout: number;
  /** Seconds a stored result lives (Celery's `result_expires`). */
  readonly resultExpires: number;
  readonly maxMessageBytes: number;
  /** Seconds a worker's heartbeat lives without a refresh. */
  readonly heartbeatTtl: number;
  readonly maxRecoveries: number;
  /** Worker defaults for tasks and messages that set no limit (seconds), or null. */
  readonly timeLimit: number | null;
  readonly softTimeLimit: number | null;
  readonly maxTasksPerThread: number;
  readonly maxMemoryPerThread: number;
  /** Niceness of the pool threads relative to the supervisor (Linux). */
  readonly threadNice: number;
  /** Seconds a starting worker keeps retrying an unreachable Redis before giving up. */
  readonly connectTimeout: number;
  /** Port of /metrics, /healthz and /readyz; 0 turns the endpoints off. */
  readonly metricsPort: number;
  readonly metricsBind: string;
}

export type WorkerOptions = Partial<WorkerConfig>;

type Parser<T> = (text: string, key: string) => T;

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => (text, key) => {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(key, `expected a whole number, got '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(key, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
};

const seconds = (min: number): Parser<number> => (text, key) => {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min) throw new ConfigError(key, `expected seconds >= ${min}, got '${text}'`);
  return n;
};

const positiveSeconds: Parser<number | null> = (text, key) => {
  const n = seconds(0)(text, key);
  if (n === 0) throw new ConfigError(key, `expected seconds > 0, got '${text}'`);
  return n;
};

const redisUrl: Parser<string> = (text, key) => {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ConfigError(key, 'expected a URL like redis://host:6379/0');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(key, `expected a redis:// or rediss:// URL, got ${u.protocol}//`);
  checkUrlOptions(text, key);
  return text;
};

const queueList: Parser<readonly string[]> = (text, key) => {
  const queues = text.split(',').map((q) => q.trim());
  if (queues.some((q) => q === '')) throw new ConfigError(key, `expected comma-separated queue names, got '${text}'`);
  return Object.freeze([...new Set(queues)]);
};

// Celery's names (WARNING, CRITICAL) as well as pino's.
const LEVELS: Record<string, Level> = { trace: 'trace', debug: 'debug', info: 'info', warning: 'warn', warn: 'warn', error: 'error', critical: 'fatal', fatal: 'fatal' };
export const level: Parser<Level> = (text, key) => {
  const l = LEVELS[text.toLowerCase()];
  if (!l) throw new ConfigError(key, `expected one of debug, info, warning, error, critical, got '${text}'`);
  return l;
};

const nonEmpty: Parser<string> = (text, key) => {
  if (text.trim() === '') throw new ConfigError(key, 'must not be empty');
  return text;
};

/** Celery's `%h` (full host name) and `%n` (its first label) in node names. */
const hostname: Parser<string> = (text, key) =>
  nonEmpty(text, key).replace(/%h/g, osHostname()).replace(/%n/g, osHostname().split('.')[0] ?? '');

interface Setting<K extends keyof WorkerConfig> {
  key: K;
  flag: string;
  env: string;
  parse: Parser<WorkerConfig[K]>;
  fallback: () => WorkerConfig[K] | undefined;
  help: string;
}

const setting = <K extends keyof WorkerConfig>(s: Setting<K>): Setting<K> => s;

/** Every worker setting; the CLI's help and the README's configuration table are generated from the same facts. */
export const WORKER_SETTINGS = [
  setting({ key: 'brokerUrl', flag: 'broker', env: 'CELERIAC_BROKER_URL', parse: redisUrl, fallback: () => DEFAULT_BROKER_URL, help: 'Redis URL of the broker and result backend' }),
  setting({ key: 'app', flag: 'app', env: 'CELERIAC_APP', parse: nonEmpty, fallback: () => undefined, help: 'task module (path to a .js file or a package)' }),
  setting({ key: 'concurrency', flag: 'concurrency', env: 'CELERIAC_CONCURRENCY', parse: int(1, 1024), fallback: () => availableParallelism(), help: 'pool threads (default: CPU count)' }),
  setting({ key: 'queues', flag: 'queues', env: 'CELERIAC_QUEUES', parse: queueList, fallback: () => Object.freeze(['celery']), help: 'queues to consume, comma-separated' }),
  setting({ key: 'hostname', flag: 'hostname', env: 'CELERIAC_HOSTNAME', parse: hostname, fallback: () => `celeriac@${osHostname()}`, help: 'node name; %h is the host name' }),
  setting({ key: 'loglevel', flag: 'loglevel', env: 'CELERIAC_LOGLEVEL', parse: level, fallback: () => 'info', help: 'debug, info, warning, error or critical' }),
  setting({ key: 'prefetchMultiplier', flag: 'prefetch-multiplier', env: 'CELERIAC_PREFETCH_MULTIPLIER', parse: int(1, 10000), fallback: () => 4, help: 'messages reserved per thread' }),
  setting({ key: 'shutdownTimeout', flag: 'shutdown-timeout', env: 'CELERIAC_SHUTDOWN_TIMEOUT', parse: seconds(0), fallback: () => 25, help: 'seconds a warm shutdown waits for running tasks' }),
  setting({ key: 'resultExpires', flag: 'result-expires', env: 'CELERIAC_RESULT_EXPIRES', parse: int(1), fallback: () => 86400, help: 'seconds results are kept' }),
  setting({ key: 'maxMessageBytes', flag: 'max-message-bytes', env: 'CELERIAC_MAX_MESSAGE_BYTES', parse: int(1024), fallback: () => 10 * 1024 * 1024, help: 'larger messages are dead-lettered' }),
  setting({ key: 'connectTimeout', flag: 'connect-timeout', env: 'CELERIAC_CONNECT_TIMEOUT', parse: seconds(0), fallback: () => 60, help: 'seconds to keep retrying an unreachable Redis at start' }),
  setting({ key: 'metricsPort', flag: 'metrics-port', env: 'CELERIAC_METRICS_PORT', parse: int(0, 65535), fallback: () => 9808, help: 'port of /metrics, /healthz, /readyz (0: off)' }),
  setting({ key: 'metricsBind', flag: 'metrics-bind', env: 'CELERIAC_METRICS_BIND', parse: nonEmpty, fallback: () => '0.0.0.0', help: 'address the metrics endpoints listen on' }),
  setting({ key: 'maxRecoveries', flag: 'max-recoveries', env: 'CELERIAC_MAX_RECOVERIES', parse: int(0, 1000), fallback: () => 3, help: 'times a message is recovered from dead workers before it is dead-lettered' }),
  setting({ key: 'timeLimit', flag: 'time-limit', env: 'CELERIAC_TIME_LIMIT', parse: positiveSeconds, fallback: () => null, help: 'hard time limit in seconds for tasks without their own' }),
  setting({ key: 'softTimeLimit', flag: 'soft-time-limit', env: 'CELERIAC_SOFT_TIME_LIMIT', parse: positiveSeconds, fallback: () => null, help: 'soft time limit in seconds for tasks without their own' }),
  setting({ key: 'maxTasksPerThread', flag: 'max-tasks-per-thread', env: 'CELERIAC_MAX_TASKS_PER_THREAD', parse: int(0), fallback: () => 0, help: 'tasks a pool thread runs before it is replaced (0: never)' }),
  setting({ key: 'maxMemoryPerThread', flag: 'max-memory-per-thread', env: 'CELERIAC_MAX_MEMORY_PER_THREAD', parse: int(0, 1_000_000), fallback: () => 0, help: 'heap cap per pool thread in MB (0: Node default)' }),
  setting({ key: 'threadNice', flag: 'thread-nice', env: 'CELERIAC_THREAD_NICE', parse: int(0, 19), fallback: () => 5, help: 'niceness of pool threads above the supervisor\'s (Linux; 0: the same)' }),
  setting({ key: 'heartbeatTtl', flag: 'heartbeat-ttl', env: 'CELERIAC_HEARTBEAT_TTL', parse: seconds(1), fallback: () => 6, help: 'seconds a worker counts as alive without a heartbeat' }),
] as const;

/**
 * Merges defaults, environment and flags (flags as strings, as parseArgs gives them) into a frozen
 * WorkerConfig. `flags` keys are the flag names (`prefetch-multiplier`).
 */
export function loadWorkerConfig(flags: Readonly<Record<string, string | undefined>>, env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const out: Record<string, unknown> = {};
  for (const s of WORKER_SETTINGS) {
    const fromFlag = flags[s.flag];
    const fromEnv = env[s.env];
    let value: unknown;
    if (fromFlag !== undefined) value = (s.parse as Parser<unknown>)(fromFlag, `--${s.flag}`);
    else if (fromEnv !== undefined && fromEnv !== '') value = (s.parse as Parser<unknown>)(fromEnv, s.env);
    else value = s.fallback();
    out[s.key] = value;
  }
  if (out.app === undefined) throw new ConfigError('--app', 'the task module is required (-A path/to/tasks.js or CELERIAC_APP)');
  return Object.freeze(out) as unknown as WorkerConfig;
}

/** The broker URL for clients (producer, CLI `call`/`result`): flag, then env, then the default. */
export function brokerUrlFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined) return redisUrl(flag, '--broker');
  const fromEnv = env.CELERIAC_BROKER_URL;
  return fromEnv ? redisUrl(fromEnv, 'CELERIAC_BROKER_URL') : DEFAULT_BROKER_URL;
}

export const parseSeconds = seconds;
export const parseInteger = int;
