// A worker killed with SIGKILL loses nothing: its messages wait in its processing lists until a restart
// with the same hostname, or a sweep by any live worker once its heartbeat expires, hands them back;
// a message that kills every worker it reaches is dead-lettered after --max-recoveries.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { useRedis } from './helpers/setup.js';
import { spawnWorker, startWorker } from './helpers/daemon.js';
import { TaskFailedError } from '../src/errors.js';
import { freePort } from './helpers/redis-server.js';
import { parseMetrics, scrape, total } from './helpers/prom.js';

const env = useRedis();
const KILLER = fileURLToPath(new URL('../../test/fixtures/tasks/killer.js', import.meta.url));

test('SIGKILL while tasks run, then a restart with the same hostname runs every one of them', async () => {
  const hostname = `crash-${process.pid}@test`;
  const first = await startWorker({ url: env.redis.url, hostname, concurrency: 2 });
  const results = await env.client.sendMany(Array.from({ length: 10 }, () => ({ name: 'celery_app.tasks.sleep', args: [0.5] })));
  await first.waitFor(() => first.events('task:received').length >= 8, 10_000, 'the prefetch to fill');
  await first.kill();

  const held = await env.raw.llen(`celeriac:processing:${hostname}:celery`);
  assert.ok(held >= 8, `the killed worker's reserved messages are in its processing list (${held})`);
  assert.equal(held + (await env.raw.llen('celery')) + (await env.raw.keys('celery-task-meta-*')).length, 10, 'every message is somewhere');

  const second = await startWorker({ url: env.redis.url, hostname, concurrency: 2 });
  const ready = await second.ready();
  assert.equal(ready.requeued, held);
  const values = await Promise.all(results.map((r) => r.get({ timeout: 20_000 })));
  assert.deepEqual(values, Array(10).fill(0.5));
  assert.equal(await env.raw.llen(`celeriac:processing:${hostname}:celery`), 0);
  assert.equal(await env.raw.llen('celery'), 0);
  assert.equal((await second.stop()).code, 0);
});

test('live workers sweep a dead one once: with the default heartbeat its tasks run elsewhere within 10 s', async () => {
  await env.raw.flushall();
  // Prefetch 1: the survivors hold one task at a time, so the victim reserves most of the others.
  const ports = [await freePort(), await freePort()];
  const survivors = await Promise.all(ports.map((port, i) =>
    startWorker({ url: env.redis.url, hostname: `survivor${i + 1}-${process.pid}@test`, concurrency: 1, args: ['--prefetch-multiplier', '1', '--metrics-port', String(port), '--metrics-bind', '127.0.0.1'] }),
  ));
  const victimName = `victim-${process.pid}@test`;
  const results = await env.client.sendMany(Array.from({ length: 10 }, () => ({ name: 'celery_app.tasks.sleep', args: [0.5] })));
  const victim = await startWorker({ url: env.redis.url, hostname: victimName, concurrency: 2, args: ['--prefetch-multiplier', '3'] });
  await victim.waitFor(() => victim.events('task:received').length >= 3, 10_000, 'the victim to reserve tasks');
  await victim.kill();
  const killedAt = Date.now();
  const held = await env.raw.llen(`celeriac:processing:${victimName}:celery`);
  assert.ok(held >= 1, 'the victim held messages when it died');

  const values = await Promise.all(results.map((r) => r.get({ timeout: 30_000 })));
  assert.deepEqual(values, Array(10).fill(0.5));
  const recoveries = survivors.flatMap((w) => w.events('worker:recovered').filter((l) => l.from === victimName));
  assert.equal(recoveries.length, 1, 'one sweep (the lease) handed them back, not one per survivor');
  const recovered = recoveries[0] as Record<string, unknown>;
  assert.equal(recovered.count, held);
  const recoveryMs = Date.parse(String(recovered.time)) - killedAt;
  assert.ok(recoveryMs < 10_000, `back on the queue within 10 s with the default --heartbeat-ttl (${recoveryMs} ms)`);
  const counted = await Promise.all(ports.map(async (port) => total(parseMetrics((await scrape(port)).text), 'celeriac_recovered_messages_total')));
  assert.equal(counted[0]! + counted[1]!, held, `counted in the metrics of the one that swept: ${counted.join(' + ')}`);
  assert.equal(await env.raw.llen(`celeriac:processing:${victimName}:celery`), 0);
  assert.equal(await env.raw.sismember('celeriac:workers', victimName), 0, 'the dead worker is forgotten');
  for (const w of survivors) assert.equal((await w.stop()).code, 0);
  assert.equal(await env.raw.sismember('celeriac:workers', `survivor1-${process.pid}@test`), 0, 'a clean stop leaves nothing to sweep');
});

test('a worker paused past its heartbeat is swept; resumed, it runs none of what it had not started, and stays recoverable', async () => {
  await env.raw.flushall();
  const ttl = ['--heartbeat-ttl', '2'];
  const pausedName = `paused-${process.pid}@test`;
  const processing = `celeriac:processing:${pausedName}:celery`;
  const paused = await startWorker({ url: env.redis.url, hostname: pausedName, concurrency: 1, args: [...ttl, '--prefetch-multiplier', '4'] });
  const first = await env.client.sendMany(Array.from({ length: 8 }, () => ({ name: 'celery_app.tasks.sleep', args: [0.5] })));
  await paused.waitFor(() => paused.events('task:received').length >= 4, 10_000, 'the paused worker to reserve 4 tasks');
  const reserved = new Set(paused.events('task:received').map((l) => String(l.task_id)));
  paused.child.kill('SIGSTOP');

  const survivor = await startWorker({ url: env.redis.url, hostname: `resumed-survivor-${process.pid}@test`, concurrency: 2, args: ttl });
  try {
    const recovered = await survivor.waitFor((l) => l.event === 'worker:recovered' && l.from === pausedName, 15_000, 'the sweep of the paused worker');
    assert.equal(recovered.count, reserved.size);
    assert.deepEqual(await Promise.all(first.map((r) => r.get({ timeout: 20_000 }))), Array(8).fill(0.5));
    assert.equal(await env.raw.sismember('celeriac:workers', pausedName), 0, 'the sweep forgot the paused worker');

    paused.child.kill('SIGCONT');
    const superseded = await paused.waitFor((l) => l.event === 'worker:superseded', 10_000, 'the resumed worker to drop what is no longer its own');
    // One task was running when it stopped; the others had not started and run only on the survivor.
    assert.equal(superseded.count, reserved.size - 1);
    await new Promise((r) => setTimeout(r, 1000));
    const ranOnPaused = paused.events('task:succeeded').map((l) => String(l.task_id));
    assert.equal(ranOnPaused.length, 1, `only the task it was running finished there: ${ranOnPaused.join(', ')}`);
    assert.ok(paused.lines.some((l) => l.event === 'heartbeat:expired'));
    assert.equal(await env.raw.sismember('celeriac:workers', pausedName), 1, 'listed again for sweeps');
    assert.equal(await env.raw.llen(processing), 0);

    // Still recoverable: what it reserves now comes back when it dies.
    await survivor.stop();
    const later = await env.client.sendMany(Array.from({ length: 4 }, () => ({ name: 'celery_app.tasks.sleep', args: [0.5] })));
    await paused.waitFor(() => paused.events('task:received').length >= 4 + reserved.size, 10_000, 'the resumed worker to take new tasks');
    await paused.kill();
    assert.ok((await env.raw.llen(processing)) >= 1, 'it died holding messages');
    const rescuer = await startWorker({ url: env.redis.url, hostname: `rescuer-${process.pid}@test`, concurrency: 2, args: ttl });
    try {
      assert.deepEqual(await Promise.all(later.map((r) => r.get({ timeout: 20_000 }))), Array(4).fill(0.5));
    } finally {
      await rescuer.stop();
    }
  } finally {
    paused.child.kill('SIGCONT');
    await paused.kill();
    await survivor.stop();
  }
});

test('a worker paused until a new process took its hostname exits on resume and leaves that process\'s messages alone', async () => {
  await env.raw.flushall();
  const hostname = `taken-over-${process.pid}@test`;
  const ttl = ['--heartbeat-ttl', '2'];
  const processing = `celeriac:processing:${hostname}:celery`;
  const paused = await startWorker({ url: env.redis.url, hostname, concurrency: 1, args: ttl });
  paused.child.kill('SIGSTOP');
  let newcomer: Awaited<ReturnType<typeof startWorker>> | null = null;
  try {
    // Same hostname, same processing lists: it may start once the paused one's heartbeat has expired.
    newcomer = await startWorker({ url: env.redis.url, hostname, concurrency: 1, args: [...ttl, '--prefetch-multiplier', '4'] });
    const results = await env.client.sendMany(Array.from({ length: 4 }, () => ({ name: 'celery_app.tasks.sleep', args: [1] })));
    const holder = newcomer;
    await holder.waitFor(() => holder.events('task:received').length >= 4, 10_000, 'the newcomer to reserve 4 tasks');

    paused.child.kill('SIGCONT');
    await paused.waitFor((l) => l.event === 'shutdown:hostname-lost', 10_000, 'the resumed worker to see its hostname taken');
    await paused.exited;
    assert.ok((await env.raw.llen(processing)) >= 3, 'the newcomer\'s reserved messages are still in its processing list');
    assert.equal(await env.raw.llen('celery'), 0, 'none was handed back to the queue');
    assert.equal(await env.raw.sismember('celeriac:workers', hostname), 1, 'the newcomer is still listed for sweeps');

    assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeout: 20_000 }))), Array(4).fill(1));
    await holder.waitFor(() => holder.events('task:succeeded').length >= 4, 5_000, 'the last success to be logged');
    await new Promise((r) => setTimeout(r, 500));
    const ran = holder.events('task:succeeded').map((l) => String(l.task_id));
    assert.equal(new Set(ran).size, 4, `each ran once: ${ran.join(', ')}`);
    assert.equal(paused.events('task:received').length, 0);
  } finally {
    paused.child.kill('SIGCONT');
    await paused.kill();
    await newcomer?.stop();
  }
});

test('a message that kills its worker every time is dead-lettered after --max-recoveries, and its client gets WorkerLostError', async () => {
  await env.raw.flushall();
  const hostname = `poisoned-${process.pid}@test`;
  const spec = { url: env.redis.url, hostname, app: KILLER, concurrency: 1, args: ['--max-recoveries', '2'] };
  const poison = await env.client.send('killer.tasks.kill_worker', []);
  for (let run = 1; run <= 3; run++) {
    const worker = spawnWorker(spec);
    const exit = await worker.exited;
    assert.equal(exit.signal, 'SIGKILL', `run ${run} was killed by the poison message`);
  }
  // The fourth run finds the message recovered a third time: past the limit of 2, so it is not run.
  const survivor = await startWorker(spec);
  const err = await poison.get({ timeout: 10_000 }).catch((e: unknown) => e);
  assert.ok(err instanceof TaskFailedError);
  assert.equal(err.name, 'WorkerLostError');
  const dead = (await env.raw.lrange('celeriac:dead-letter', 0, -1)).map((r) => JSON.parse(r) as Record<string, unknown>);
  assert.equal(dead.length, 1);
  assert.equal(dead[0]?.code, 'E_RECOVERY_LIMIT');
  assert.equal(dead[0]?.task_id, poison.id);
  assert.match(String(dead[0]?.reason), /recovered 2 times .* the limit is 2/);
  const ok = await env.client.send('killer.tasks.add', [2, 3]);
  assert.equal(await ok.get({ timeout: 10_000 }), 5, 'the worker goes on');
  assert.equal((await survivor.stop()).code, 0);
});

test('a second live worker cannot take a hostname in use', async () => {
  const hostname = `taken-${process.pid}@test`;
  const owner = await startWorker({ url: env.redis.url, hostname });
  const intruder = spawnWorker({ url: env.redis.url, hostname, args: ['--heartbeat-ttl', '1'] });
  const exit = await intruder.exited;
  assert.equal(exit.code, 1);
  assert.match(intruder.stderr, /another live worker holds the hostname/);
  assert.equal((await owner.stop()).code, 0);
});
