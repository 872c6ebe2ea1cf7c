// Revoking: a revoked task is not run and is stored as REVOKED, by every worker, including one that
// starts after the revoke; `--terminate` ends one that is running; an expired message is not run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useRedis } from './helpers/setup.js';
import { runCli, startWorker } from './helpers/daemon.js';
import { TaskFailedError } from '../src/errors.js';

const env = useRedis();

async function revokedError(id: string): Promise<TaskFailedError> {
  const err = await env.client.result(id).get({ timeout: 15_000 }).then(
    (v) => assert.fail(`${id} ran and returned ${String(v)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TaskFailedError, String(err));
  return err;
}

test('a revoked task waiting for its countdown is not run, and a worker started after the revoke honours it', async () => {
  const worker = await startWorker({ url: env.redis.url });
  const waiting = await env.client.send('celery_app.tasks.add', [1, 2], {}, { countdown: 1 });
  await worker.waitFor((l) => l.event === 'task:deferred' && l.task_id === waiting.id);
  const cli = await runCli(['revoke', waiting.id], { CELERIAC_BROKER_URL: env.redis.url });
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(cli.stdout.trim(), `revoked ${waiting.id}`);
  const err = await revokedError(waiting.id);
  assert.equal(err.name, 'TaskRevokedError');
  assert.equal((await env.client.result(waiting.id).meta())?.status, 'REVOKED');
  await worker.stop();

  // Revoked before it is even sent; the worker that receives it starts afterwards.
  await env.client.revoke('revoked-ahead');
  const later = await startWorker({ url: env.redis.url });
  await env.client.send('celery_app.tasks.add', [1, 2], {}, { taskId: 'revoked-ahead' });
  assert.equal((await revokedError('revoked-ahead')).name, 'TaskRevokedError');
  const fine = await env.client.send('celery_app.tasks.add', [2, 2]);
  assert.equal(await fine.get({ timeout: 10_000 }), 4);
  assert.ok(later.lines.some((l) => l.event === 'task:revoked' && l.task_id === 'revoked-ahead'));
  await later.stop();
});

test('revoke --terminate ends a running task at once; the worker goes on', async () => {
  const worker = await startWorker({ url: env.redis.url, concurrency: 1 });
  try {
    const long = await env.client.send('celery_app.tasks.sleep', [60]);
    await worker.waitFor((l) => l.event === 'task:received' && l.task_id === long.id);
    const started = Date.now();
    const cli = await runCli(['revoke', long.id, '--terminate'], { CELERIAC_BROKER_URL: env.redis.url });
    assert.equal(cli.code, 0, cli.stderr);
    const err = await revokedError(long.id);
    assert.equal(err.name, 'TaskRevokedError');
    assert.match(err.message, /terminated/);
    assert.ok(Date.now() - started < 5000, 'ended well before the task would have');
    await worker.waitFor((l) => l.event === 'pool:thread-restart' && l.reason === 'terminate', 5000, 'the restart line');
    const next = await env.client.send('celery_app.tasks.add', [3, 4]);
    assert.equal(await next.get({ timeout: 10_000 }), 7);
  } finally {
    await worker.stop();
  }
});

test('revoke: a bad argument is one line on stderr and exit code 2', async () => {
  const none = await runCli(['revoke'], { CELERIAC_BROKER_URL: env.redis.url });
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^celeriac: expected exactly one argument/);
  const ttl = await runCli(['revoke', 'x', '--ttl', 'soon'], { CELERIAC_BROKER_URL: env.redis.url });
  assert.equal(ttl.code, 2);
  assert.equal(ttl.stderr.trim().split('\n').length, 1);
});
