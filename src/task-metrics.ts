// Per-task counters and histograms kept as plain numbers, one set of cells per (task name, queue),
// written in the Prometheus text format at scrape time, after prom-client's registry.
//
// Why not prom-client's own Counter and Histogram here: each inc() or observe() hashes its label values
// into a key, and a task updates six series. Measured on the no-op drain: 18 % fewer tasks per second
// with them. Here an event finds its cells with two Map lookups (name, then queue: a joined key string
// made each event cost 0.8 µs instead of 0.16) and adds to numbers. And why not hand
// the cells to prom-client's registry to format: it escapes and joins the labels of every line again,
// 433 ms a scrape with 1,000 task names on 50 queues (66,000 lines) against the 50 ms allowed; strings
// built per line and encoded per series still took 60-250 ms. Here the bytes around each value are
// encoded once and copied, counts are written digit by digit, and the text streams out in reused
// chunks: 12-40 ms for that scrape, the first after 1,000 new series included.

/** Non-cumulative bucket counts: `buckets[i]` counts values in (bounds[i-1], bounds[i]], the last is +Inf. */
export class HistogramCell {
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.buckets[i] = (this.buckets[i] as number) + 1;
    this.sum += value;
    this.count += 1;
  }
}

/** Everything counted for one task name on one queue. */
export class TaskCells {
  received = 0;
  started = 0;
  succeeded = 0;
  retried = 0;
  revoked = 0;
  deferred = 0;
  /** By exception type. */
  readonly failed = new Map<string, number>();
  /** By dead-letter reason code. */
  readonly rejected = new Map<string, number>();
  readonly runtime: HistogramCell;
  readonly queueWait: HistogramCell;
  readonly latency: HistogramCell;

  /** `labels`: this set's label pairs, escaped, as they appear between the braces. */
  constructor(readonly labels: Buffer, bounds: readonly number[]) {
    this.runtime = new HistogramCell(bounds);
    this.queueWait = new HistogramCell(bounds);
    this.latency = new HistogramCell(bounds);
  }
}

export function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/**
 * A family's lines: each is a head (`name{`), the series' labels, a tail (`,le="0.1"} ` or `} `) and
 * the value. Heads and tails are shared by every series of the family, so a new series costs one
 * buffer (its labels), not one per line: 66 buffers per series had made the first scrape after 1,000
 * new series pay 50 ms of garbage collection for them.
 */
type Family =
  | { kind: 'counter'; name: string; help: string; read: (c: TaskCells) => number; head: Buffer; tail: Buffer }
  | { kind: 'labelled'; name: string; help: string; read: (c: TaskCells) => Map<string, number>; head: Buffer; label: string; tails: Map<string, Buffer> }
  | { kind: 'histogram'; name: string; help: string; read: (c: TaskCells) => HistogramCell; heads: Buffer[]; tails: Buffer[] };

/** A label value in the text format: backslash, double quote and line feed escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Numbers as the text format writes them. */
function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

const CLOSE = Buffer.from('} ');

/** Digits of Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_DIGITS = 16;

/** Chunks of this size carry the text out; a line never spans two. */
const CHUNK_BYTES = 256 * 1024;

/** Bytes of the exposition; `release` once they are written out, so their memory is used again. */
export interface Chunk {
  bytes: Buffer;
  release: () => void;
}

/** Writes lines into large buffers, taken from and given back to `spare`. */
class LineWriter {
  /** Filled chunks not handed out yet. */
  readonly full: Chunk[] = [];
  readonly #spare: Buffer[];
  #buf: Buffer;
  #off = 0;

  constructor(spare: Buffer[]) {
    this.#spare = spare;
    this.#buf = this.#take(CHUNK_BYTES);
  }

  line(head: Buffer, labels: Buffer, tail: Buffer, value: number): void {
    // Counts (most lines) are written digit by digit: formatting each as a string and writing it
    // with Buffer.write() took half of the scrape.
    const counted = Number.isSafeInteger(value) && value >= 0;
    const text = counted ? '' : num(value);
    const need = head.length + labels.length + tail.length + (counted ? MAX_SAFE_DIGITS : text.length) + 1;
    if (this.#off + need > this.#buf.length) this.#flush(need);
    const buf = this.#buf;
    let off = this.#off;
    buf.set(head, off);
    off += head.length;
    buf.set(labels, off);
    off += labels.length;
    buf.set(tail, off);
    off += tail.length;
    if (counted) {
      let digits = 1;
      for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
      let v = value;
      for (let i = off + digits - 1; i >= off; i--) {
        buf[i] = 0x30 + (v % 10);
        v = Math.floor(v / 10);
      }
      off += digits;
    } else {
      for (let i = 0; i < text.length; i++) buf[off++] = text.charCodeAt(i);
    }
    buf[off++] = 0x0a;
    this.#off = off;
  }

  raw(bytes: Buffer): void {
    if (this.#off + bytes.length > this.#buf.length) this.#flush(bytes.length);
    this.#off += bytes.copy(this.#buf, this.#off);
  }

  /** The last chunk, partly filled, joins the full ones. */
  end(): void {
    this.#flush(0);
  }

  #flush(need: number): void {
    const buf = this.#buf;
    if (this.#off > 0) {
      this.full.push({
        bytes: buf.subarray(0, this.#off),
        release: () => {
          if (buf.length === CHUNK_BYTES && !this.#spare.includes(buf)) this.#spare.push(buf);
        },
      });
    }
    this.#buf = this.#take(need);
    this.#off = 0;
  }

  #take(need: number): Buffer {
    return need > CHUNK_BYTES ? Buffer.allocUnsafe(need) : (this.#spare.pop() ?? Buffer.allocUnsafe(CHUNK_BYTES));
  }
}

/** The lines of TaskMetrics.exposition. */
function* writeFamilies(families: readonly Family[], cells: Map<string, Map<string, TaskCells>>, spare: Buffer[]): Generator<Chunk, void, undefined> {
  const w = new LineWriter(spare);
  for (const f of families) {
    w.raw(Buffer.from(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.kind === 'histogram' ? 'histogram' : 'counter'}\n`));
    for (const byQueue of cells.values()) for (const c of byQueue.values()) {
      if (f.kind === 'labelled') {
        for (const [k, v] of f.read(c)) {
          let tail = f.tails.get(k);
          if (!tail) f.tails.set(k, (tail = Buffer.from(`,${f.label}="${escapeLabel(k)}"} `)));
          w.line(f.head, c.labels, tail, v);
        }
      } else if (f.kind === 'counter') {
        const v = f.read(c);
        if (v > 0) w.line(f.head, c.labels, f.tail, v);
      } else {
        const h = f.read(c);
        if (h.count === 0) continue;
        const n = h.buckets.length;
        let cumulative = 0;
        for (let i = 0; i < n; i++) {
          cumulative += h.buckets[i] as number;
          w.line(f.heads[i] as Buffer, c.labels, f.tails[i] as Buffer, cumulative);
        }
        w.line(f.heads[n] as Buffer, c.labels, f.tails[n] as Buffer, h.sum);
        w.line(f.heads[n + 1] as Buffer, c.labels, f.tails[n + 1] as Buffer, h.count);
      }
      while (w.full.length > 0) yield w.full.shift() as Chunk;
    }
  }
  w.end();
  yield* w.full.splice(0);
}

/**
 * The cells of every (task name, queue) seen so far, and their families in the Prometheus text
 * format. The bytes of each line around its value never change, so they are encoded once and kept;
 * a scrape copies them and writes the numbers: with 1,000 task names on 50 queues that is 66,000 lines
 * (7.6 MB) without building a string for any of them.
 */
export class TaskMetrics {
  /** By task name, then queue. */
  #cells = new Map<string, Map<string, TaskCells>>();
  readonly #families: Family[] = [];
  readonly #hostname: string;
  readonly #bounds: readonly number[];
  readonly #le: readonly string[];
  /**
   * Chunk buffers written out already. Fresh memory costs about 3 ms per MB here (page faults in the
   * VM): a scrape that allocated its 8 MB took 24 ms longer.
   */
  readonly #spare: Buffer[] = [];

  constructor(hostname: string, bounds: readonly number[]) {
    this.#hostname = hostname;
    this.#bounds = bounds;
    this.#le = [...bounds.map((b) => `le="${num(b)}"`), 'le="+Inf"'];
  }

  /** The cells to update for one event of (task name, queue). */
  touch(name: string, queue: string): TaskCells {
    let byQueue = this.#cells.get(name);
    if (!byQueue) this.#cells.set(name, (byQueue = new Map()));
    let c = byQueue.get(queue);
    if (!c) {
      c = new TaskCells(Buffer.from(`name="${escapeLabel(name)}",hostname="${escapeLabel(this.#hostname)}",queue_name="${escapeLabel(queue)}"`), this.#bounds);
      byQueue.set(queue, c);
    }
    return c;
  }

  /** A counter with one series per (task name, queue) that has counted anything. */
  counter(name: string, help: string, read: (c: TaskCells) => number): void {
    this.#families.push({ kind: 'counter', name, help, read, head: Buffer.from(`${name}{`), tail: CLOSE });
  }

  /** A counter with one more label (`label`), its series read from a map per cell set. */
  labelledCounter(name: string, help: string, label: string, read: (c: TaskCells) => Map<string, number>): void {
    this.#families.push({ kind: 'labelled', name, help, read, head: Buffer.from(`${name}{`), label, tails: new Map() });
  }

  /** Bucket lines (one per bound, then +Inf), then sum and count. */
  histogram(name: string, help: string, read: (c: TaskCells) => HistogramCell): void {
    const bucket = Buffer.from(`${name}_bucket{`);
    this.#families.push({
      kind: 'histogram',
      name,
      help,
      read,
      heads: [...this.#le.map(() => bucket), Buffer.from(`${name}_sum{`), Buffer.from(`${name}_count{`)],
      tails: [...this.#le.map((le) => Buffer.from(`,${le}} `)), CLOSE, CLOSE],
    });
  }

  /**
   * Writes the exposition of made-up series, then drops them, leaving the real ones as they were:
   * first 20 times with `fill(this, 2)`, then `rounds` times with `fill(this, series)`.
   *
   * On this object rather than a scratch one: the compiled exposition had only seen the scratch
   * object's shape. And the small runs first: the code compiled during the large runs lacked type
   * feedback for the lines before the loops, which had run only in the first calls (V8 allocates a
   * function's feedback lazily, after some calls); it was thrown away at the first real scrape
   * (--trace-deopt: "insufficient type feedback" at the LineWriter construction), and recompiling
   * took 30-77 ms while that scrape, the first after 1,000 new series, ran in the interpreter.
   */
  warmUp(fill: (t: TaskMetrics, series: number) => void, series: number, rounds: number): void {
    const real = this.#cells;
    this.#cells = new Map();
    try {
      fill(this, 2);
      for (let k = 0; k < 20; k++) for (const chunk of this.exposition()) chunk.release();
      fill(this, series);
      for (let k = 0; k < rounds; k++) for (const chunk of this.exposition()) chunk.release();
    } finally {
      this.#cells = real;
    }
  }

  /**
   * Every family in the Prometheus text format (0.0.4), ending with a line feed, in chunks of up to
   * CHUNK_BYTES, handed out as they fill: written out and released as they come, a scrape of any size
   * holds a few, the same from scrape to scrape. The generator pauses only between series, so each
   * series (a histogram's buckets, sum and count) is read at one instant. The generator is a module
   * function of its inputs: V8 deoptimized it at its first read of a private field in some worker starts.
   */
  exposition(): Generator<Chunk, void, undefined> {
    return writeFamilies(this.#families, this.#cells, this.#spare);
  }
}
