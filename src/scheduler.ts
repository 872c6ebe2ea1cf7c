// Promotes due ETA/countdown messages from the ETA sorted set back to the consumer end of their queue
// lists. Every worker runs one; promote.lua makes concurrent promotions safe. It sleeps until the next
// due time (at most MAX_SLEEP_MS, so messages deferred by other workers are not late by more than that)
// and is woken early when this worker defers something due sooner.

import type { Broker } from './broker.js';
import type { Logger } from './logger.js';

const MAX_SLEEP_MS = 1000;
const BATCH = 500;

export class Scheduler {
  readonly #broker: Broker;
  readonly #log: Logger;
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #wakeAt = Number.POSITIVE_INFINITY;
  #wakeUp: (() => void) | null = null;
  #done: Promise<void> = Promise.resolve();

  constructor(broker: Broker, logger: Logger) {
    this.#broker = broker;
    this.#log = logger;
  }

  start(): void {
    this.#running = true;
    this.#done = this.#loop();
  }

  /** A message due at `dueMs` was deferred: make sure we are awake by then. */
  wake(dueMs: number): void {
    if (dueMs < this.#wakeAt) this.#interrupt();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#interrupt();
    await this.#done;
  }

  #interrupt(): void {
    const wake = this.#wakeUp;
    this.#wakeUp = null;
    if (this.#timer) clearTimeout(this.#timer);
    wake?.();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      let sleepMs = MAX_SLEEP_MS;
      try {
        const { moved, nextDue } = await this.#broker.promote(Date.now(), BATCH);
        if (moved >= BATCH) continue;
        if (nextDue !== null) sleepMs = Math.max(0, Math.min(MAX_SLEEP_MS, nextDue - Date.now()));
      } catch (err) {
        this.#log.warn({ event: 'promote:failed', err: String(err) }, 'promoting due messages failed; retrying');
      }
      if (!this.#running) break;
      this.#wakeAt = Date.now() + sleepMs;
      await new Promise<void>((resolve) => {
        this.#wakeUp = resolve;
        this.#timer = setTimeout(resolve, sleepMs);
      });
      this.#wakeAt = Number.POSITIVE_INFINITY;
    }
  }
}
