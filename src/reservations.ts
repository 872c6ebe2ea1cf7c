// The messages this worker knows it holds in its processing lists, counted per list and exact text.
//
// Why keep more than a count: a fetch or BLMOVE that Redis carried out but whose reply was lost (the
// connection dropped between the two, or Redis died after writing its AOF) leaves a message in our
// processing list that this process never saw. No sweep would ever touch it while we live, so it would
// wait for our next restart. After every reconnect the consumer lists its processing lists and hands
// back whatever is not in here (`strays`).
//
// Messages are matched by their text as decoded from the stored bytes, the same way on both sides; two
// byte-identical messages (a producer that sent one twice) are two entries.

import type { ListPair } from './broker.js';

export interface Held {
  readonly pair: ListPair;
  readonly raw: string;
}

export class Reservations {
  readonly #byList = new Map<string, Map<string, number>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(h: Held): void {
    let counts = this.#byList.get(h.pair.processing);
    if (!counts) this.#byList.set(h.pair.processing, (counts = new Map()));
    counts.set(h.raw, (counts.get(h.raw) ?? 0) + 1);
    this.#size += 1;
  }

  delete(h: Held): void {
    const counts = this.#byList.get(h.pair.processing);
    const n = counts?.get(h.raw);
    if (counts === undefined || n === undefined) return;
    if (n > 1) counts.set(h.raw, n - 1);
    else counts.delete(h.raw);
    this.#size -= 1;
  }

  /** Of what a processing list holds (`listed`, as stored), the messages beyond those reserved here. */
  strays(processing: string, listed: readonly Buffer[]): Buffer[] {
    const left = new Map(this.#byList.get(processing));
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
