// The consumer's idle waits: while no watched list has work, one blocking connection per list waits
// in BLMOVE, so a message on any of them wakes the worker within a round trip, without polling.
// Why several BLMOVEs rather than one BRPOP over all lists: BRPOP pops into memory, so a crash between
// pop and record loses the message (kombu's gap); BLMOVE takes one source list, hence one connection
// per list. A handful of idle connections is cheap; fetch.lua does the real work while there is any.
//
// A wait that brings a message hands it to the consumer (`onMessage`) and ends; the others go on
// waiting until they time out while disarmed, are ended (`endOthers`, `end`), or are cut (`close`).
// A message moved by a BLMOVE that is cut off is already in our processing list.

import type { Redis } from 'ioredis';
import type { Broker, Fetched, ListPair } from './broker.js';
import type { Logger } from './logger.js';
import type { Lease } from './recovery.js';

/** Long enough to be idle, short enough that a wait left disarmed ends soon. */
const BLOCK_SECONDS = 2;
const RETRY_MS = 500;

export interface IdleWaitsOptions {
  broker: Broker;
  pairs: readonly ListPair[];
  /** Client name of the blocking connections. */
  connectionName: string;
  logger: Logger;
  /** Waits run only while it is valid: a worker presumed dead must not move messages into its lists. */
  lease: Lease;
  /** A wait brought `f`; `othersWaiting` waits are still out. */
  onMessage: (f: Fetched, othersWaiting: number) => void;
}

export class IdleWaits {
  readonly #o: IdleWaitsOptions;
  readonly #conns = new Map<ListPair, Redis>();
  /** Waits in progress, by list. */
  readonly #waiting = new Map<ListPair, Promise<void>>();
  #armed = false;
  #closed = false;

  constructor(options: IdleWaitsOptions) {
    this.#o = options;
  }

  /** Starts a wait on every list that has none; waits that time out wait again until disarmed. */
  arm(): void {
    if (this.#closed) return;
    this.#armed = true;
    for (const pair of this.#o.pairs) {
      if (this.#waiting.has(pair)) continue;
      let conn = this.#conns.get(pair);
      if (!conn) {
        conn = this.#o.broker.blockingConnection(this.#o.connectionName);
        this.#conns.set(pair, conn);
      }
      this.#waiting.set(pair, this.#wait(pair, conn).finally(() => this.#waiting.delete(pair)));
    }
  }

  /** Waits that return from now on do not wait again. */
  disarm(): void {
    this.#armed = false;
  }

  /** Ends the waits other than the one on `except` (each could bring one more message). */
  endOthers(except: ListPair): void {
    this.#o.broker.unblock(this.#connsOf([...this.#waiting.keys()].filter((p) => p !== except))).catch((err: unknown) =>
      this.#o.logger.warn({ event: 'unblock:failed', err: String(err) }, 'ending idle waits failed'),
    );
  }

  /** Ends every wait; resolves when each has returned (what they brought was handed over). */
  async end(): Promise<void> {
    this.disarm();
    await this.#o.broker.unblock(this.#connsOf([...this.#waiting.keys()])).catch(() => undefined);
    await Promise.all(this.#waiting.values());
  }

  /** Cuts the blocking connections at once, for good. */
  close(): void {
    this.#closed = true;
    this.disarm();
    this.#o.broker.disconnectBlocking();
    this.#conns.clear();
  }

  #connsOf(pairs: readonly ListPair[]): Redis[] {
    return pairs.map((p) => this.#conns.get(p)).filter((c): c is Redis => c !== undefined);
  }

  async #wait(pair: ListPair, conn: Redis): Promise<void> {
    while (this.#armed && this.#o.lease.valid) {
      let fetched: Fetched | null;
      try {
        fetched = await this.#o.broker.blockingMove(conn, pair, BLOCK_SECONDS);
      } catch (err) {
        if (this.#closed) return;
        this.#o.logger.warn({ event: 'fetch:failed', err: String(err) }, 'blocking wait failed; retrying');
        await new Promise((r) => setTimeout(r, RETRY_MS));
        continue;
      }
      if (fetched !== null) {
        this.#o.onMessage(fetched, this.#waiting.size - 1);
        return;
      }
    }
  }
}
