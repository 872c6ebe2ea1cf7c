// `celeriac beat`: sends periodic tasks from a schedule file (interval and crontab entries), as Celery
// beat does, to be run by any worker (ours or Python's). Several beat processes may run at once for
// high availability: one holds a short lease in Redis and evaluates the schedule; when it dies, another
// takes over within LEASE_MS. tick.lua makes each tick fire exactly once even across a handover: a tick
// and its message are recorded in one step, and a tick closer than one interval to the last is refused.
// A missed tick (no leader for a while) fires once, late, not once per missed interval, and the series
// goes on from it.

import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { closeRedis, connect } from './connection.js';
import { parseCrontab, lastFire, type Crontab, type CrontabSpec } from './crontab.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import { bindingKey, bindingMember, BEAT_LEADER_KEY, beatLastKey } from './keys.js';
import { encodeCall, type SendOptions } from './producer.js';

const LEASE_MS = 1500;
const STEP_MS = 250;

export interface BeatEntry {
  name: string;
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: SendOptions;
  /** Seconds between ticks, or a crontab. */
  schedule: { every: number } | { crontab: Crontab };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads and validates a schedule file: `{"entries": {"<name>": {"task", "args"?, "kwargs"?, "options"?, "every" | "crontab"}}}`. */
export function loadSchedule(path: string): BeatEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('--schedule', `cannot read ${path}: ${(err as Error).message}`);
  }
  if (!isObj(doc) || !isObj(doc.entries) || Object.keys(doc.entries).length === 0) {
    throw new ConfigError('--schedule', `${path}: expected {"entries": {"<name>": {...}}} with at least one entry`);
  }
  return Object.entries(doc.entries).map(([name, e]): BeatEntry => {
    const where = `--schedule ${path}: entries.${name}`;
    if (!isObj(e) || typeof e.task !== 'string' || e.task === '') throw new ConfigError(where, 'needs a "task" name');
    if (e.args !== undefined && !Array.isArray(e.args)) throw new ConfigError(where, '"args" must be a list');
    if (e.kwargs !== undefined && !isObj(e.kwargs)) throw new ConfigError(where, '"kwargs" must be an object');
    if (e.options !== undefined && !isObj(e.options)) throw new ConfigError(where, '"options" must be an object');
    let schedule: BeatEntry['schedule'];
    if (e.every !== undefined && e.crontab === undefined) {
      if (typeof e.every !== 'number' || !(e.every > 0)) throw new ConfigError(where, '"every" must be a positive number of seconds');
      schedule = { every: e.every };
    } else if (e.crontab !== undefined && e.every === undefined) {
      if (!isObj(e.crontab)) throw new ConfigError(where, '"crontab" must be an object of crontab fields');
      schedule = { crontab: parseCrontab(e.crontab as CrontabSpec, `${where}.crontab`) };
    } else {
      throw new ConfigError(where, 'needs exactly one of "every" (seconds) or "crontab"');
    }
    const entry: BeatEntry = { name, task: e.task, args: (e.args as unknown[]) ?? [], kwargs: (e.kwargs as Obj) ?? {}, options: (e.options as SendOptions) ?? {}, schedule };
    // Options are checked now, not at the first tick.
    encodeCall({ name: entry.task, args: entry.args, kwargs: entry.kwargs, options: entry.options }, { routes: {}, defaultQueue: 'celery' }, Date.now());
    return entry;
  });
}

interface TickScript {
  tick(...keysAndArgs: (string | number)[]): Promise<number>;
  claim(...keysAndArgs: (string | number)[]): Promise<number>;
}

export class Beat {
  readonly #redis: Redis & TickScript;
  readonly #entries: readonly BeatEntry[];
  readonly #log: Logger;
  readonly #token = randomUUID();
  #leader = false;
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  #done: Promise<void> = Promise.resolve();

  constructor(url: string, entries: readonly BeatEntry[], logger: Logger) {
    this.#redis = connect(url, { connectionName: 'celeriac:beat' }) as Redis & TickScript;
    this.#redis.on('error', (err: Error) => logger.warn({ event: 'redis:error', err: err.message }, 'Redis connection error'));
    this.#redis.defineCommand('tick', { numberOfKeys: 3, lua: readFileSync(new URL('../../src/lua/tick.lua', import.meta.url), 'utf8') });
    this.#redis.defineCommand('claim', { numberOfKeys: 1, lua: readFileSync(new URL('../../src/lua/claim.lua', import.meta.url), 'utf8') });
    this.#entries = entries;
    this.#log = logger;
  }

  start(): void {
    this.#running = true;
    this.#done = this.#loop();
  }

  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#wake?.();
    await this.#done;
    // Hand over at once instead of after the lease runs out.
    if (this.#leader) await this.#redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, BEAT_LEADER_KEY, this.#token).catch(() => undefined);
    await closeRedis(this.#redis);
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      try {
        // claim.lua: 1 kept, 2 taken (the lease was free), 0 held by another beat.
        const leader = (await this.#redis.claim(BEAT_LEADER_KEY, this.#token, LEASE_MS, '')) !== 0;
        if (leader !== this.#leader) this.#log.info({ event: leader ? 'beat:leader' : 'beat:follower' }, leader ? 'this beat sends the schedule' : 'another beat sends the schedule');
        this.#leader = leader;
        if (leader) for (const e of this.#entries) await this.#maybeSend(e);
      } catch (err) {
        this.#log.warn({ event: 'beat:failed', err: String(err) }, 'beat round failed; retrying');
      }
      if (!this.#running) break;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, STEP_MS);
      });
    }
  }

  async #maybeSend(e: BeatEntry): Promise<void> {
    const now = Date.now();
    const lastKey = beatLastKey(e.name);
    const stored = await this.#redis.get(lastKey);
    if (stored === null) {
      // A new entry starts its series now, as Celery beat's does: first tick one interval (or the
      // next crontab time) from now, not at once.
      await this.#redis.set(lastKey, String(now), 'NX');
      return;
    }
    const last = Number(stored);
    let tick: number;
    let gap: number;
    if ('every' in e.schedule) {
      gap = e.schedule.every * 1000;
      if (now < last + gap) return;
      // On time (seen within two rounds of when due): the next tick of the series, which does not
      // drift. Later (no leader for a while): once, now, and the series goes on from there, as Celery
      // beat's does; so a late tick and the next one are never closer than an interval.
      tick = now - (last + gap) <= 2 * STEP_MS ? last + gap : now;
    } else {
      const fire = lastFire(e.schedule.crontab, now);
      if (fire === null || fire <= last) return;
      tick = fire;
      gap = 1;
    }
    const { queue, msg } = encodeCall({ name: e.task, args: e.args, kwargs: e.kwargs, options: e.options }, { routes: {}, defaultQueue: 'celery' }, now);
    const sent = await this.#redis.tick(beatLastKey(e.name), msg.list, bindingKey(queue), tick, gap, msg.raw, bindingMember(queue));
    if (sent === 1) this.#log.info({ event: 'beat:sent', entry: e.name, task: e.task, task_id: msg.id, tick: new Date(tick).toISOString() }, 'periodic task sent');
  }
}

