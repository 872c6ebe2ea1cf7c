// The messages this worker knows it holds in its processing lists.
//
// Why keep more than a count: a fetch or BLMOVE that Redis carried out but whose reply was lost (the
// connection dropped between the two, or Redis died after writing its AOF) leaves a message in our
// processing list that this process never saw. No sweep would ever touch it while we live, so it would
// wait for our next restart. After every reconnect the consumer lists its processing lists and hands
// back whatever is not in here (`strays`).
//
// Entries are the fetched objects themselves, so the hot path never hashes a message's text; only
// `strays`, which runs after a reconnect, compares texts. Two byte-identical messages (a producer that
// sent one twice) are two entries.

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

  /** Of what a processing list holds (`listed`, as stored), the messages beyond those reserved here. */
  strays(processing: string, listed: readonly Buffer[]): Buffer[] {
    const left = new Map<string, number>();
    for (const f of this.#held) if (f.pair.processing === processing) left.set(f.raw, (left.get(f.raw) ?? 0) + 1);
    const out: Buffer[] = [];
    for (const bytes of listed) {
      const raw = bytes.toString();
      const n = left.get(raw) ?? 0;
      if (n > 0) left.set(raw, n - 1);
      else out.push(bytes);
    }
    return out;
  }
}
