// `celeriac beat`: interval and crontab schedules; several beat processes at once send each tick
// exactly once, and when the leader is killed another takes over without missing more than one interval.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { useRedis } from './helpers/setup.js';
import { CLI, runCli, startWorker } from './helpers/daemon.js';
import { track } from './helpers/process.js';
import { startCeleryWorker } from './helpers/celery.js';
import { decode } from '../src/protocol.js';
import { lastFire, parseCrontab } from '../src/crontab.js';

const env = useRedis();

function startBeat(schedule: string): { child: ReturnType<typeof spawn>; lines: Record<string, unknown>[] } {
  const child = track(spawn(process.execPath, [CLI, 'beat', '--schedule', schedule], { env: { ...process.env, CELERIAC_BROKER_URL: env.redis.url }, stdio: ['ignore', 'pipe', 'pipe'] }));
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  return { child, lines };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('three beat processes send each tick once; killing the leader misses no more than one interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'beat-'));
  const schedule = join(dir, 'schedule.json');
  writeFileSync(schedule, JSON.stringify({ entries: { 'add-every-2s': { task: 'celery_app.tasks.add', args: [20, 22], every: 2 } } }));
  const beats = [startBeat(schedule), startBeat(schedule), startBeat(schedule)];
  await sleep(5000);
  const leader = beats.find((b) => b.lines.some((l) => l.event === 'beat:leader'));
  assert.ok(leader, 'one beat leads');
  assert.equal(beats.filter((b) => b.lines.some((l) => l.event === 'beat:leader')).length, 1, 'only one leads');
  leader.child.kill('SIGKILL');
  await sleep(7000);
  for (const b of beats) if (b !== leader) b.child.kill('SIGTERM');
  await Promise.all(beats.filter((b) => b !== leader).map((b) => new Promise((r) => b.child.once('exit', r))));

  const sent = (await env.raw.lrange('celery', 0, -1)).map((raw) => decode(raw, { maxBytes: 1e6 }).sentAt as number).sort((a, b) => a - b);
  const gaps = sent.slice(1).map((t, i) => t - (sent[i] as number));
  assert.ok(sent.length >= 4 && sent.length <= 6, `about one tick per 2 s over 12 s: ${sent.length}`);
  assert.ok(Math.min(...gaps) >= 1700, `no tick sent twice: gaps ${gaps.join(', ')} ms`);
  assert.ok(Math.max(...gaps) <= 4000, `no more than one interval missed across the handover: gaps ${gaps.join(', ')} ms`);
  assert.ok(beats.filter((b) => b !== leader).some((b) => b.lines.some((l) => l.event === 'beat:leader')), 'another beat took over');

  // What beat sends is an ordinary Celery task: the first tick runs on a Python worker, the rest on ours.
  const ids = (await env.raw.lrange('celery', 0, -1)).map((raw) => decode(raw, { maxBytes: 1e6 }).id).reverse();
  const first = await env.raw.rpop('celery');
  assert.ok(first !== null);
  await env.raw.lpush('py-only', first);
  const py = await startCeleryWorker(env.redis.url, { queues: ['py-only'] });
  try {
    await py.waitForOutput(new RegExp(`${ids[0] as string}\\] succeeded`), 20_000);
  } finally {
    await py.stop();
  }
  const worker = await startWorker({ url: env.redis.url });
  await worker.waitFor(() => worker.events('task:succeeded').length === sent.length - 1, 10_000, 'every other tick to run');
  await worker.stop();
});

test('crontab fields follow Celery: ranges, steps, lists and day names, in UTC', () => {
  const every15 = parseCrontab({ minute: '*/15' }, 'c');
  assert.equal(lastFire(every15, Date.UTC(2026, 10, 25, 10, 7, 30)), Date.UTC(2026, 10, 25, 10, 0));
  const weekdays9 = parseCrontab({ minute: 0, hour: '9', day_of_week: 'mon-fri' }, 'c');
  // 2026-11-29 is a Sunday: the last fire is Friday the 27th at 09:00.
  assert.equal(lastFire(weekdays9, Date.UTC(2026, 10, 29, 12, 0)), Date.UTC(2026, 10, 27, 9, 0));
  const firstOfMonth = parseCrontab({ minute: 30, hour: 4, day_of_month: 1 }, 'c');
  assert.equal(lastFire(firstOfMonth, Date.UTC(2026, 10, 25)), Date.UTC(2026, 10, 1, 4, 30));
  assert.throws(() => parseCrontab({ minute: '61' }, 'entries.x.crontab'), /entries\.x\.crontab\.minute: '61' is not in 0-59/);
  assert.throws(() => parseCrontab({ hour: '*/0' }, 'c'), /cannot read/);
});

test('a crontab entry fires at its minute, once, and the task runs (waits for the next minute: up to 60 s)', { timeout: 120_000 }, async () => {
  await env.raw.flushall();
  const dir = mkdtempSync(join(tmpdir(), 'beat-cron-'));
  const schedule = join(dir, 'schedule.json');
  writeFileSync(schedule, JSON.stringify({ entries: { 'every-minute': { task: 'celery_app.tasks.add', args: [1, 1], crontab: { minute: '*' }, options: { queue: 'cron' } } } }));
  const beats = [startBeat(schedule), startBeat(schedule)];
  try {
    const deadline = Date.now() + 75_000;
    while ((await env.raw.llen('cron')) === 0) {
      assert.ok(Date.now() < deadline, 'a tick within a minute and a bit');
      await sleep(200);
    }
    await sleep(1500);
    const raws = await env.raw.lrange('cron', 0, -1);
    assert.equal(raws.length, 1, 'two beat processes, one message');
    const sentAt = decode(raws[0] as string, { maxBytes: 1e6 }).sentAt as number;
    assert.ok(sentAt % 60_000 < 1500, `sent at the top of a minute: ${new Date(sentAt).toISOString()}`);
  } finally {
    for (const b of beats) b.child.kill('SIGTERM');
    await Promise.all(beats.map((b) => new Promise((r) => (b.child.exitCode === null ? b.child.once('exit', r) : r(null)))));
  }
  const worker = await startWorker({ url: env.redis.url, args: ['-Q', 'cron'] });
  await worker.waitFor(() => worker.events('task:succeeded').length === 1, 10_000, 'the crontab task to run');
  await worker.stop();
});

test('a bad schedule file is one clear line and a non-zero exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'beat-bad-'));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ entries: { nightly: { task: 'x', crontab: { hour: '25' } } } }));
  const r = await runCli(['beat', '--schedule', bad], { CELERIAC_BROKER_URL: env.redis.url });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^celeriac: --schedule .*entries\.nightly\.crontab\.hour: '25' is not in 0-23\n$/);
  const missing = await runCli(['beat'], { CELERIAC_BROKER_URL: env.redis.url });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /beat needs --schedule/);
});
