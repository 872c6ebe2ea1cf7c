// Plumbing for `npm run bench`: child processes (each in its own process group, so a prefork Celery's
// children go with it), a private redis-server, RSS from /proc, free ports and percentiles. Every child
// started here is killed when the bench exits, however it exits.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as dist/bench/harness.js). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PEERS = join(ROOT, 'bench', 'peers');
export const CLI = join(ROOT, 'dist', 'src', 'cli.js');
export const BENCH_TASKS = join(ROOT, 'dist', 'workers', 'tasks', 'bench.js');
export const FLOOR_WORKER = join(ROOT, 'dist', 'bench', 'floor-worker.js');

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

/** The value below which a fraction `p` of the samples fall (nearest rank). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] as number;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

export type JsonLine = Record<string, unknown>;

const children = new Set<Child>();

/** The children still running. */
export function runningChildren(): Child[] {
  return [...children];
}

/** SIGKILLs every child still running (synchronous, for exit handlers). */
export function killAllChildren(): void {
  for (const c of children) c.killNow();
}

/**
 * A child process in its own process group. JSON lines on stdout are collected; the last 4 KB of
 * stderr and non-JSON stdout are kept for error messages and `waitText`.
 */
export class Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly #json: JsonLine[] = [];
  #text = '';
  #waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(name: string, command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.name = name;
    this.proc = spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        children.delete(this);
        this.#notify();
        resolve(code ?? (signal ? -1 : null));
      });
      this.proc.on('error', (err) => {
        this.#text += `\nspawn failed: ${err.message}`;
        children.delete(this);
        this.#notify();
        resolve(-1);
      });
    });
    createInterface({ input: this.proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let parsed: unknown = null;
      if (line.startsWith('{')) {
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = null;
        }
      }
      if (parsed && typeof parsed === 'object') this.#json.push(parsed as JsonLine);
      else this.#keep(line);
      this.#notify();
    });
    createInterface({ input: this.proc.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      this.#keep(line);
      this.#notify();
    });
  }

  get pid(): number {
    return this.proc.pid as number;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get output(): string {
    return this.#text;
  }

  #keep(line: string): void {
    this.#text = (this.#text + line + '\n').slice(-4096);
  }

  #notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #waitUntil<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (!this.running) throw new Error(`${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${what}: ${this.#text.slice(-1500)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms: ${this.#text.slice(-1500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Takes (removes) the first JSON line matching `match`, waiting for it. */
  nextJson(match: (line: JsonLine) => boolean = () => true, timeoutMs = 120_000, what = 'JSON line'): Promise<JsonLine> {
    return this.#waitUntil(
      () => {
        const i = this.#json.findIndex(match);
        return i < 0 ? undefined : this.#json.splice(i, 1)[0];
      },
      timeoutMs,
      what,
    );
  }

  /** Waits for text output (stderr or non-JSON stdout) matching `re`. */
  waitText(re: RegExp, timeoutMs = 60_000): Promise<true> {
    return this.#waitUntil(() => (re.test(this.#text) ? true : undefined), timeoutMs, `output matching ${re}`);
  }

  /** Waits for the process to exit by itself; returns its exit code. */
  async waitExit(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') throw new Error(`${this.name} did not exit within ${timeoutMs} ms: ${this.#text.slice(-1500)}`);
    return r;
  }

  #signal(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Sends `signal` to the process group, waits `graceMs`, then SIGKILLs the group. Returns the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<number | null> {
    if (this.running) this.#signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r !== 'timeout') {
      this.#signal('SIGKILL'); // leftovers of the group, if any
      return r;
    }
    this.#signal('SIGKILL');
    await this.exited;
    return null;
  }

  killNow(): void {
    this.#signal('SIGKILL');
  }
}

function cpuTimes(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** The share (0 to 1) of all CPUs busy over `ms` while this process sleeps: what else runs on the machine. */
export async function cpuBusyElsewhere(ms = 1000): Promise<number> {
  try {
    const a = cpuTimes();
    await sleep(ms);
    const b = cpuTimes();
    return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
  } catch {
    return 0;
  }
}

/** VmRSS of one process in MB (0 when it is gone). */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The fields of /proc/PID/stat from the third on (the command, in parentheses, may hold spaces), so
 * field n is at index n - 3; null once the process is gone.
 */
function statFields(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The pids of a process's descendants, from /proc. */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields) parentOf.set(Number(entry), Number(fields[1])); // field 4: the parent's pid
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift() as number;
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/** CPU seconds (user and system, all threads) a process and its descendants have used so far. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) {
    // Fields 14 and 15: utime and stime, in clock ticks (USER_HZ, 100 on Linux whatever the kernel's HZ).
    const fields = statFields(p);
    if (fields) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

/** VmRSS of a process and all its descendants (Celery prefork: the parent and its pool processes). */
export function rssTreeMb(pid: number): number {
  return [pid, ...descendants(pid)].reduce((sum, p) => sum + rssMb(p), 0);
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** A private redis-server on a free port with a temp dir, no persistence. */
export class PrivateRedis {
  readonly port: number;
  readonly dir: string;
  readonly child: Child;

  private constructor(port: number, dir: string, child: Child) {
    this.port = port;
    this.dir = dir;
    this.child = child;
  }

  static async start(): Promise<PrivateRedis> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-bench-'));
    const child = new Child('redis-server', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { cwd: dir });
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (!child.running) throw new Error(`redis-server exited: ${child.output}`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer PING within 10 s`);
      await sleep(20);
    }
    return new PrivateRedis(port, dir, child);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async stop(): Promise<void> {
    await this.child.stop('SIGTERM', 5000);
    this.cleanup();
  }

  /** Removes the temp dir (synchronous, for exit handlers). */
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs a command to completion and returns its stdout (throws on a non-zero exit). */
export function run(command: string, args: readonly string[], timeoutMs = 120_000, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(command, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}
