// Real Python Celery (Debian python3-celery, always /usr/bin/python3) against a test's private Redis:
// one-off producer scripts and `celery worker` processes, using the tutorial app in examples/python.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runToCompletion, track } from './process.js';

export const PYTHON = '/usr/bin/python3';
export const EXAMPLES_PY = fileURLToPath(new URL('../../../examples/python/', import.meta.url));

function pythonEnv(url: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, CELERY_BROKER_URL: url, PYTHONPATH: EXAMPLES_PY, PYTHONUNBUFFERED: '1', ...extra };
}

/** Runs a Python snippet with the example app importable; resolves with its output when it exits. */
export function runPython(code: string, url: string, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runToCompletion(PYTHON, ['-c', code], { cwd: EXAMPLES_PY, env: pythonEnv(url) }, timeoutMs);
}

/** Like runPython, but fails unless the script exits 0; returns stdout. */
export async function python(code: string, url: string, timeoutMs?: number): Promise<string> {
  const r = await runPython(code, url, timeoutMs);
  if (r.code !== 0) throw new Error(`python exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export class CeleryWorker {
  readonly child: ChildProcess;
  #output = '';

  constructor(child: ChildProcess) {
    this.child = child;
    const collect = (d: Buffer): void => {
      this.#output += d.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
  }

  get output(): string {
    return this.#output;
  }

  /** Ids of the tasks this worker reported as succeeded (Celery's INFO line). */
  succeededIds(): string[] {
    return [...this.#output.matchAll(/Task [\w.]+\[([^\]]+)\] succeeded/g)].map((m) => m[1] as string);
  }

  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.#output)) {
      if (this.child.exitCode !== null) throw new Error(`celery worker exited (${this.child.exitCode}): ${this.#output}`);
      if (Date.now() > deadline) throw new Error(`celery worker: no ${pattern} within ${timeoutMs} ms: ${this.#output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Starts `celery -A celery_app worker --pool=solo` and waits for its "ready." line. */
export async function startCeleryWorker(url: string, options: { queues?: string[]; hostname?: string } = {}): Promise<CeleryWorker> {
  const args = ['-m', 'celery', '-A', 'celery_app', 'worker', '--pool=solo', '--loglevel=INFO', '--without-heartbeat', '--without-gossip', '--without-mingle'];
  args.push('-n', options.hostname ?? `py-${process.pid}-${Math.random().toString(36).slice(2, 8)}@%h`);
  if (options.queues) args.push('-Q', options.queues.join(','));
  const child = track(spawn(PYTHON, args, { cwd: EXAMPLES_PY, env: pythonEnv(url), stdio: ['ignore', 'pipe', 'pipe'] }));
  const worker = new CeleryWorker(child);
  await worker.waitForOutput(/ ready\./, 30_000);
  return worker;
}
