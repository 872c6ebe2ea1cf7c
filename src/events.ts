// Typed events the core emits; observers (logger, metrics) subscribe. Emitting never throws: a listener
// that fails is reported once per event name and the loop carries on (design.md: attached, not woven in).

export interface TaskEventBase {
  id: string;
  name: string;
  queue: string;
}

export interface EventMap {
  /** Emitted by a producer for each message it enqueued. */
  'task:sent': { name: string; queue: string; count: number };
  'task:received': TaskEventBase & { eta: number | null; retries: number };
  /** `queueWaitMs`: from when the message was enqueued (or due, for an ETA) until it started. */
  'task:started': TaskEventBase & { queueWaitMs: number };
  /** `latencyMs`: from enqueued (or due) until the result was stored. */
  'task:succeeded': TaskEventBase & { runtimeMs: number; latencyMs: number };
  'task:failed': TaskEventBase & { runtimeMs: number; latencyMs: number; excType: string; excMessage: string; traceback: string | null };
  'task:deferred': TaskEventBase & { eta: number };
  /** The task asked to run again (Celery's retry); `eta` is when. */
  'task:retried': TaskEventBase & { eta: number; retries: number; excType: string; excMessage: string };
  'task:revoked': TaskEventBase & { reason: string };
  'task:rejected': { id: string | null; name: string | null; queue: string; code: string; reason: string };
  'ack:failed': { count: number; error: string; retryInMs: number };
  /** A pool thread died under a task and was replaced. */
  'pool:thread-restart': { reason: 'crash' | 'time_limit' | 'memory' | 'recycle' | 'terminate' };
  /** One Redis round trip of the work queue (fetch, ack, ...), for the latency histogram. */
  'redis:command': { command: string; seconds: number };
  /** Messages a dead worker left behind (`from`: its hostname, ours after a restart), handed back to their queues. */
  'worker:recovered': { count: number; from: string };
  /** Messages found in our processing lists after a reconnect that this process had not seen, handed back. */
  'worker:reconciled': { count: number };
  /** Reserved messages not started that a sweep handed to other workers while our heartbeat was expired: not run here. */
  'worker:superseded': { count: number };
  'worker:ready': { hostname: string; queues: string[]; concurrency: number; tasks: number; requeued: number; metricsPort: number | null };
  'worker:shutdown': { hostname: string; mode: 'warm' | 'cold'; requeued: number; unfinished: number };
}

type Listener<K extends keyof EventMap> = (event: EventMap[K]) => void;

export class EventBus {
  readonly #listeners = new Map<keyof EventMap, Listener<never>[]>();
  readonly #reported = new Set<keyof EventMap>();
  onListenerError: (name: keyof EventMap, err: unknown) => void = () => undefined;

  on<K extends keyof EventMap>(name: K, listener: Listener<K>): void {
    const list = this.#listeners.get(name) ?? [];
    list.push(listener as Listener<never>);
    this.#listeners.set(name, list);
  }

  emit<K extends keyof EventMap>(name: K, event: EventMap[K]): void {
    const list = this.#listeners.get(name) as Listener<K>[] | undefined;
    if (!list) return;
    for (const listener of list) {
      try {
        listener(event);
      } catch (err) {
        if (!this.#reported.has(name)) {
          this.#reported.add(name);
          this.onListenerError(name, err);
        }
      }
    }
  }
}
