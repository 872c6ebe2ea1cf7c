// Pool threads run below the supervisor's priority (--thread-nice, default 5), so a thread woken for
// a batch does not take the core from the supervisor handing out the next one. Read from /proc.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createClient } from '../src/index.js';
import { useRedis } from './helpers/setup.js';
import { startWorker } from './helpers/daemon.js';

const env = useRedis();

/** Niceness of each thread of `pid`, by thread id. */
function niceness(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, nice field 19.
    out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return out;
}

test('pool threads run at the supervisor\'s niceness plus --thread-nice; the supervisor keeps its own', async () => {
  for (const [args, expected] of [[[], 5], [['--thread-nice', '11'], 11], [['--thread-nice', '0'], 0]] as const) {
    const worker = await startWorker({ url: env.redis.url, concurrency: 3, args: [...args] });
    const client = createClient({ brokerUrl: env.redis.url });
    try {
      // A thread sets its priority when it loads, which the ready line does not wait for: three
      // overlapping tasks have been on all three threads.
      const sleeps = await Promise.all([0, 1, 2].map(() => client.send('celery_app.tasks.sleep', [0.3])));
      await Promise.all(sleeps.map((r) => r.get({ timeout: 10_000 })));
      const nice = niceness(worker.pid);
      const base = nice.get(worker.pid) as number;
      const shown = JSON.stringify([...nice.values()]);
      const lowered = [...nice.values()].filter((n) => n !== base);
      // Three pool threads (-c 3) lowered, every other thread (V8's, libuv's) left as it was.
      assert.deepEqual(lowered, expected === 0 ? [] : [1, 2, 3].map(() => Math.min(19, base + expected)), `${args.join(' ') || 'default'}: ${shown}`);
    } finally {
      await client.close();
      await worker.stop();
    }
  }
});
