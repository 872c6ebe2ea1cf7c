// Redis AUTH (password and ACL user) and TLS (rediss://, a CA and client certificates made here with
// openssl) against private redis-servers: tasks round-trip, bad credentials fail at start with one clear
// line and exit code 1, and no password ever appears in the worker's output.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ConfigError, createClient } from '../src/index.js';
import { freePort, startRedis } from './helpers/redis-server.js';
import { spawnWorker, startWorker, type WorkerProcess } from './helpers/daemon.js';
import { track } from './helpers/process.js';

async function roundTrip(url: string, worker: WorkerProcess): Promise<void> {
  const client = createClient({ brokerUrl: url });
  try {
    const r = await client.send('celery_app.tasks.add', [20, 22]);
    assert.equal(await r.get({ timeout: 10_000 }), 42);
  } finally {
    await client.close();
    assert.equal((await worker.stop()).code, 0);
  }
}

function output(worker: WorkerProcess): string {
  return JSON.stringify(worker.lines) + worker.stderr;
}

test('a password in the URL authenticates; a wrong one fails at start with one clear line; neither is printed', async () => {
  const redis = await startRedis({ args: ['--requirepass', 's3cret-pw'] });
  try {
    const url = `redis://:s3cret-pw@127.0.0.1:${redis.port}/0`;
    const worker = await startWorker({ url });
    await roundTrip(url, worker);
    assert.ok(!output(worker).includes('s3cret-pw'), 'the password is never printed');

    const wrong = spawnWorker({ url: `redis://:not-the-pw@127.0.0.1:${redis.port}/0`, args: ['--connect-timeout', '1'] });
    const exit = await wrong.exited;
    assert.equal(exit.code, 1);
    assert.equal(wrong.stderr.trim().split('\n').length, 1, wrong.stderr);
    assert.match(wrong.stderr, /WRONGPASS|invalid username-password/);
    assert.ok(!output(wrong).includes('not-the-pw'), 'the wrong password is not printed either');
  } finally {
    await redis.stop();
  }
});

test('a key prefix in the URL is refused by a client and a worker, before anything is written', async () => {
  const redis = await startRedis();
  try {
    const url = `redis://127.0.0.1:${redis.port}/0?keyPrefix=app:`;
    assert.throws(() => createClient({ brokerUrl: url }), (err: unknown) => err instanceof ConfigError && /keyPrefix option is not supported/.test(err.message));
    const worker = spawnWorker({ url });
    const exit = await worker.exited;
    assert.equal(exit.code, 2);
    assert.match(worker.stderr, /keyPrefix option is not supported/);
    const raw = new Redis(redis.url);
    assert.equal(await raw.dbsize(), 0);
    raw.disconnect();
  } finally {
    await redis.stop();
  }
});

test('an ACL user with its password works', async () => {
  const redis = await startRedis();
  try {
    await redis.cli('ACL', 'SETUSER', 'celeriac', 'on', '>acl-pw', '~*', '&*', '+@all');
    await redis.cli('ACL', 'SETUSER', 'default', 'off');
    const url = `redis://celeriac:acl-pw@127.0.0.1:${redis.port}/0`;
    const worker = await startWorker({ url });
    await roundTrip(url, worker);
    assert.ok(!output(worker).includes('acl-pw'));
  } finally {
    await redis.cli('--user', 'celeriac', '--pass', 'acl-pw', 'ACL', 'SETUSER', 'default', 'on').catch(() => undefined);
    await redis.stop();
  }
});

function makeCertificates(dir: string): void {
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  for (const ca of ['ca', 'other-ca']) ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const who of ['server', 'client']) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
    ssl('x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2', ...(who === 'server' ? ['-extfile', 'san.ext'] : []));
  }
}

test('TLS with a private CA and a client certificate works; without the certificate, or with another CA, start fails clearly', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-tls-'));
  makeCertificates(dir);
  const port = await freePort();
  const server = track(spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--tls-cert-file', join(dir, 'server.crt'), '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', join(dir, 'ca.crt'), '--tls-auth-clients', 'yes'], { stdio: 'ignore' }));
  const url = `rediss://127.0.0.1:${port}/0`;
  const files = { CELERIAC_TLS_CA_FILE: join(dir, 'ca.crt'), CELERIAC_TLS_CERT_FILE: join(dir, 'client.crt'), CELERIAC_TLS_KEY_FILE: join(dir, 'client.key') };
  try {
    // This process's own client reads the same variables (once, at its first TLS connection); they are
    // taken out again before the next workers start, which would otherwise inherit them.
    Object.assign(process.env, files);
    const worker = await startWorker({ url, env: files });
    await roundTrip(url, worker);
    for (const k of Object.keys(files)) delete process.env[k];

    const noCert = spawnWorker({ url, env: { CELERIAC_TLS_CA_FILE: files.CELERIAC_TLS_CA_FILE }, args: ['--connect-timeout', '1'] });
    assert.equal((await noCert.exited).code, 1);
    assert.match(noCert.stderr, /^celeriac: cannot reach Redis at rediss:\/\/127\.0\.0\.1:\d+\/0: .+\n$/);

    const otherCa = spawnWorker({ url, env: { ...files, CELERIAC_TLS_CA_FILE: join(dir, 'other-ca.crt') }, args: ['--connect-timeout', '1'] });
    assert.equal((await otherCa.exited).code, 1);
    assert.match(otherCa.stderr, /certificate/i);

    const missing = spawnWorker({ url, env: { ...files, CELERIAC_TLS_KEY_FILE: join(dir, 'nope.key') } });
    assert.equal((await missing.exited).code, 1);
    assert.match(missing.stderr, /CELERIAC_TLS_KEY_FILE: cannot read .*nope\.key: ENOENT/);
  } finally {
    for (const k of Object.keys(files)) delete process.env[k];
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
