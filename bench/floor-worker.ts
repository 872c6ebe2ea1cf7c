// The least a worker of celeriac's design can cost, for `npm run bench`: Node with ioredis holding the
// two connections a worker holds (a blocking one and one for commands) and a Piscina pool of THREADS
// bare threads; nothing else of ours.
//   node floor-worker.js URL THREADS          memory: each thread runs one task, the blocking
//                                             connection waits in BLMOVE, and the process idles
//   node floor-worker.js URL THREADS QUEUE    round trip: one message at a time, BLMOVE from QUEUE
//                                             into a processing list, a hop to a bare thread (none
//                                             with THREADS 0), then one MULTI that stores the result,
//                                             publishes it and removes the message (SET, PUBLISH, LREM)
//   node floor-worker.js URL THREADS QUEUE CAPACITY
//                                             drain: our own fetch.lua moves up to CAPACITY messages
//                                             from QUEUE into a processing list (a BLMOVE waits when
//                                             it is empty), batches of up to MAX_BATCH go to the
//                                             threads, and one ack.lua per finished batch stores the
//                                             results and removes the messages. Each message is read
//                                             with one JSON.parse (its id and body, nothing checked);
//                                             a thread returns one fixed result per body, unread.
// Prints {"ready":true} when it is set up, then runs until SIGTERM.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { Piscina } from 'piscina';
import { connect } from '../src/connection.js';
import { resultKey } from '../src/keys.js';
import { successMeta } from '../src/results.js';
import { MAX_BATCH } from '../workers/types.js';

const [url, threadsArg, queue, capacityArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const capacity = capacityArg === undefined ? null : Number(capacityArg);
const usage = !url || !Number.isInteger(threads) || threads < (queue === undefined || capacity !== null ? 1 : 0) || (capacity !== null && !(Number.isInteger(capacity) && capacity >= 1));
if (usage) {
  console.error('usage: node floor-worker.js URL THREADS [QUEUE [CAPACITY]]');
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
const cmd = connect(url);
const blocking = connect(url);
await Promise.all([cmd.ping(), blocking.ping()]);
const pool =
  threads === 0
    ? null
    : new Piscina({
        filename: fileURLToPath(new URL('./floor-thread.js', import.meta.url)),
        minThreads: threads,
        maxThreads: threads,
        idleTimeout: Number.POSITIVE_INFINITY,
        atomics: 'disabled',
      });
// One task per thread at once: each busy for a while, so every thread takes one.
await Promise.all(Array.from({ length: threads }, () => pool?.run(50)));

if (queue === undefined) {
  void blocking.blmove('bench-floor-idle', 'bench-floor-idle-processing', 'RIGHT', 'LEFT', 0).catch(() => undefined);
  console.log(JSON.stringify({ ready: true }));
} else if (capacity !== null && pool) {
  console.log(JSON.stringify({ ready: true }));
  await drain(pool, queue, capacity);
} else {
  console.log(JSON.stringify({ ready: true }));
  const processing = `${queue}-processing`;
  for (;;) {
    const raw = await blocking.blmoveBuffer(queue, processing, 'RIGHT', 'LEFT', 0);
    if (raw === null) continue;
    const id = (JSON.parse(raw.toString()) as { headers: { id: string } }).headers.id;
    const value = pool ? ((await pool.run(0)) as number) : 0;
    const key = resultKey(id);
    const meta = successMeta(id, String(value));
    await cmd.multi().set(key, meta, 'EX', 3600).publish(key, meta).lrem(processing, 1, raw).exec();
  }
}

interface Drainer extends Redis {
  fetchBuffer(...keysAndArgs: (string | number)[]): Promise<(number | Buffer)[]>;
  ack(...keysAndArgs: (string | number | Buffer)[]): Promise<number>;
}

/** The drain floor: see the top of this file. Runs until SIGTERM. */
async function drain(threadPool: Piscina, source: string, most: number): Promise<never> {
  const redis = cmd as Drainer;
  for (const name of ['fetch', 'ack']) redis.defineCommand(name, { lua: readFileSync(new URL(`../../src/lua/${name}.lua`, import.meta.url), 'utf8') });
  const processing = `${source}-processing`;
  const ready: { raw: Buffer; id: string; body: string }[] = [];
  let held = 0;
  let idle = threads;
  let wake: (() => void) | null = null;
  const take = (raw: Buffer): void => {
    const msg = JSON.parse(raw.toString()) as { body: string; headers: { id: string } };
    ready.push({ raw, id: msg.headers.id, body: msg.body });
  };
  const pump = (): void => {
    while (idle > 0 && ready.length > 0) {
      const batch = ready.splice(0, Math.min(MAX_BATCH, Math.ceil(ready.length / idle)));
      idle -= 1;
      void (threadPool.run(batch.map((m) => m.body), { name: 'batch' }) as Promise<string[]>).then(async (values) => {
        idle += 1;
        pump();
        const keys: string[] = [];
        const args: (string | Buffer)[] = ['3600'];
        batch.forEach((m, i) => {
          keys.push(processing, resultKey(m.id));
          args.push(m.raw, successMeta(m.id, values[i] as string));
        });
        await redis.ack(keys.length, ...keys, ...args);
        held -= batch.length;
        wake?.();
      });
    }
  };
  for (;;) {
    // Refills once a quarter is free, as the consumer does.
    if (most - held < Math.max(1, Math.floor(most / 4))) {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      continue;
    }
    const flat = await redis.fetchBuffer(2, source, processing, most - held);
    if (flat.length === 0) {
      const raw = await blocking.blmoveBuffer(source, processing, 'RIGHT', 'LEFT', 1);
      if (raw !== null) {
        held += 1;
        take(raw);
        pump();
      }
      continue;
    }
    for (let i = 1; i < flat.length; i += 2) take(flat[i] as Buffer);
    held += flat.length / 2;
    pump();
  }
}
