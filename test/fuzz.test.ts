// A fuzz of hostile input: thousands of malformed messages (truncated JSON, wrong types in every field,
// bad base64, foreign content types and encodings, oversized bodies, bytes that are not UTF-8, unknown
// tasks) interleaved with valid ones. Every bad one is dead-lettered with a reason and its raw message,
// every valid one runs, the worker keeps going and its memory stays flat. decode() is the specification
// of what is valid: each message is classified with it first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { useRedis } from './helpers/setup.js';
import { startWorker } from './helpers/daemon.js';
import { decode, encode } from '../src/protocol.js';

const env = useRedis();
const MAX_BYTES = 65_536;
const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const KNOWN = new Set(['celery_app.tasks.add', 'celery_app.tasks.echo']);

/** mulberry32: a small seeded PRNG, so a failure can be replayed with FUZZ_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = Record<string, any>;

test(`10,000 hostile messages among valid ones: each bad one dead-lettered, each valid one run (seed ${SEED})`, async () => {
  const rand = prng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const WRONG: unknown[] = [null, true, 0, -1, 3.5, 1e308, '', 'x', '2026-13-45T99:99', [], [1, 'a'], {}, { a: { b: [] } }];
  let n = 0;
  const base = (): { id: string; env: Json } => {
    const id = `fuzz-${n++}`;
    return { id, env: JSON.parse(encode({ task: 'celery_app.tasks.add', args: [n, 1], kwargs: {}, queue: 'celery', id }).raw) as Json };
  };
  const setBody = (env: Json, text: string): void => {
    env.body = Buffer.from(text).toString('base64');
  };
  const mutations: (() => string | Buffer)[] = [
    () => { const s = JSON.stringify(base().env); return s.slice(0, Math.floor(rand() * s.length)); },
    () => JSON.stringify(pick([42, 'a string', [1, 2], null, true])),
    () => { const { env } = base(); const key = pick(Object.keys(env.headers)); env.headers[key] = pick(WRONG); return JSON.stringify(env); },
    () => { const { env } = base(); const key = pick(Object.keys(env.properties)); env.properties[key] = pick(WRONG); return JSON.stringify(env); },
    () => { const { env } = base(); env[pick(['body', 'headers', 'properties', 'content-type', 'content-encoding'])] = pick(WRONG); return JSON.stringify(env); },
    () => { const { env } = base(); env.body = pick(['!!!not base64!!!', 'YWJj=', '====', '\u00e9\u00e9']); return JSON.stringify(env); },
    () => { const { env } = base(); setBody(env, pick(['not json', '{"args": []}', '[[1], {}, {}, 4]', '[1, 2]', '[[], []', '"x"'])); return JSON.stringify(env); },
    () => { const { env } = base(); env['content-type'] = pick(['application/x-python-serialize', 'application/x-yaml', 'application/x-msgpack', 'text/plain', 'application/data']); return JSON.stringify(env); },
    () => { const { env } = base(); env['content-encoding'] = pick(['binary', 'latin-1', 'utf-16', 'gzip']); return JSON.stringify(env); },
    () => { const { env } = base(); env.headers.task = `no.such.task${Math.floor(rand() * 5)}`; return JSON.stringify(env); },
    () => { const { env } = base(); delete env.headers[pick(['id', 'task'])]; return JSON.stringify(env); },
    () => Buffer.concat([Buffer.from(JSON.stringify(base().env).slice(0, 40)), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80]), Buffer.from('"}')]),
    () => { const { env } = base(); setBody(env, JSON.stringify([[1, 2], 'kwargs should be an object', {}])); return JSON.stringify(env); },
  ];
  const oversized = (): string => { const { env } = base(); setBody(env, JSON.stringify([['x'.repeat(MAX_BYTES)], {}, {}])); return JSON.stringify(env); };
  // Just under the limit: a huge argument list that is valid and must run.
  const hugeArgs = (): { raw: string; id: string } => {
    const m = encode({ task: 'celery_app.tasks.echo', args: Array.from({ length: 4000 }, (_, i) => i), kwargs: {}, queue: 'celery', id: `fuzz-huge-${n++}` });
    return { raw: m.raw, id: m.id };
  };

  const messages: (string | Buffer)[] = [];
  const validSums = new Map<string, number>();
  for (let i = 0; i < 12_500; i++) {
    if (i % 11 === 0) {
      const id = `fuzz-valid-${i}`;
      messages.push(encode({ task: 'celery_app.tasks.add', args: [i, 7], kwargs: {}, queue: 'celery', id }).raw);
      validSums.set(id, i + 7);
    } else if (i % 997 === 1) messages.push(oversized());
    else if (i % 1009 === 2) messages.push(hugeArgs().raw);
    else messages.push(pick(mutations)());
  }

  // Classify with decode(), the worker's own check (a mutation may be harmless: still valid).
  const bad: string[] = [];
  const stored: string[] = [];
  const silent: string[] = [];
  const later: string[] = [];
  for (const m of messages) {
    const text = typeof m === 'string' ? m : m.toString();
    let msg;
    try {
      msg = decode(text, { maxBytes: MAX_BYTES });
    } catch {
      bad.push(text);
      continue;
    }
    if (!KNOWN.has(msg.task)) bad.push(text);
    else if (msg.eta !== null && msg.eta > Date.now() + 60_000) later.push(msg.id);
    else if (msg.ignoreResult) silent.push(msg.id);
    else stored.push(msg.id);
  }
  assert.ok(bad.length >= 10_000, `at least 10,000 of them are bad (${bad.length})`);

  const worker = await startWorker({ url: env.redis.url, concurrency: 2, args: ['--max-message-bytes', String(MAX_BYTES), '--prefetch-multiplier', '50'] });
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${worker.pid}/status`, 'utf8'))?.[1]) / 1024;
  try {
    const push = async (batch: (string | Buffer)[]): Promise<void> => {
      const pipe = env.raw.pipeline();
      for (const m of batch) pipe.lpush('celery', m);
      await pipe.exec();
    };
    const drained = async (): Promise<void> => {
      const deadline = Date.now() + 120_000;
      while ((await env.raw.llen('celery')) + (await env.raw.llen(`celeriac:processing:${worker.lines[0]?.hostname as string}:celery`)) > 0) {
        assert.ok(Date.now() < deadline, 'the worker drains the queue');
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await push(messages.slice(0, 1000));
    await drained();
    const warm = rss();
    for (let i = 1000; i < messages.length; i += 1000) await push(messages.slice(i, i + 1000));
    await drained();
    await worker.waitFor(() => worker.events('task:rejected').length === bad.length, 30_000, 'every rejection');

    const records = (await env.raw.lrange('celeriac:dead-letter', 0, -1)).map((r) => JSON.parse(r) as Json);
    assert.equal(records.length, bad.length, 'one dead letter per bad message');
    const codes = new Set(['E_PROTOCOL', 'E_CONTENT_TYPE', 'E_TOO_LARGE', 'E_UNKNOWN_TASK']);
    for (const r of records) {
      assert.ok(typeof r.reason === 'string' && r.reason.length > 0, 'a reason');
      assert.ok(codes.has(r.code as string), `a known code: ${String(r.code)}`);
    }
    const rawsInDeadLetters = new Map<string, number>();
    for (const r of records) rawsInDeadLetters.set(r.raw as string, (rawsInDeadLetters.get(r.raw as string) ?? 0) + 1);
    for (const b of bad) {
      const left = rawsInDeadLetters.get(b) ?? 0;
      assert.ok(left > 0, `dead-lettered as it was: ${b.slice(0, 80)}`);
      rawsInDeadLetters.set(b, left - 1);
    }
    // Every valid one ran (or, due later, waits in the ETA set); the untouched adds returned their sums.
    const metas = await env.raw.mget(...stored.map((id) => `celery-task-meta-${id}`));
    assert.deepEqual(stored.filter((_, i) => metas[i] === null), [], 'every valid message has a result');
    const ran = new Set([...worker.events('task:succeeded'), ...worker.events('task:failed')].map((l) => l.task_id));
    assert.deepEqual(silent.filter((id) => !ran.has(id)), [], 'those that ignore results ran too');
    assert.equal(await env.raw.zcard('celeriac:eta'), later.length, 'those due later wait in the ETA set');
    for (const [id, sum] of validSums) {
      const meta = JSON.parse((await env.raw.get(`celery-task-meta-${id}`)) as string) as Json;
      assert.deepEqual([meta.status, meta.result], ['SUCCESS', sum], id);
    }
    assert.ok(rss() - warm < 64, `RSS stays flat: ${warm.toFixed(0)} MB after warm-up, ${rss().toFixed(0)} MB after all`);
    const last = await env.client.send('celery_app.tasks.add', [40, 2]);
    assert.equal(await last.get({ timeout: 10_000 }), 42, 'the worker goes on');
  } finally {
    await worker.stop();
  }
});
