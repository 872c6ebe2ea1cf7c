// Redis killed with SIGKILL and restarted (AOF, appendfsync everysec) while tasks flow: the worker
// reports not-ready, reconnects by itself and goes on; every result stored before the crash (and
// fsynced) is still there, and every task still in a list runs. A fetch whose reply was lost in a
// dropped connection leaves a message in the worker's processing list that it never saw: after the
// reconnect the worker finds it and hands it back, telling messages apart by their bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useRedis } from './helpers/setup.js';
import { freePort } from './helpers/redis-server.js';
import { startWorker } from './helpers/daemon.js';
import { scrape } from './helpers/prom.js';
import { encodeCall } from '../src/producer.js';

const env = useRedis({ appendonly: true });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Closes the worker's command connection from the server side, as a network drop would. */
async function dropCommandConnection(hostname: string): Promise<void> {
  const clients = (await env.raw.client('LIST')) as string;
  const own = /^id=(\d+) .* name=celeriac:(\S+) /m;
  const line = clients.split('\n').find((l) => own.exec(l)?.[2] === hostname);
  assert.ok(line, `the worker's command connection is listed: ${clients}`);
  await env.raw.client('KILL', 'ID', (own.exec(line) as RegExpExecArray)[1] as string);
}

/** A message whose `note` header holds a byte that is not UTF-8 (0xFF): only its bytes identify it. */
function notUtf8(name: string, args: unknown[], taskId: string): Buffer {
  const { msg } = encodeCall({ name, args, options: { taskId, headers: { note: 'X' } } }, { routes: {}, defaultQueue: 'celery' }, Date.now());
  const bytes = Buffer.from(msg.raw);
  const at = bytes.indexOf('"note":"X"') + '"note":"'.length;
  assert.ok(at > 10, 'the note header is in the message');
  bytes[at] = 0xff;
  return bytes;
}

test('SIGKILL of Redis mid-stream: nothing acked is lost, every queued task runs, the worker goes on', async () => {
  const port = await freePort();
  const worker = await startWorker({ url: env.redis.url, concurrency: 2, args: ['--metrics-port', String(port), '--metrics-bind', '127.0.0.1'] });
  try {
    const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    const before = ids('before', 600);
    // 10 ms each on 2 threads: about 3 s of work, so the crash lands while tasks run and wait.
    await env.client.sendMany(before.map((taskId) => ({ name: 'celery_app.tasks.sleep', args: [0.01], options: { taskId } })));
    await sleep(800);
    const storedEarly = await env.raw.keys('celery-task-meta-*');
    assert.ok(storedEarly.length > 0 && storedEarly.length < before.length, `the crash comes mid-stream (${storedEarly.length} done)`);
    // More than a second: what was written so far is on disk (appendfsync everysec).
    await sleep(1500);
    await env.redis.kill('SIGKILL');

    for (let i = 0; i < 50 && (await scrape(port, '/readyz')).status !== 503; i++) await sleep(100);
    assert.equal((await scrape(port, '/readyz')).status, 503, 'not ready while Redis is down');
    await sleep(1500);
    assert.equal(worker.child.exitCode, null, 'the worker is still running');
    await env.redis.start();

    const after = ids('after', 200);
    await env.client.sendMany(after.map((taskId) => ({ name: 'celery_app.tasks.add', args: [1, 2], options: { taskId } })));
    const all = [...before, ...after];
    const deadline = Date.now() + 60_000;
    let missing = all;
    while (missing.length > 0) {
      assert.ok(Date.now() < deadline, `every task ran; still missing ${missing.length}: ${missing.slice(0, 5).join(', ')}`);
      await sleep(250);
      const metas = await env.raw.mget(...missing.map((id) => `celery-task-meta-${id}`));
      missing = missing.filter((_, i) => metas[i] === null);
    }
    const survived = await env.raw.exists(...storedEarly);
    assert.equal(survived, storedEarly.length, 'results stored before the crash survived it');
    for (const id of all) {
      const meta = JSON.parse((await env.raw.get(`celery-task-meta-${id}`)) as string) as { status: string };
      assert.equal(meta.status, 'SUCCESS', id);
    }
    assert.equal(await env.raw.llen(`celeriac:processing:${String(worker.lines[0]?.hostname)}:celery`), 0, 'nothing left reserved');
    assert.equal((await scrape(port, '/readyz')).status, 200, 'ready again');
    assert.ok(worker.lines.some((l) => l.event === 'redis:error' || l.event === 'fetch:failed'), 'the outage was logged');
    assert.equal(worker.child.exitCode, null);
  } finally {
    await worker.stop();
  }
});

test('a message moved into the processing list by a fetch whose reply was lost runs after the reconnect', async () => {
  const worker = await startWorker({ url: env.redis.url, concurrency: 1 });
  try {
    const hostname = String(worker.lines[0]?.hostname);
    // What a fetch.lua or BLMOVE leaves when Redis carried it out and the connection dropped before
    // the reply: the message in our processing list, and this process none the wiser.
    const { msg } = encodeCall({ name: 'celery_app.tasks.add', args: [2, 3], options: { taskId: 'stray-1' } }, { routes: {}, defaultQueue: 'celery' }, Date.now());
    await env.raw.lpush(`celeriac:processing:${hostname}:celery`, msg.raw);
    await sleep(1500);
    assert.equal(await env.raw.exists('celery-task-meta-stray-1'), 0, 'unseen, it does not run by itself');

    await dropCommandConnection(hostname);

    const result = await env.client.result('stray-1').get({ timeout: 10_000 });
    assert.equal(result, 5);
    const reconciled = await worker.waitFor((l) => l.event === 'worker:reconciled', 5000, 'worker:reconciled line');
    assert.equal(reconciled.count, 1);
    assert.equal(await env.raw.llen(`celeriac:processing:${hostname}:celery`), 0, 'nothing left reserved');
  } finally {
    await worker.stop();
  }
});

test('after a reconnect, messages that are not UTF-8 are told apart by their bytes: the running one stays, a stray one is handed back', async () => {
  const worker = await startWorker({ url: env.redis.url, concurrency: 1 });
  try {
    const hostname = String(worker.lines[0]?.hostname);
    const processing = `celeriac:processing:${hostname}:celery`;
    await env.raw.lpush('celery', notUtf8('celery_app.tasks.sleep', [1.5], 'bin-running'));
    await worker.waitFor((l) => l.event === 'task:received' && l.task_id === 'bin-running', 10_000, 'the sleep task to be received');
    const stray = notUtf8('celery_app.tasks.add', [4, 5], 'bin-stray');
    await env.raw.lpush(processing, stray);
    await dropCommandConnection(hostname);

    assert.equal(await env.client.result('bin-stray').get({ timeout: 10_000 }), 9);
    assert.equal(await env.client.result('bin-running').get({ timeout: 10_000 }), 1.5);
    const reconciled = await worker.waitFor((l) => l.event === 'worker:reconciled', 5000, 'worker:reconciled line');
    assert.equal(reconciled.count, 1, 'only the stray was handed back');
    await sleep(500);
    const received = worker.events('task:received').map((l) => l.task_id);
    assert.deepEqual(received.filter((id) => id === 'bin-running'), ['bin-running'], 'the running task was not handed back to run again');
    assert.equal(await env.raw.llen(processing), 0, 'both acks removed their exact bytes');
    assert.equal(await env.raw.llen('celery'), 0);
  } finally {
    await worker.stop();
  }
});

test('a Redis that lost every key (FLUSHALL, or a restart without persistence): the worker registers again and goes on', async () => {
  const worker = await startWorker({ url: env.redis.url, concurrency: 1, args: ['--heartbeat-ttl', '3'] });
  try {
    const hostname = String(worker.lines[0]?.hostname);
    assert.equal(await (await env.client.send('celery_app.tasks.add', [1, 1])).get({ timeout: 10_000 }), 2);
    await env.raw.flushall();
    await worker.waitFor((l) => l.event === 'heartbeat:expired', 5000, 'the heartbeat to notice its key is gone');
    assert.equal(await (await env.client.send('celery_app.tasks.add', [2, 2])).get({ timeout: 10_000 }), 4, 'it still takes work');
    assert.equal(await env.raw.sismember('celeriac:workers', hostname), 1, 'listed again for sweeps');
  } finally {
    await worker.stop();
  }
});
