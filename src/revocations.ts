// Revoked task ids, as every worker sees them. A revoke is written to a sorted set (id scored by when
// it may be forgotten) and announced on a channel; each worker keeps the live ids in memory, so the hot
// path checks a Set, not Redis. The set is read again whenever the subscription (re)connects, so a
// worker that starts later, or missed announcements while Redis was away, still honours every revoke.
// `terminate` announcements also end the task where it runs.

import type { Redis } from 'ioredis';
import { REVOKE_CHANNEL, REVOKED_KEY } from './keys.js';

/** How long a revoke is remembered when the caller does not say (Celery keeps them in memory only). */
export const DEFAULT_REVOKE_TTL_SECONDS = 86_400;

interface Announcement {
  ids: string[];
  terminate: boolean;
  /** When the revokes may be forgotten (epoch ms). */
  until: number;
}

/** Revokes `ids` for every worker, now and later (until `ttlSeconds` have passed). */
export async function revoke(redis: Redis, ids: readonly string[], o: { terminate?: boolean; ttlSeconds?: number } = {}): Promise<void> {
  if (ids.length === 0) return;
  const now = Date.now();
  const until = now + (o.ttlSeconds ?? DEFAULT_REVOKE_TTL_SECONDS) * 1000;
  const announcement: Announcement = { ids: [...ids], terminate: o.terminate ?? false, until };
  await redis
    .multi()
    .zadd(REVOKED_KEY, ...ids.flatMap((id) => [until, id]))
    .zremrangebyscore(REVOKED_KEY, '-inf', now)
    .publish(REVOKE_CHANNEL, JSON.stringify(announcement))
    .exec();
}

export class Revocations {
  readonly #cmd: Redis;
  readonly #sub: Redis;
  /** id → when it may be forgotten (epoch ms). */
  readonly #ids = new Map<string, number>();
  #onTerminate: (id: string) => void = () => undefined;

  /** `sub` becomes a subscriber connection, owned by this object. */
  constructor(cmd: Redis, sub: Redis) {
    this.#cmd = cmd;
    this.#sub = sub;
    sub.on('message', (_channel: string, text: string) => this.#announced(text));
    sub.on('ready', () => void this.#load().catch(() => undefined));
  }

  async start(onTerminate: (id: string) => void): Promise<void> {
    this.#onTerminate = onTerminate;
    await this.#sub.subscribe(REVOKE_CHANNEL);
    await this.#load();
  }

  has(id: string): boolean {
    const until = this.#ids.get(id);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#ids.delete(id);
    return false;
  }

  async #load(): Promise<void> {
    const entries = (await this.#cmd.zrangebyscore(REVOKED_KEY, Date.now(), '+inf', 'WITHSCORES')) as string[];
    for (let i = 0; i + 1 < entries.length; i += 2) this.#ids.set(entries[i] as string, Number(entries[i + 1]));
  }

  #announced(text: string): void {
    let a: Announcement;
    try {
      a = JSON.parse(text) as Announcement;
    } catch {
      return;
    }
    if (!Array.isArray(a.ids)) return;
    const until = typeof a.until === 'number' ? a.until : Date.now() + DEFAULT_REVOKE_TTL_SECONDS * 1000;
    for (const id of a.ids) {
      if (typeof id !== 'string') continue;
      this.#ids.set(id, until);
      if (a.terminate === true) this.#onTerminate(id);
    }
  }
}
