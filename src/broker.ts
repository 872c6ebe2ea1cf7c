// The worker's Redis side: one command connection, blocking connections for idle waits, and every
// work-queue transition (fetch, ack, defer, promote, requeue, dead-letter, hostname claim) as one
// atomic script or MULTI. The only module that runs work-queue scripts; keys come from keys.ts.
// Rule of thumb (design.md): Lua when a write depends on a read, MULTI when it does not.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { closeRedis, connect } from './connection.js';
import type { EventBus } from './events.js';
import { DEAD_LETTER_KEY, ETA_KEY, PRIORITY_STEPS, WORKERS_KEY, heartbeatKey, processingIndex, processingPrefix, queueLists, rateKey, resultKey } from './keys.js';
import { EncodedCommand, encodeCommand } from './resp.js';

const script = (name: string): string =>
  readFileSync(new URL(`../../src/lua/${name}.lua`, import.meta.url), 'utf8');

const ACK_LUA = script('ack');
/** What EVALSHA calls ack.lua by (as ioredis computes it for `defineCommand`). */
const ACK_SHA = createHash('sha1').update(ACK_LUA).digest('hex');

/** One source list and the processing list this worker moves its messages into. */
export interface ListPair {
  readonly source: string;
  readonly processing: string;
}

/**
 * A message as fetched: `bytes` exactly as Redis holds them, the key to remove it by (a message that is
 * not valid UTF-8 would not match after a round trip through a string, and writing a Buffer skips the
 * encoding). No text copy is kept: a held message's text outlived young-generation collections and
 * was the largest thing the scavenger copied and promoted (a third of the surviving bytes in a
 * 50,000-task drain); it is decoded from the bytes when needed.
 */
export interface Fetched {
  readonly pair: ListPair;
  readonly bytes: Buffer;
}

/** One finished message: store its result (unless ignored) and remove it from the processing list. */
export interface Ack {
  readonly pair: ListPair;
  readonly bytes: Buffer;
  readonly taskId: string | null;
  /** Meta JSON to store and publish, or null to store nothing (`ignore_result`). */
  readonly meta: string | null;
}

export interface DeadLetter extends Ack {
  readonly record: string;
}

interface Scripts {
  fetchBuffer(...keysAndArgs: (string | number)[]): Promise<(number | Buffer)[]>;
  ack(...keysAndArgs: (string | number | Buffer)[]): Promise<number>;
  requeue(...keys: (string | number)[]): Promise<number>;
  unfetch(...keysAndArgs: (string | number | Buffer)[]): Promise<number>;
  retry(...keysAndArgs: (string | number | Buffer)[]): Promise<number>;
  rate(...keysAndArgs: (string | number)[]): Promise<number>;
  defer(...keysAndArgs: (string | number | Buffer)[]): Promise<number>;
  promote(...keysAndArgs: (string | number)[]): Promise<number>;
  claim(...keysAndArgs: (string | number)[]): Promise<number>;
  recover(...keysAndArgs: (string | number)[]): Promise<(number | string)[]>;
  backlog(...keysAndArgs: (string | number)[]): Promise<number[]>;
}

/** What waits in Redis: per queue (priority sub-lists summed), for an ETA, and dead-lettered. */
export interface Backlog {
  readonly queues: readonly number[];
  readonly eta: number;
  readonly deadLetters: number;
}

type ScriptedRedis = Redis & Scripts;

export class Broker {
  readonly #url: string;
  readonly #cmd: ScriptedRedis;
  readonly #blocking = new Set<Redis>();
  readonly #others = new Set<Redis>();
  /** Server-side client ids of the blocking connections (refreshed on every reconnect). */
  readonly #clientIds = new Map<Redis, number>();
  /** Waits asked to end before their connection's id was known: ended as soon as it is. */
  readonly #unblockWanted = new Set<Redis>();
  readonly #resultExpires: number;
  readonly #bus: EventBus;
  readonly #reconnectListeners: (() => void)[] = [];

  constructor(url: string, options: { resultExpiresSeconds: number; connectionName: string; bus: EventBus }) {
    this.#url = url;
    this.#resultExpires = options.resultExpiresSeconds;
    this.#bus = options.bus;
    this.#cmd = connect(url, { connectionName: options.connectionName }) as ScriptedRedis;
    this.#watchReconnects(this.#cmd);
    this.#cmd.defineCommand('fetch', { lua: script('fetch') });
    this.#cmd.defineCommand('ack', { lua: ACK_LUA });
    this.#cmd.defineCommand('requeue', { lua: script('requeue') });
    this.#cmd.defineCommand('rate', { numberOfKeys: 1, lua: script('rate') });
    this.#cmd.defineCommand('retry', { numberOfKeys: 3, lua: script('retry') });
    this.#cmd.defineCommand('unfetch', { numberOfKeys: 2, lua: script('unfetch') });
    this.#cmd.defineCommand('defer', { numberOfKeys: 2, lua: script('defer') });
    this.#cmd.defineCommand('promote', { lua: script('promote') });
    this.#cmd.defineCommand('claim', { numberOfKeys: 1, lua: script('claim') });
    this.#cmd.defineCommand('recover', { numberOfKeys: 4, lua: script('recover') });
    this.#cmd.defineCommand('backlog', { lua: script('backlog') });
  }

  /**
   * Calls `listener` whenever the command connection or a blocking connection is ready again after it
   * dropped: a fetch or BLMOVE in flight at the drop may have moved messages whose reply never came.
   */
  onReconnect(listener: () => void): void {
    this.#reconnectListeners.push(listener);
  }

  #watchReconnects(conn: Redis): void {
    let wasReady = false;
    conn.on('ready', () => {
      if (wasReady) for (const listener of this.#reconnectListeners) listener();
      wasReady = true;
    });
  }

  /** Runs one round trip and reports how long it took. */
  async #timed<T>(command: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      this.#bus.emit('redis:command', { command, seconds: (performance.now() - started) / 1000 });
    }
  }

  /** The command connection, for readers that are not work-queue transitions (health, metrics). */
  get redis(): Redis {
    return this.#cmd;
  }

  /** Another connection (a subscriber, say), closed with the broker. */
  connection(name: string): Redis {
    const conn = connect(this.#url, { connectionName: name });
    conn.on('error', () => undefined);
    this.#others.add(conn);
    return conn;
  }

  /** A new connection for blocking reads, so a BLMOVE never delays acks on the command connection. */
  blockingConnection(name: string): Redis {
    const conn = connect(this.#url, { connectionName: name });
    conn.on('error', () => undefined);
    // The server knows this connection by another id once it reconnects.
    conn.on('close', () => this.#clientIds.delete(conn));
    this.#watchReconnects(conn);
    this.#blocking.add(conn);
    return conn;
  }

  /**
   * Ends the BLMOVEs waiting on `conns` as if they had timed out (CLIENT UNBLOCK ... TIMEOUT). Safe where
   * a disconnect is not: a BLMOVE either already moved its message and still returns it, or returns nil.
   */
  async unblock(conns: readonly Redis[]): Promise<void> {
    const ids: number[] = [];
    for (const conn of conns) {
      const id = this.#clientIds.get(conn);
      if (id === undefined) this.#unblockWanted.add(conn);
      else ids.push(id);
    }
    if (ids.length === 0) return;
    const pipe = this.#cmd.pipeline();
    for (const id of ids) pipe.client('UNBLOCK', id, 'TIMEOUT');
    await pipe.exec();
  }

  /** Moves up to `max` messages from `pairs` (in order) into their processing lists without blocking. */
  async fetch(pairs: readonly ListPair[], max: number): Promise<Fetched[]> {
    const keys = pairs.flatMap((p) => [p.source, p.processing]);
    const flat = await this.#timed('fetch', () => this.#cmd.fetchBuffer(keys.length, ...keys, Math.min(max, 1000)));
    const out: Fetched[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const pair = pairs[Number(flat[i]) - 1];
      const bytes = flat[i + 1];
      if (pair && Buffer.isBuffer(bytes)) out.push({ pair, bytes });
    }
    return out;
  }

  /** Waits up to `timeoutSeconds` for one message on `pair.source`, moving it atomically (BLMOVE). */
  async blockingMove(conn: Redis, pair: ListPair, timeoutSeconds: number): Promise<Fetched | null> {
    // Asked before the first wait on each connection (it is forgotten when the connection drops, as
    // the server gives a new one on reconnect): a request queued behind a BLMOVE would not be answered
    // until the wait ends. Awaited, so that a wait ended before its connection was even set up does
    // not begin: sent behind the id, its BLMOVE used to take a message past the prefetch bound.
    if (!this.#clientIds.has(conn)) {
      this.#unblockWanted.delete(conn);
      this.#clientIds.set(conn, Number(await conn.client('ID')));
      if (this.#unblockWanted.delete(conn)) return null;
    }
    const bytes = await conn.blmoveBuffer(pair.source, pair.processing, 'RIGHT', 'LEFT', timeoutSeconds);
    return bytes === null ? null : { pair, bytes };
  }

  /**
   * Stores results and removes their messages in one atomic step (ack.lua): a message leaves the
   * processing list only together with its result, and a crash in between leaves it to run again
   * (at-least-once).
   */
  async ack(batch: readonly Ack[]): Promise<void> {
    const keys: string[] = [];
    const args: (string | Buffer)[] = [String(this.#resultExpires)];
    for (const a of batch) {
      const store = a.meta !== null && a.taskId !== null;
      keys.push(a.pair.processing, store ? resultKey(a.taskId as string) : a.pair.processing);
      args.push(a.bytes, store ? (a.meta as string) : '');
    }
    await this.#timed('ack', async () => {
      // Encoded by resp.ts rather than by ioredis (see there). A server without the script (the first ack, a
      // restarted Redis) answers NOSCRIPT without running anything; ioredis's own call then loads it.
      const command = new EncodedCommand('evalsha', encodeCommand(['EVALSHA', ACK_SHA, String(keys.length), ...keys, ...args]));
      void this.#cmd.sendCommand(command);
      try {
        return await command.promise;
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        return this.#cmd.ack(keys.length, ...keys, ...args);
      }
    });
  }

  /** Dead-letters messages with their reason, storing a FAILURE meta when a task id was readable. */
  async deadLetter(batch: readonly DeadLetter[]): Promise<void> {
    const multi = this.#cmd.multi();
    for (const d of batch) {
      multi.lpush(DEAD_LETTER_KEY, d.record);
      if (d.meta !== null && d.taskId !== null) {
        const key = resultKey(d.taskId);
        multi.set(key, d.meta, 'EX', this.#resultExpires);
        multi.publish(key, d.meta);
      }
      multi.lrem(d.pair.processing, -1, d.bytes);
    }
    await this.#timed('dead_letter', () => execOrThrow(multi));
  }

  /**
   * Parks a message in the ETA set until `dueMs` (as `stored`, when it changes on the way); false when
   * it was no longer ours to park.
   */
  async defer(pair: ListPair, bytes: Buffer, dueMs: number, stored: string | Buffer = bytes): Promise<boolean> {
    return (await this.#timed('defer', () => this.#cmd.defer(pair.processing, ETA_KEY, bytes, dueMs, pair.source, stored))) === 1;
  }

  /** Pushes due ETA messages to their queues; returns how many moved and when the next one is due. */
  async promote(nowMs: number, limit = 500): Promise<{ moved: number; nextDue: number | null }> {
    const due = await this.#timed('promote', () => this.#cmd.zrangebyscore(ETA_KEY, '-inf', String(nowMs), 'LIMIT', 0, limit));
    let moved = 0;
    if (due.length > 0) {
      const lists = due.map((m) => m.slice(0, m.indexOf('\n')));
      moved = await this.#cmd.promote(1 + lists.length, ETA_KEY, ...lists, ...due);
    }
    const next = (await this.#cmd.zrange(ETA_KEY, 0, '0', 'WITHSCORES')) as string[];
    return { moved, nextDue: next[1] === undefined ? null : Number(next[1]) };
  }

  /** Reserves the next start slot of a rate-limited task name; resolves with its delay in ms. */
  async rateSlot(taskName: string, intervalMs: number): Promise<number> {
    return this.#timed('rate', () => this.#cmd.rate(rateKey(taskName), intervalMs));
  }

  /** Replaces a finished message by its retry in `pair.source` and stores the RETRY meta (null: none). */
  async retry(pair: ListPair, bytes: Buffer, retryRaw: string, taskId: string, meta: string | null): Promise<boolean> {
    return (await this.#timed('retry', () => this.#cmd.retry(pair.processing, pair.source, resultKey(taskId), bytes, retryRaw, meta ?? '', this.#resultExpires))) === 1;
  }

  /** What each processing list of `pairs` holds, in one pipelined round trip. */
  async listProcessing(pairs: readonly ListPair[]): Promise<Buffer[][]> {
    const pipe = this.#cmd.pipeline();
    for (const p of pairs) pipe.lrangeBuffer(p.processing, 0, -1);
    const replies = (await pipe.exec()) ?? [];
    return replies.map(([err, items]) => {
      if (err) throw err;
      return items as Buffer[];
    });
  }

  /**
   * Puts one reserved message back at the consumer end of its queue, as if never fetched: true when
   * moved, false when it had left the processing list already.
   */
  async unfetch(f: Fetched): Promise<boolean> {
    return (await this.#timed('unfetch', () => this.#cmd.unfetch(f.pair.processing, f.pair.source, f.bytes))) === 1;
  }

  /** Moves everything in the processing lists back to their sources; returns how many moved. */
  async requeue(pairs: readonly ListPair[]): Promise<number> {
    if (pairs.length === 0) return 0;
    const keys = pairs.flatMap((p) => [p.processing, p.source]);
    return this.#cmd.requeue(keys.length, ...keys);
  }

  /**
   * Hands back what `hostname` left in its processing lists (only if its heartbeat is gone, unless
   * `own`); messages recovered more than `limit` times are dead-lettered instead and returned.
   */
  async recover(hostname: string, o: { limit: number; counterTtlSeconds: number; own: boolean }): Promise<{ moved: number; dead: string[] }> {
    const [moved, ...dead] = await this.#timed('recover', () =>
      this.#cmd.recover(heartbeatKey(hostname), processingIndex(hostname), DEAD_LETTER_KEY, WORKERS_KEY, hostname, o.limit, o.counterTtlSeconds, new Date().toISOString(), o.own ? '1' : '0', processingPrefix(hostname)),
    );
    return { moved: Number(moved), dead: dead.map(String) };
  }

  /** One read of every backlog figure, in `queues` order; not timed as a work-queue command. */
  async backlog(queues: readonly string[]): Promise<Backlog> {
    const lists = queues.flatMap(queueLists);
    const r = await this.#cmd.backlog(lists.length + 2, ...lists, ETA_KEY, DEAD_LETTER_KEY, PRIORITY_STEPS.length);
    return { queues: r.slice(0, queues.length), eta: r[queues.length] as number, deadLetters: r[queues.length + 1] as number };
  }

  /** Stores a result meta and publishes it to waiting clients. */
  async storeResult(taskId: string, meta: string): Promise<void> {
    const key = resultKey(taskId);
    await this.#cmd.multi().set(key, meta, 'EX', this.#resultExpires).publish(key, meta).exec();
  }

  /**
   * Takes or refreshes this worker's hostname (`deadHolder`: a previous value proven stale): 'kept'
   * when it was ours, 'taken' when it was free (for a running worker: its heartbeat had expired),
   * 'refused' when another process holds it.
   */
  async claim(hostname: string, value: string, ttlMs: number, deadHolder = ''): Promise<'kept' | 'taken' | 'refused'> {
    const code = await this.#cmd.claim(heartbeatKey(hostname), value, ttlMs, deadHolder);
    return code === 1 ? 'kept' : code === 2 ? 'taken' : 'refused';
  }

  async currentHolder(hostname: string): Promise<string | null> {
    return this.#cmd.get(heartbeatKey(hostname));
  }

  /** Releases the hostname if it is still ours. */
  async release(hostname: string, value: string): Promise<void> {
    const key = heartbeatKey(hostname);
    if ((await this.#cmd.get(key)) === value) await this.#cmd.del(key);
  }

  /** Closes the blocking connections at once; a BLMOVE cut off here leaves its message in our processing list. */
  disconnectBlocking(): void {
    for (const conn of this.#blocking) conn.disconnect();
    this.#blocking.clear();
    this.#clientIds.clear();
    this.#unblockWanted.clear();
  }

  async close(): Promise<void> {
    this.disconnectBlocking();
    for (const conn of this.#others) conn.disconnect();
    await closeRedis(this.#cmd);
  }
}

async function execOrThrow(multi: ReturnType<Redis['multi']>): Promise<void> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('MULTI was aborted');
  for (const [err] of replies) if (err) throw err;
}
