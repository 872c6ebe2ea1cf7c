// The messages this worker knows it holds in its processing lists.
//
// Why keep more than a count: a fetch or BLMOVE that Redis carried out but whose reply was lost (the
// connection dropped between the two, or Redis died after writing its AOF) leaves a message in our
// processing list that this process never saw. No sweep would ever touch it while we live, so it would
// wait for our next restart. After every reconnect the consumer lists its processing lists and hands
// back whatever is not in here (`strays`). The other way round, a reservation no longer in its list
// (`gone`) was handed to another worker by a sweep while this one was presumed dead.
//
// Entries are the fetched objects themselves, so the hot path never hashes a message's text; only
// `compare`, which runs after a reconnect, compares bytes (as latin1 text, one character per byte).
// Two byte-identical messages (a producer that sent one twice) are two entries.

import type { Fetched } from './broker.js';

export class Reservations {
  readonly #held = new Set<Fetched>();

  get size(): number {
    return this.#held.size;
  }

  add(f: Fetched): void {
    this.#held.add(f);
  }

  delete(f: Fetched): void {
    this.#held.delete(f);
  }

  /**
   * Compares a processing list as stored (`listed`) with what is reserved here: `strays` it holds
   * that we do not know of, and `gone`, reservations it no longer holds (a sweep took them while our
   * heartbeat was expired).
   */
  compare(processing: string, listed: readonly Buffer[]): { strays: Buffer[]; gone: Fetched[] } {
    const mine = new Map<string, Fetched[]>();
    for (const f of this.#held) {
      if (f.pair.processing !== processing) continue;
      const text = f.bytes.toString('latin1');
      const same = mine.get(text);
      if (same) same.push(f);
      else mine.set(text, [f]);
    }
    const strays: Buffer[] = [];
    for (const bytes of listed) {
      const same = mine.get(bytes.toString('latin1'));
      if (same && same.length > 0) same.pop();
      else strays.push(bytes);
    }
    return { strays, gone: [...mine.values()].flat() };
  }
}
