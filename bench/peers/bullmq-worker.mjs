// A BullMQ worker in its own process, for `npm run bench` (from the peer harness in shared/bench):
//   node bullmq-worker.mjs URL QUEUE MODE CONCURRENCY EXPECTED
// MODE: noop (in-process x + y), burn (in-process busy loop), sandbox (processor file in worker threads).
// Prints {"ready":true,...} once ready, then one JSON line when EXPECTED jobs completed (0 = run until
// killed) with the first-to-last completion time, and exits.
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';

const [url, queue, mode, concurrency, expected] = process.argv.slice(2);
const u = new URL(url);
const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
const burn = (ms) => { const end = performance.now() + ms; while (performance.now() < end); return ms; };
const processor = mode === 'sandbox'
  ? fileURLToPath(new URL('./bullmq-burn-processor.mjs', import.meta.url))
  : async (job) => (mode === 'burn' ? burn(job.data.ms) : job.data.x + job.data.y);
const worker = new Worker(queue, processor, {
  connection, concurrency: Number(concurrency), useWorkerThreads: mode === 'sandbox',
});
let done = 0, failed = 0, first = 0;
const want = Number(expected);
worker.on('failed', () => { failed += 1; });
worker.on('completed', () => {
  done += 1;
  if (done === 1) first = performance.now();
  if (want && done === want) {
    const last = performance.now();
    console.log(JSON.stringify({ done, failed, first_to_last_s: (last - first) / 1000, rss_mb: process.memoryUsage().rss / 2 ** 20 }));
    worker.close().then(() => process.exit(0));
  }
});
worker.on('error', (e) => console.error('worker error', e.message));
process.on('SIGTERM', () => { worker.close().then(() => process.exit(0)); });
await worker.waitUntilReady();
console.log(JSON.stringify({ ready: true, rss_mb: process.memoryUsage().rss / 2 ** 20 }));
