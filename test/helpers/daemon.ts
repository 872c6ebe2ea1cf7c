// Runs the real CLI as child processes: a worker daemon whose pino JSON lines are collected (wait for
// the ready line, for a task's line, for exit), and one-shot commands (`call`, `result`).

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runToCompletion, track } from './process.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
export const EXAMPLE_TASKS = fileURLToPath(new URL('../../workers/tasks/celery_app.js', import.meta.url));

export type LogLine = Record<string, unknown> & { event?: string; msg?: string; level?: number };

export class WorkerProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #stderr = '';
  #waiters: (() => void)[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv) {
    this.child = track(spawn(process.execPath, [CLI, 'worker', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        resolve({ code, signal });
        this.#notify();
      }),
    );
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as LogLine);
      } catch {
        this.lines.push({ msg: line, unparsed: true });
      }
      this.#notify();
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.#stderr += d.toString();
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get stderr(): string {
    return this.#stderr;
  }

  #notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves with the first line (already seen or future) matching `match`. */
  async waitFor(match: (line: LogLine) => boolean, timeoutMs = 15_000, what = 'a matching log line'): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`worker exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; stderr: ${this.#stderr}; last lines: ${JSON.stringify(this.lines.slice(-5))}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; last lines: ${JSON.stringify(this.lines.slice(-5))}; stderr: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  ready(timeoutMs = 20_000): Promise<LogLine> {
    return this.waitFor((l) => l.event === 'worker:ready', timeoutMs, 'worker:ready line');
  }

  /** Lines logged at level error or above. */
  errorLines(): LogLine[] {
    return this.lines.filter((l) => typeof l.level === 'number' && l.level >= 50);
  }

  /** Lines of one event kind, e.g. 'task:succeeded'. */
  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`worker did not exit within ${timeoutMs} ms after ${signal}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return result;
  }

  /** SIGKILL, as a crash or the OOM killer would. */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill('SIGKILL');
    return this.exited;
  }
}

export interface WorkerSpec {
  url: string;
  app?: string;
  hostname?: string;
  concurrency?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

let counter = 0;

/** Spawns `celeriac worker` with the example tasks (unless `app` is given) and waits for its ready line. */
export async function startWorker(spec: WorkerSpec): Promise<WorkerProcess> {
  const worker = spawnWorker(spec);
  await worker.ready();
  return worker;
}

export function spawnWorker(spec: WorkerSpec): WorkerProcess {
  const args = [
    '-A', spec.app ?? EXAMPLE_TASKS,
    '--hostname', spec.hostname ?? `test-${process.pid}-${++counter}@%h`,
    '-c', String(spec.concurrency ?? 2),
    // Off unless a test asks: test files run in parallel and would fight over the default port.
    ...(spec.args?.includes('--metrics-port') ? [] : ['--metrics-port', '0']),
    ...(spec.args ?? []),
  ];
  return new WorkerProcess(args, { CELERIAC_BROKER_URL: spec.url, ...spec.env });
}

/** Runs `celeriac <args>` to completion. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runToCompletion(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, timeoutMs);
}
