// The common shape of a test file: a private Redis, a producer client and a raw ioredis connection,
// created before the tests and closed after them.

import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { createClient, type Client } from '../../src/index.js';
import { startRedis, type RedisOptions, type RedisServer } from './redis-server.js';

export interface TestRedis {
  redis: RedisServer;
  client: Client;
  raw: Redis;
}

/** Registers before/after hooks; the returned object is filled in when the tests run. */
export function useRedis(options: RedisOptions = {}): TestRedis {
  const env = {} as TestRedis;
  before(async () => {
    env.redis = await startRedis(options);
    env.client = createClient({ brokerUrl: env.redis.url });
    env.raw = new Redis(env.redis.url);
    env.raw.on('error', () => undefined);
  });
  after(async () => {
    env.raw?.disconnect();
    await env.client?.close();
    await env.redis?.stop();
  });
  return env;
}
