// The least a worker of celeriac's design can weigh, for `npm run bench` (memory): Node with ioredis
// holding the two connections a worker holds (a blocking one, waiting in BLMOVE, and one for commands)
// and a Piscina pool of THREADS bare threads, each of which has run one task; nothing else of ours.
//   node floor-worker.js URL THREADS
// Prints {"ready":true} once every thread has run its task, then idles until SIGTERM.

import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { connect } from '../src/connection.js';

const [url, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg);
if (!url || !Number.isInteger(threads) || threads < 1) {
  console.error('usage: node floor-worker.js URL THREADS');
  process.exit(2);
}
const cmd = connect(url);
const blocking = connect(url);
await Promise.all([cmd.ping(), blocking.ping()]);
void blocking.blmove('bench-floor-idle', 'bench-floor-idle-processing', 'RIGHT', 'LEFT', 0).catch(() => undefined);
const pool = new Piscina({
  filename: fileURLToPath(new URL('./floor-thread.js', import.meta.url)),
  minThreads: threads,
  maxThreads: threads,
  idleTimeout: Number.POSITIVE_INFINITY,
  atomics: 'disabled',
});
// One task per thread at once: each busy for a while, so every thread takes one.
await Promise.all(Array.from({ length: threads }, () => pool.run(50)));
console.log(JSON.stringify({ ready: true }));
process.on('SIGTERM', () => process.exit(0));
