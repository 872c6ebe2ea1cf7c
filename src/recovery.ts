// Recovery of reserved messages whose worker died.
// - Heartbeat: also makes a hostname exclusive (the key names the process holding it), so two live
//   workers never share a processing list. A previous run of the same hostname that died on this
//   machine (its pid is gone) is taken over at once; one elsewhere is waited out until its heartbeat
//   expires.
// - returnStale: at start, hands back what a previous run of this hostname left behind.
// - Sweeper: every second, one live worker (holder of a short lease) hands back the processing lists of
//   every known worker whose heartbeat has expired. Recovery time is about the heartbeat TTL plus one
//   sweep interval. Both count recoveries per message (recover.lua): past the limit, a message that
//   keeps killing its workers is dead-lettered and its client gets a FAILURE.

import { hostname as machine } from 'node:os';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, ListPair } from './broker.js';
import { HostnameInUseError, ProtocolError, REJECTION_EXCEPTIONS } from './errors.js';
import type { EventBus } from './events.js';
import { processingIndex, SWEEP_LEASE_KEY, WORKERS_KEY } from './keys.js';
import type { Logger } from './logger.js';
import { decodeEnvelope } from './protocol.js';
import { exceptionMeta } from './results.js';

/** How long a message's recovery count is remembered. */
const RECOVERY_COUNTER_TTL_SECONDS = 86_400;
const SWEEP_INTERVAL_MS = 1000;

export interface RecoveryOptions {
  /** Recoveries allowed per message before it is dead-lettered. */
  maxRecoveries: number;
}

interface Holder {
  pid: number;
  machine: string;
  token: string;
}

function parseHolder(text: string): Holder | null {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    return typeof h.pid === 'number' && typeof h.machine === 'string' && typeof h.token === 'string' ? (h as Holder) : null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether this worker's hostname is known to be its own right now: tasks start and fetches run only then. */
export interface Lease {
  readonly valid: boolean;
}

export interface HeartbeatHandlers {
  /** Another process holds the hostname now. */
  lost: () => void;
  /**
   * Our heartbeat had expired (the process was paused longer than the TTL, say), so a sweep may have
   * handed our reserved messages to other workers: register again and drop what is no longer ours.
   * The lease stays invalid until this resolves.
   */
  expired: () => Promise<void>;
  /** The lease is valid again after it was not. */
  renewed: () => void;
}

/**
 * The hostname's heartbeat key, refreshed every third of its TTL, and the lease it gives: valid until
 * one TTL after the last refresh Redis confirmed was sent (the key cannot expire sooner).
 */
export class Heartbeat implements Lease {
  readonly #broker: Broker;
  readonly #hostname: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  readonly #value = JSON.stringify({ pid: process.pid, machine: machine(), token: randomUUID() });
  #timer: NodeJS.Timeout | null = null;
  #validUntil = 0;
  /** The heartbeat expired and `expired` has not completed since. */
  #expired = false;
  #handling = false;

  constructor(broker: Broker, hostname: string, ttlMs: number, logger: Logger) {
    this.#broker = broker;
    this.#hostname = hostname;
    this.#ttlMs = ttlMs;
    this.#log = logger;
  }

  /**
   * Takes the hostname, waiting out a live holder elsewhere for at most one heartbeat period; gives up
   * as soon as `stop` aborts (the caller reads the signal).
   */
  async acquire(stop: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.#ttlMs + 1000;
    let warned = false;
    for (;;) {
      const current = await this.#broker.currentHolder(this.#hostname);
      // Not claimed once a stop is asked for: a release sent before the claim would miss it, and the
      // hostname would stay taken for a TTL.
      if (stop.aborted) return;
      const holder = current === null ? null : parseHolder(current);
      const dead = holder !== null && holder.machine === machine() && holder.pid !== process.pid && !pidAlive(holder.pid);
      const sentAt = performance.now();
      if ((await this.#broker.claim(this.#hostname, this.#value, this.#ttlMs, dead && current !== null ? current : '')) !== 'refused') {
        this.#validUntil = sentAt + this.#ttlMs;
        return;
      }
      if (Date.now() > deadline) throw new HostnameInUseError(this.#hostname);
      if (!warned) {
        this.#log.warn({ event: 'hostname:busy', hostname: this.#hostname, holder: current }, 'hostname held by another worker; waiting for its heartbeat to expire');
        warned = true;
      }
      await sleep(250, undefined, { signal: stop }).catch(() => undefined);
      if (stop.aborted) return;
    }
  }

  get valid(): boolean {
    return !this.#expired && performance.now() < this.#validUntil;
  }

  /** Refreshes the heartbeat every third of its lifetime. */
  start(handlers: HeartbeatHandlers): void {
    this.#timer = setInterval(() => {
      this.#refresh(handlers).catch((err: unknown) => this.#log.warn({ event: 'heartbeat:failed', err: String(err) }, 'heartbeat failed; retrying'));
    }, Math.max(100, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  async #refresh(handlers: HeartbeatHandlers): Promise<void> {
    // Monotonic: the key's TTL runs on Redis's clock from when it got the command, never before we sent it.
    const sentAt = performance.now();
    const claimed = await this.#broker.claim(this.#hostname, this.#value, this.#ttlMs);
    if (claimed === 'refused') {
      this.#log.error({ event: 'hostname:lost', hostname: this.#hostname }, 'another process took this hostname; shutting down');
      handlers.lost();
      return;
    }
    if (claimed === 'taken' && !this.#expired) {
      this.#expired = true;
      this.#log.warn({ event: 'heartbeat:expired', hostname: this.#hostname }, 'this worker\'s heartbeat had expired (was the process paused?); checking which reserved messages are still its own');
    }
    let handled = false;
    if (this.#expired) {
      if (this.#handling) return;
      this.#handling = true;
      try {
        await handlers.expired();
        this.#expired = false;
        handled = true;
      } finally {
        this.#handling = false;
      }
    }
    // Read now, not before the round trip: the lease may have run out while it was in flight.
    const wasValid = this.valid;
    this.#validUntil = Math.max(this.#validUntil, sentAt + this.#ttlMs);
    // The key can vanish long before its TTL (FLUSHALL, a Redis restarted without persistence): the
    // lease was lost with it even while the clock says it was valid.
    if (this.valid && (!wasValid || handled)) handlers.renewed();
  }

  /** No more refreshes; the key expires by itself unless released. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  async release(): Promise<void> {
    this.stop();
    await this.#broker.release(this.#hostname, this.#value);
  }
}

/**
 * Records the lists this worker takes from (so a sweep can find its processing lists) and hands back
 * whatever a previous run with the same hostname left in any of them, including lists of queues this
 * run no longer consumes.
 */
export async function returnStale(broker: Broker, bus: EventBus, hostname: string, pairs: readonly ListPair[], o: RecoveryOptions): Promise<number> {
  await register(broker, hostname, pairs);
  return recoverFrom(broker, bus, hostname, { ...o, own: true });
}

/** Lists this worker and its processing lists where a sweep looks (a sweep of it forgets both). */
export async function register(broker: Broker, hostname: string, pairs: readonly ListPair[]): Promise<void> {
  await broker.redis.multi().sadd(WORKERS_KEY, hostname).sadd(processingIndex(hostname), ...pairs.map((p) => p.source)).exec();
}

/** Forgets a worker that stopped cleanly (its processing lists are empty). */
export async function retire(broker: Broker, hostname: string): Promise<void> {
  await broker.redis.multi().srem(WORKERS_KEY, hostname).del(processingIndex(hostname)).exec();
}

/** Hands back what `from` left behind; reports the count and fails the clients of dead-lettered messages. */
async function recoverFrom(broker: Broker, bus: EventBus, from: string, o: RecoveryOptions & { own: boolean }): Promise<number> {
  const { moved, dead } = await broker.recover(from, { limit: o.maxRecoveries, counterTtlSeconds: RECOVERY_COUNTER_TTL_SECONDS, own: o.own });
  if (moved > 0) bus.emit('worker:recovered', { count: moved, from });
  for (const raw of dead) {
    let ids: { taskId: string | null; taskName: string | null; queue: string | null } = { taskId: null, taskName: null, queue: null };
    try {
      const msg = decodeEnvelope(raw, { maxBytes: Number.POSITIVE_INFINITY });
      ids = { taskId: msg.id, taskName: msg.task, queue: msg.routingKey };
    } catch (err) {
      if (err instanceof ProtocolError) ids = { taskId: err.taskId, taskName: err.taskName, queue: null };
    }
    const reason = `recovered more than ${o.maxRecoveries} times from workers that died while holding it`;
    if (ids.taskId !== null) {
      const exc = REJECTION_EXCEPTIONS.E_RECOVERY_LIMIT;
      await broker.storeResult(ids.taskId, exceptionMeta('FAILURE', ids.taskId, { ...exc, excMessage: reason, traceback: null }));
    }
    bus.emit('task:rejected', { id: ids.taskId, name: ids.taskName, queue: ids.queue ?? 'unknown', code: 'E_RECOVERY_LIMIT', reason });
  }
  return moved;
}

/** Hands back the messages of workers whose heartbeat expired, one live worker at a time. */
export class Sweeper {
  readonly #broker: Broker;
  readonly #bus: EventBus;
  readonly #log: Logger;
  readonly #hostname: string;
  readonly #o: RecoveryOptions & { heartbeatTtlMs: number };
  readonly #token = randomUUID();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> = Promise.resolve();
  /**
   * When our connection last became ready. After Redis restarts, live workers need up to one heartbeat
   * period to refresh keys that expired while it was down: no sweep before then, or live workers' tasks
   * would be handed out twice.
   */
  #connectedAt = Date.now();

  constructor(deps: { broker: Broker; bus: EventBus; logger: Logger; hostname: string; options: RecoveryOptions & { heartbeatTtlMs: number } }) {
    this.#broker = deps.broker;
    this.#bus = deps.bus;
    this.#log = deps.logger;
    this.#hostname = deps.hostname;
    this.#o = deps.options;
    this.#broker.redis.on('ready', () => {
      this.#connectedAt = Date.now();
    });
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#running = this.#sweep().catch((err: unknown) => this.#log.warn({ event: 'sweep:failed', err: String(err) }, 'sweep failed; next round retries'));
    }, SWEEP_INTERVAL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }

  async #sweep(): Promise<void> {
    if (Date.now() - this.#connectedAt < this.#o.heartbeatTtlMs) return;
    const redis = this.#broker.redis;
    if ((await redis.set(SWEEP_LEASE_KEY, this.#token, 'PX', SWEEP_INTERVAL_MS - 50, 'NX')) === null) return;
    for (const hostname of await redis.smembers(WORKERS_KEY)) {
      if (hostname === this.#hostname) continue;
      await recoverFrom(this.#broker, this.#bus, hostname, { maxRecoveries: this.#o.maxRecoveries, own: false });
    }
  }
}
