// The task of the chaos run: a short piece of work that records each run in Redis (`chaos:runs`), so the
// driver can count tasks that ran twice. One connection per pool thread.
// Each run adds a member of its own (task id and a fresh token) to a set: when Redis dies after taking
// the SADD but before its reply arrives, ioredis sends it again on reconnect, and a list would then
// record one run twice.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { defineTask, type BoundTask } from '../workers/registry.js';

const redis = new Redis(process.env.CHAOS_REDIS_URL ?? 'redis://127.0.0.1:6379/0', { maxRetriesPerRequest: null });
redis.on('error', () => undefined);

defineTask('chaos.work', { bind: true }, async (self: BoundTask, i: number) => {
  await sleep(20);
  await redis.sadd('chaos:runs', `${self.request.id} ${randomUUID()}`);
  return i;
});
