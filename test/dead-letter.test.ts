// Poison in, reason out: malformed, pickle and unknown-task messages are dead-lettered with the reason
// and the raw message, a waiting client gets a FAILURE, and valid messages around them still succeed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createClient, TaskFailedError, type Client } from '../src/index.js';
import { encode } from '../src/protocol.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { startWorker, type WorkerProcess } from './helpers/daemon.js';

let redis: RedisServer;
let worker: WorkerProcess;
let client: Client;
let raw: Redis;
const hostname = `dead-letter-${process.pid}@test`;

before(async () => {
  redis = await startRedis();
  worker = await startWorker({ url: redis.url, hostname, args: ['--max-message-bytes', '65536'] });
  client = createClient({ brokerUrl: redis.url });
  raw = new Redis(redis.url);
});

after(async () => {
  raw?.disconnect();
  await client?.close();
  await worker?.stop();
  await redis?.stop();
});

const valid = (i: number) => encode({ task: 'celery_app.tasks.add', args: [i, 1000], kwargs: {}, queue: 'celery', id: `valid-${i}` });

function withEnvelope(id: string, patch: (env: Record<string, any>) => void): string {
  const env = JSON.parse(encode({ task: 'celery_app.tasks.add', args: [1, 2], kwargs: {}, queue: 'celery', id }).raw) as Record<string, any>;
  patch(env);
  return JSON.stringify(env);
}

interface Record_ {
  reason: string;
  code: string;
  task_id: string | null;
  task: string | null;
  queue: string;
  raw: string;
}

test('bad messages go to the dead-letter list with their reason; good ones around them succeed', async () => {
  const pickle = withEnvelope('pickled', (e) => {
    e['content-type'] = 'application/x-python-serialize';
    // A real pickle of os.system('touch /tmp/pwned'): it must never be evaluated.
    e.body = Buffer.from("cos\nsystem\n(S'touch /tmp/celeriac-pwned'\ntR.").toString('base64');
  });
  const bad = [
    { raw: '{"body": "trunc', code: 'E_PROTOCOL', id: null },
    { raw: pickle, code: 'E_CONTENT_TYPE', id: 'pickled' },
    { raw: withEnvelope('unknown-task', (e) => (e.headers.task = 'no.such.task')), code: 'E_UNKNOWN_TASK', id: 'unknown-task' },
    // Bodies are decoded by the pool thread that would run the task: it hands them back refused.
    { raw: withEnvelope('bad-args', (e) => (e.body = Buffer.from('[{"not": "a list"}, {}, null]').toString('base64'))), code: 'E_PROTOCOL', id: 'bad-args' },
    { raw: withEnvelope('bad-base64', (e) => (e.body = '!!not base64!!')), code: 'E_PROTOCOL', id: 'bad-base64' },
    // A bound task's thread decodes the whole message for `self.request`.
    { raw: withEnvelope('bound-bad-json', (e) => { e.headers.task = 'celery_app.tasks.echo'; e.body = Buffer.from('[[1], {').toString('base64'); }), code: 'E_PROTOCOL', id: 'bound-bad-json' },
    { raw: withEnvelope('too-big', (e) => (e.headers.padding = 'x'.repeat(70_000))), code: 'E_TOO_LARGE', id: 'too-big' },
  ];
  // Interleave: valid, bad, valid, bad, ... valid.
  const order: string[] = [];
  for (let i = 0; i < bad.length; i++) order.push(valid(i).raw, (bad[i] as { raw: string }).raw);
  order.push(valid(bad.length).raw);
  await raw.lpush('celery', ...order);

  const results = Array.from({ length: bad.length + 1 }, (_, i) => client.result(`valid-${i}`).get({ timeout: 10_000 }));
  assert.deepEqual(await Promise.all(results), Array.from({ length: bad.length + 1 }, (_, i) => i + 1000));

  await worker.waitFor(() => worker.events('task:rejected').length === bad.length, 10_000, 'all rejections');
  const records = (await raw.lrange('celeriac:dead-letter', 0, -1)).map((r) => JSON.parse(r) as Record_);
  assert.equal(records.length, bad.length);
  for (const b of bad) {
    const rec = records.find((r) => r.raw === b.raw);
    assert.ok(rec, `dead letter for ${b.code} ${b.id}`);
    assert.equal(rec.code, b.code);
    assert.equal(rec.task_id, b.id);
    assert.equal(rec.queue, 'celery');
    assert.ok(rec.reason.length > 10, rec.reason);
  }
  const unknown = records.find((r) => r.code === 'E_UNKNOWN_TASK') as Record_;
  assert.equal(unknown.task, 'no.such.task');
  assert.match(unknown.reason, /no\.such\.task is not registered/);

  // A waiting client learns why instead of hanging.
  const pickled = await client.result('pickled').get({ timeout: 5000 }).then(() => null, (e: unknown) => e);
  assert.ok(pickled instanceof TaskFailedError);
  assert.equal(pickled.name, 'ContentDisallowed');
  assert.equal(pickled.excModule, 'kombu.exceptions');
  for (const [id, reason] of [['bad-args', /args: expected an array/], ['bad-base64', /not valid base64/], ['bound-bad-json', /body is not JSON/]] as const) {
    assert.match((records.find((r) => r.task_id === id) as Record_).reason, reason);
    const refused = await client.result(id).get({ timeout: 5000 }).then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof TaskFailedError, id);
  }
  const notRegistered = await client.result('unknown-task').get({ timeout: 5000 }).then(() => null, (e: unknown) => e);
  assert.ok(notRegistered instanceof TaskFailedError);
  assert.equal(notRegistered.name, 'NotRegistered');

  assert.equal(await raw.llen(`celeriac:processing:${hostname}:celery`), 0, 'nothing stuck in the processing list');
  assert.equal(await raw.llen('celery'), 0);
  assert.equal(worker.child.exitCode, null, 'the worker keeps running');
});
