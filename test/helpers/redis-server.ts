// A private redis-server per test file: a free port, a temp dir, readiness by PING (no fixed sleeps),
// and the faults tests need: SIGKILL, restart on the same port and dir (with AOF, data survives).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { track } from './process.js';
import { join } from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

/** One PING over a raw socket: true when the server answers (+PONG, or NOAUTH when it wants a password). */
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
    socket.on('data', (d) => done(/^(\+PONG|-NOAUTH)/.test(d.toString())));
  });
}

export interface RedisOptions {
  /** AOF with appendfsync everysec, so a SIGKILL keeps what was written more than a second ago. */
  appendonly?: boolean;
  args?: string[];
}

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #options: RedisOptions;
  #child: ChildProcess | null = null;
  #log = '';

  constructor(port: number, options: RedisOptions) {
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), 'celeriac-redis-'));
    this.#options = options;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push(...(this.#options.appendonly ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']));
    args.push(...(this.#options.args ?? []));
    const child = track(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.#child = child;
    child.stdout?.on('data', (d: Buffer) => (this.#log = (this.#log + d.toString()).slice(-4000)));
    child.stderr?.on('data', (d: Buffer) => (this.#log = (this.#log + d.toString()).slice(-4000)));
    const deadline = Date.now() + 10_000;
    while (!(await ping(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${this.#log}`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not answer PING within 10 s: ${this.#log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Kills the server (SIGKILL by default) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }

  /** Starts again on the same port and dir (what AOF wrote is loaded). */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** `redis-cli` with raw output, trimmed. */
  cli(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('redis-cli', ['-p', String(this.port), '--raw', ...args], (err, stdout) => (err ? reject(err) : resolve(stdout.trim())));
    });
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const server = new RedisServer(await freePort(), options);
  await server.start();
  return server;
}
