// The least a worker of celeriac's design can cost, for `npm run bench`: Node with ioredis holding the
// two connections a worker holds (a blocking one and one for commands) and a Piscina pool of THREADS
// bare threads; nothing else of ours.
//   node floor-worker.js URL THREADS          memory: each thread runs one task, the blocking
//                                             connection waits in BLMOVE, and the process idles
//   node floor-worker.js URL THREADS QUEUE    round trip: one message at a time, BLMOVE from QUEUE
//                                             into a processing list, a hop to a bare thread (none
//                                             with THREADS 0), then one MULTI that stores the result,
//                                             publishes it and removes the message (SET, PUBLISH, LREM)
// Prints {"ready":true} when it is set up, then runs until SIGTERM.

import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { connect } from '../src/connection.js';
import { resultKey } from '../src/keys.js';
import { successMeta } from '../src/results.js';

const [url, threadsArg, queue] = process.argv.slice(2);
const threads = Number(threadsArg);
if (!url || !Number.isInteger(threads) || threads < (queue === undefined ? 1 : 0)) {
  console.error('usage: node floor-worker.js URL THREADS [QUEUE]');
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
