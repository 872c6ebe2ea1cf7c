// Per-task counters and histograms kept as plain numbers, one set of cells per (task name, queue), and
// handed to prom-client's Registry as metrics it reads at scrape time.
//
// Why not prom-client's own Counter and Histogram here: each inc() or observe() hashes its label values
// into a key, and a task updates six series. Measured on the no-op drain: 18 % fewer tasks per second
// with them. Here an event finds its cells with one Map lookup and adds to numbers; the work of
// labelling moves to the scrape, which pays once per series instead of once per task.

import type { Registry } from 'prom-client';

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

interface Value {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** The cells of every (task name, queue) seen so far, and prom-client metrics that read them. */
export class TaskMetrics {
  readonly #cells = new Map<string, TaskCells>();
  readonly #hostname: string;
  readonly #bounds: readonly number[];

  constructor(hostname: string, bounds: readonly number[]) {
    this.#hostname = hostname;
    this.#bounds = bounds;
  }

  cells(name: string, queue: string): TaskCells {
    const key = `${name}\u0000${queue}`;
    let c = this.#cells.get(key);
    if (!c) this.#cells.set(key, (c = new TaskCells({ name, hostname: this.#hostname, queue_name: queue }, this.#bounds)));
    return c;
  }

  /** A counter with one series per (task name, queue) that has counted anything. */
  counter(registry: Registry, name: string, help: string, read: (c: TaskCells) => number): void {
    this.#register(registry, name, help, 'counter', () => {
      const out: Value[] = [];
      for (const c of this.#cells.values()) {
        const value = read(c);
        if (value > 0) out.push({ labels: c.labels, value });
      }
      return out;
    });
  }

  /** A counter with one more label (`label`), its series read from a map per cell set. */
  labelledCounter(registry: Registry, name: string, help: string, label: string, read: (c: TaskCells) => Map<string, number>): void {
    this.#register(registry, name, help, 'counter', () => {
      const out: Value[] = [];
      for (const c of this.#cells.values()) for (const [k, value] of read(c)) out.push({ labels: { ...c.labels, [label]: k }, value });
      return out;
    });
  }

  histogram(registry: Registry, name: string, help: string, read: (c: TaskCells) => HistogramCell): void {
    this.#register(registry, name, help, 'histogram', () => {
      const out: Value[] = [];
      for (const c of this.#cells.values()) {
        const h = read(c);
        if (h.count === 0) continue;
        let cumulative = 0;
        h.bounds.forEach((le, i) => {
          cumulative += h.buckets[i] as number;
          out.push({ metricName: `${name}_bucket`, labels: { ...c.labels, le }, value: cumulative });
        });
        out.push({ metricName: `${name}_bucket`, labels: { ...c.labels, le: '+Inf' }, value: h.count });
        out.push({ metricName: `${name}_sum`, labels: c.labels, value: h.sum });
        out.push({ metricName: `${name}_count`, labels: c.labels, value: h.count });
      }
      return out;
    });
  }

  // Registry.registerMetric takes any object with prom-client's metric shape: the exposition
  // (text format, escaping, content type) stays prom-client's.
  #register(registry: Registry, name: string, help: string, type: 'counter' | 'histogram', values: () => Value[]): void {
    const metric = {
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
      reset: () => this.#cells.clear(),
    };
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  }
}
