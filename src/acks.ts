// Batches acks and dead letters finished in the same tick into one MULTI each (design rule 7), and
// retries a batch that failed (Redis down) with backoff until it lands: a finished task's result is
// never dropped, and its message stays in the processing list until then.

import type { Ack, Broker, DeadLetter } from './broker.js';
import type { EventBus } from './events.js';

interface Pending<T> {
  items: readonly T[];
  done: () => void;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

export class AckWriter {
  readonly #broker: Broker;
  readonly #bus: EventBus;
  #acks: Pending<Ack>[] = [];
  #dead: Pending<DeadLetter>[] = [];
  #scheduled = false;
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];

  readonly #othersRunning: () => boolean;

  /** `othersRunning`: whether another outcome may still come in this turn (a pool thread is busy). */
  constructor(broker: Broker, bus: EventBus, othersRunning: () => boolean) {
    this.#broker = broker;
    this.#bus = bus;
    this.#othersRunning = othersRunning;
  }

  /** Resolves once every result is stored and its message removed from its processing list. */
  ack(items: readonly Ack[]): Promise<void> {
    return new Promise((done) => {
      this.#acks.push({ items, done });
      this.#schedule();
    });
  }

  deadLetter(item: DeadLetter): Promise<void> {
    return new Promise((done) => {
      this.#dead.push({ items: [item], done });
      this.#schedule();
    });
  }

  /** True while anything is queued or being written. */
  get busy(): boolean {
    return this.#inFlight > 0 || this.#acks.length > 0 || this.#dead.length > 0;
  }

  /** Resolves when everything handed over so far has been written. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate lets every outcome that arrives in this turn join the batch. With no thread busy
    // none can, and the write goes out after this batch's own outcomes (queued in the same
    // synchronous step) rather than behind the rest of the turn: a lone task's round trip is shorter.
    (this.#othersRunning() ? setImmediate : queueMicrotask)(() => {
      this.#scheduled = false;
      const acks = this.#acks;
      const dead = this.#dead;
      this.#acks = [];
      this.#dead = [];
      if (acks.length > 0) void this.#write(acks, (items) => this.#broker.ack(items));
      if (dead.length > 0) void this.#write(dead, (items) => this.#broker.deadLetter(items));
    });
  }

  async #write<T>(batch: Pending<T>[], send: (items: readonly T[]) => Promise<void>): Promise<void> {
    this.#inFlight += 1;
    const items = batch.length === 1 ? (batch[0] as Pending<T>).items : batch.flatMap((p) => p.items);
    for (let delay = RETRY_MIN_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        await send(items);
        break;
      } catch (err) {
        this.#bus.emit('ack:failed', { count: items.length, error: err instanceof Error ? err.message : String(err), retryInMs: delay });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    this.#inFlight -= 1;
    for (const p of batch) p.done();
    if (!this.busy) for (const w of this.#idleWaiters.splice(0)) w();
  }
}
