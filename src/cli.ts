#!/usr/bin/env node
// `celeriac worker | call | result | revoke | beat`. A bad argument gets one line on stderr and exit code 2; a failure
// at run time (Redis unreachable, task failed, time-out) one line and exit code 1; never a bare stack.

import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { brokerUrlFrom, level, loadWorkerConfig, parseSeconds, WORKER_SETTINGS } from './config.js';
import { CeleriacError, TaskFailedError, UsageError } from './errors.js';
import { parseJson, stringifyJson } from './json.js';
import { createClient, type SendOptions } from './producer.js';
import { StartCancelled, Supervisor } from './supervisor.js';
import { Beat, loadSchedule } from './beat.js';
import { createLogger } from './logger.js';
import { hostname as osHostname } from 'node:os';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

// Columns as wide as their longest entry and two spaces, so no flag or variable runs into its neighbour.
const FLAG_WIDTH = Math.max(...WORKER_SETTINGS.map((s) => s.flag.length)) + 2;
const ENV_WIDTH = Math.max(...WORKER_SETTINGS.map((s) => s.env.length)) + 2;

const HELP = `celeriac ${VERSION}: a Celery-compatible task queue for Node.js

Usage:
  celeriac worker -A <tasks module> [options]    run a worker daemon
  celeriac call <task name> [options]            send a task (prints its id, or its result with --wait)
  celeriac result <task id> [--wait] [--timeout S]  print a task's state and result
  celeriac revoke <task id> [--terminate] [--ttl S]  revoke a task on every worker (--terminate: also if running)
  celeriac beat --schedule <file.json> [--broker URL] [-l level]  send periodic tasks (run several for HA)

Worker options (each also read from its environment variable):
${WORKER_SETTINGS.map((s) => `  --${s.flag.padEnd(FLAG_WIDTH)}${s.env.padEnd(ENV_WIDTH)}${s.help}`).join('\n')}
  short forms: -A app, -c concurrency, -Q queues, -n hostname, -l loglevel

Call options:
  --args JSON  --kwargs JSON  --queue Q  --countdown S  --eta ISO  --expires S  --priority 0-9
  --task-id ID  --ignore-result  --wait  --timeout S  --broker URL (default: CELERIAC_BROKER_URL)
`;

const workerOptions: ParseArgsConfig['options'] = Object.fromEntries(WORKER_SETTINGS.map((s) => [s.flag, { type: 'string' as const }]));
Object.assign(workerOptions, {
  app: { type: 'string', short: 'A' },
  concurrency: { type: 'string', short: 'c' },
  queues: { type: 'string', short: 'Q' },
  hostname: { type: 'string', short: 'n' },
  loglevel: { type: 'string', short: 'l' },
});

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: ParseArgsConfig['options'], positionals: number): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0] ?? 'bad arguments');
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 1 ? 'expected exactly one argument before the options' : `unexpected argument ${parsed.positionals[0]}`);
  }
  return { values: parsed.values as Values, positionals: parsed.positionals };
}

function jsonFlag<T>(text: string | undefined, flag: string, check: (v: unknown) => v is T, expected: string, fallback: T): T {
  if (text === undefined) return fallback;
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (err) {
    throw new UsageError(`--${flag}: not valid JSON (${(err as Error).message})`);
  }
  if (!check(value)) throw new UsageError(`--${flag}: expected ${expected}`);
  return value;
}

const isArray = (v: unknown): v is unknown[] => Array.isArray(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function usageSeconds(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseSeconds(0)(text, `--${flag}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function worker(args: string[]): Promise<number> {
  const { values } = parse(args, workerOptions, 0);
  let config;
  try {
    config = loadWorkerConfig(values as Record<string, string | undefined>);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const supervisor = new Supervisor(config);
  let signals = 0;
  const onSignal = (signal: string): void => {
    signals += 1;
    supervisor.log.info({ event: 'worker:signal', signal, mode: signals === 1 ? 'warm' : 'cold' }, `${signal} received: ${signals === 1 ? 'warm' : 'cold'} shutdown`);
    void supervisor.stop(signals === 1 ? 'warm' : 'cold');
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    await supervisor.start();
  } catch (err) {
    // A stop during the start is no failure: the shutdown it began is waited for below, as any other.
    if (!(err instanceof StartCancelled)) {
      supervisor.log.fatal({ event: 'worker:failed', code: (err as CeleriacError).code, err: (err as Error).message }, 'worker failed to start');
      await supervisor.stop('cold');
      await flush(supervisor);
      throw err;
    }
  }
  await supervisor.stopped;
  await flush(supervisor);
  return 0;
}

function flush(supervisor: Supervisor): Promise<void> {
  return new Promise((resolve) => supervisor.log.flush(() => resolve()));
}

async function call(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      args: { type: 'string' },
      kwargs: { type: 'string' },
      queue: { type: 'string' },
      countdown: { type: 'string' },
      eta: { type: 'string' },
      expires: { type: 'string' },
      priority: { type: 'string' },
      'task-id': { type: 'string' },
      'ignore-result': { type: 'boolean' },
      wait: { type: 'boolean' },
      timeout: { type: 'string' },
      broker: { type: 'string' },
    },
    1,
  );
  const name = positionals[0] as string;
  const taskArgs = jsonFlag(values.args as string | undefined, 'args', isArray, 'a JSON array', []);
  const kwargs = jsonFlag(values.kwargs as string | undefined, 'kwargs', isObject, 'a JSON object', {});
  const options: SendOptions = {};
  if (values.queue !== undefined) options.queue = values.queue as string;
  const countdown = usageSeconds(values.countdown as string | undefined, 'countdown');
  if (countdown !== undefined) options.countdown = countdown;
  const expires = usageSeconds(values.expires as string | undefined, 'expires');
  if (expires !== undefined) options.expires = expires;
  if (values.eta !== undefined) {
    const eta = Date.parse(values.eta as string);
    if (Number.isNaN(eta)) throw new UsageError(`--eta: expected an ISO 8601 time, got '${String(values.eta)}'`);
    options.eta = eta;
  }
  if (values.priority !== undefined) {
    const p = values.priority as string;
    if (!/^\d$/.test(p)) throw new UsageError(`--priority: expected 0 to 9, got '${p}'`);
    options.priority = Number(p);
  }
  if (values['task-id'] !== undefined) options.taskId = values['task-id'] as string;
  if (values['ignore-result']) options.ignoreResult = true;
  const timeout = usageSeconds(values.timeout as string | undefined, 'timeout');
  if (values.wait && values['ignore-result']) throw new UsageError('--wait cannot be used with --ignore-result');
  const client = createClient({ brokerUrl: brokerUrlFromUsage(values.broker as string | undefined) });
  try {
    const result = await client.send(name, taskArgs, kwargs, options);
    if (!values.wait) {
      process.stdout.write(`${result.id}\n`);
      return 0;
    }
    const value = await result.get(timeout === undefined ? {} : { timeout: timeout * 1000 });
    process.stdout.write(`${stringifyJson(value)}\n`);
    return 0;
  } finally {
    await client.close();
  }
}

async function result(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { wait: { type: 'boolean' }, timeout: { type: 'string' }, broker: { type: 'string' } }, 1);
  const timeout = usageSeconds(values.timeout as string | undefined, 'timeout');
  const client = createClient({ brokerUrl: brokerUrlFromUsage(values.broker as string | undefined) });
  try {
    const handle = client.result(positionals[0] as string);
    if (values.wait) await handle.get(timeout === undefined ? {} : { timeout: timeout * 1000 }).catch((err: unknown) => {
      if (!(err instanceof TaskFailedError)) throw err;
    });
    const meta = await handle.meta();
    process.stdout.write(`${stringifyJson(meta ?? { status: 'PENDING', result: null, task_id: handle.id })}\n`);
    return 0;
  } finally {
    await client.close();
  }
}

async function beat(args: string[]): Promise<number> {
  const { values } = parse(args, { schedule: { type: 'string' }, broker: { type: 'string' }, loglevel: { type: 'string', short: 'l' } }, 0);
  if (typeof values.schedule !== 'string') throw new UsageError('beat needs --schedule <file.json>');
  const entries = loadSchedule(values.schedule);
  let logLevel;
  try {
    logLevel = level(String(values.loglevel ?? 'info'), '--loglevel');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const logger = createLogger(logLevel, { hostname: `beat@${osHostname()}` });
  const b = new Beat(brokerUrlFromUsage(values.broker as string | undefined), entries, logger);
  b.start();
  logger.info({ event: 'beat:ready', entries: entries.map((e) => e.name) }, 'beat ready');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await b.stop();
  logger.info({ event: 'beat:stopped' }, 'beat stopped');
  logger.flush();
  return 0;
}

async function revokeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { terminate: { type: 'boolean' }, ttl: { type: 'string' }, broker: { type: 'string' } }, 1);
  const ttl = usageSeconds(values.ttl as string | undefined, 'ttl');
  const client = createClient({ brokerUrl: brokerUrlFromUsage(values.broker as string | undefined) });
  try {
    await client.revoke(positionals[0] as string, { terminate: values.terminate === true, ...(ttl === undefined ? {} : { ttlSeconds: ttl }) });
    process.stdout.write(`revoked ${positionals[0] as string}${values.terminate ? ' (terminate)' : ''}\n`);
    return 0;
  } finally {
    await client.close();
  }
}

function brokerUrlFromUsage(flag: string | undefined): string {
  try {
    return brokerUrlFrom(flag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

const COMMANDS: Readonly<Record<string, (args: string[]) => Promise<number>>> = { worker, call, result, revoke: revokeCommand, beat };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const run = command === undefined || !Object.hasOwn(COMMANDS, command) ? undefined : COMMANDS[command];
  // `celeriac worker -A app --help`, as with `celery worker --help`: the one help text covers every command.
  if (run && rest.includes('--help')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (run) return run(rest);
  switch (command) {
    case '--version':
    case '-V':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP);
      return command === undefined ? 2 : 0;
    default: {
      const names = Object.keys(COMMANDS);
      throw new UsageError(`unknown command '${command}' (expected ${names.slice(0, -1).join(', ')} or ${names.at(-1)}; see celeriac --help)`);
    }
  }
}

/** One line on stderr, whatever the message holds (OpenSSL's end with a line feed of their own). */
function fail(text: string, code: number): never {
  process.stderr.write(`celeriac: ${text.replace(/\s*\n\s*/g, ' ').trim()}\n`);
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) fail(err.message, 2);
    if (err instanceof TaskFailedError) fail(`task ${err.taskId} failed: ${err.excType}: ${err.message}`, 1);
    const message = err instanceof Error ? err.message : String(err);
    fail(`${err instanceof CeleriacError ? '' : 'error: '}${message}`, 1);
  },
);
