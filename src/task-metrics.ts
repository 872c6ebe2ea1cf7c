// Per-task counters and histograms kept as plain numbers, one set of cells per (task name, queue),
// written in the Prometheus text format at scrape time, after prom-client's registry.
//
// Why not prom-client's own Counter and Histogram here: each inc() or observe() hashes its label values
// into a key, and a task updates six series. Measured on the no-op drain: 18 % fewer tasks per second
// with them. Here an event finds its cells with one Map lookup and adds to numbers. And why not hand
// the cells to prom-client's registry to format: it escapes and joins the labels of every line again,
// 433 ms a scrape with 1,000 task names on 50 queues (66,000 lines) against the 50 ms allowed.

type Labels = Record<string, string | number>;

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
  /** Bumped on every update, so a scrape re-renders only what changed. */
  version = 0;
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

  constructor(readonly labels: Readonly<Labels>, bounds: readonly number[]) {
    this.runtime = new HistogramCell(bounds);
    this.queueWait = new HistogramCell(bounds);
    this.latency = new HistogramCell(bounds);
  }
}

export function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

type Family =
  | { kind: 'counter'; name: string; help: string; read: (c: TaskCells) => number }
  | { kind: 'labelled'; name: string; help: string; label: string; read: (c: TaskCells) => Map<string, number> }
  | { kind: 'histogram'; name: string; help: string; read: (c: TaskCells) => HistogramCell };

/** A label value in the text format: backslash, double quote and line feed escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Numbers as the text format writes them. */
function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

/**
 * The cells of every (task name, queue) seen so far, and their families in the Prometheus text
 * format. Each cell set's lines are rendered once per change and kept: with 1,000 task names a
 * scrape is 66,000 lines (6.8 MB), and most task names change little between two scrapes.
 */
export class TaskMetrics {
  readonly #cells = new Map<string, TaskCells>();
  /** Per cell set: the version its lines were rendered at, and its lines per family (UTF-8). */
  readonly #rendered = new Map<TaskCells, { version: number; parts: Buffer[] }>();
  readonly #families: Family[] = [];
  readonly #hostname: string;
  readonly #bounds: readonly number[];
  readonly #le: readonly string[];

  constructor(hostname: string, bounds: readonly number[]) {
    this.#hostname = hostname;
    this.#bounds = bounds;
    this.#le = [...bounds.map((b) => `le="${num(b)}"`), 'le="+Inf"'];
  }

  /** The cells to update for one event of (task name, queue), marked as changed. */
  touch(name: string, queue: string): TaskCells {
    const key = `${name}\u0000${queue}`;
    let c = this.#cells.get(key);
    if (!c) {
      c = new TaskCells({ name, hostname: this.#hostname, queue_name: queue }, this.#bounds);
      this.#cells.set(key, c);
      this.#rendered.set(c, { version: -1, parts: [] });
    }
    c.version += 1;
    return c;
  }

  /** A counter with one series per (task name, queue) that has counted anything. */
  counter(name: string, help: string, read: (c: TaskCells) => number): void {
    this.#families.push({ kind: 'counter', name, help, read });
  }

  /** A counter with one more label (`label`), its series read from a map per cell set. */
  labelledCounter(name: string, help: string, label: string, read: (c: TaskCells) => Map<string, number>): void {
    this.#families.push({ kind: 'labelled', name, help, label, read });
  }

  histogram(name: string, help: string, read: (c: TaskCells) => HistogramCell): void {
    this.#families.push({ kind: 'histogram', name, help, read });
  }

  /**
   * Every family in the Prometheus text format (0.0.4), ending with a line feed, as chunks of bytes
   * (copying kept chunks is cheap; one string of megabytes is not).
   */
  exposition(): Buffer[] {
    for (const [c, r] of this.#rendered) {
      if (r.version === c.version) continue;
      const labels = `name="${escapeLabel(String(c.labels.name))}",hostname="${escapeLabel(this.#hostname)}",queue_name="${escapeLabel(String(c.labels.queue_name))}"`;
      r.parts = this.#families.map((f) => Buffer.from(this.#render(f, c, labels)));
      r.version = c.version;
    }
    const out: Buffer[] = [];
    this.#families.forEach((f, i) => {
      out.push(Buffer.from(`# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.kind === 'histogram' ? 'histogram' : 'counter'}\n`));
      for (const r of this.#rendered.values()) out.push(r.parts[i] as Buffer);
    });
    return out;
  }

  #render(f: Family, c: TaskCells, labels: string): string {
    let text = '';
    if (f.kind === 'counter') {
      const v = f.read(c);
      if (v > 0) text += `${f.name}{${labels}} ${num(v)}\n`;
    } else if (f.kind === 'labelled') {
      for (const [k, v] of f.read(c)) text += `${f.name}{${labels},${f.label}="${escapeLabel(k)}"} ${num(v)}\n`;
    } else {
      const h = f.read(c);
      if (h.count === 0) return text;
      const bucket = `${f.name}_bucket{${labels},`;
      let cumulative = 0;
      for (let i = 0; i < h.buckets.length; i++) {
        cumulative += h.buckets[i] as number;
        text += `${bucket}${this.#le[i] as string}} ${cumulative}\n`;
      }
      text += `${f.name}_sum{${labels}} ${num(h.sum)}\n${f.name}_count{${labels}} ${h.count}\n`;
    }
    return text;
  }
}
