// `npm run demo`: starts a worker with the example tasks as a child process, sends add(10, 20) with the
// producer, prints the result and stops the worker with SIGTERM (a warm shutdown). Uses
// CELERIAC_BROKER_URL or redis://127.0.0.1:6379/0; when no Redis answers there, starts a private
// redis-server for the demo and says so.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { createClient, DEFAULT_BROKER_URL } from '../src/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

function redisAnswers(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: u.hostname, port: Number(u.port || 6379) });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => done(true));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function privateRedis(): Promise<{ url: string; stop: () => void }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-demo-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}/0`;
  for (let i = 0; i < 200 && !(await redisAnswers(url)); i++) await new Promise((r) => setTimeout(r, 25));
  return {
    url,
    stop: () => {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function startWorker(url: string): Promise<ChildProcess> {
  const worker = spawn(
    process.execPath,
    [join(root, 'dist/src/cli.js'), 'worker', '-A', join(root, 'dist/workers/tasks/celery_app.js'), '-c', '2', '--hostname', `celeriac-demo-${process.pid}@%h`, '--loglevel', 'warning', '--metrics-port', '0'],
    { env: { ...process.env, CELERIAC_BROKER_URL: url }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: worker.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      if (line.includes('"event":"worker:ready"')) resolve(worker);
      else if (line.includes('"level":60')) reject(new Error(`worker failed: ${line}`));
    });
    worker.on('exit', (code) => reject(new Error(`worker exited with code ${code} before it was ready`)));
  });
}

async function main(): Promise<void> {
  let url = process.env.CELERIAC_BROKER_URL ?? DEFAULT_BROKER_URL;
  let redis: { stop: () => void } | null = null;
  if (!(await redisAnswers(url))) {
    const own = await privateRedis();
    console.log(`no Redis answers at ${url}; started a private redis-server for the demo at ${own.url}`);
    url = own.url;
    redis = own;
  }
  const worker = await startWorker(url);
  const client = createClient({ brokerUrl: url });
  try {
    const result = await client.send('celery_app.tasks.add', [10, 20]);
    console.log(`add(10, 20) = ${String(await result.get({ timeout: 10_000 }))}`);
  } finally {
    await client.close();
    const exited = new Promise<number | null>((resolve) => worker.once('exit', resolve));
    worker.kill('SIGTERM');
    const code = await exited;
    console.log(`worker stopped (exit code ${code})`);
    redis?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
