// The fetch loop of one worker, as a state machine:
//
//   running ──quiet()──► quiet ──abandon()──► stopped
//
//   running  fetch.lua moves up to the free capacity (threads × prefetch multiplier, minus what is
//            reserved) from the watched lists, highest priority first, into this worker's processing
//            lists. When that finds nothing, the idle waits (waits.ts: one BLMOVE per watched list)
//            take over; the first message back wakes the loop. While the
//            capacity is used up the loop sleeps until an ack frees a slot. After a connection to
//            Redis comes back, the loop first ends its blocking waits and hands back whatever its
//            processing lists hold that it has not reserved (a fetch whose reply was lost).
//   quiet    no more fetching (the blocking connections are closed; a message BLMOVE'd during the
//            close is already in a processing list, for the supervisor's requeue). Reserved messages
//            not started go back to the head of their queues at once, for other workers. Running
//            tasks finish and are acked.
//   stopped  outcomes that still arrive (the pool was destroyed under them) are not acked: their
//            messages are requeued by the supervisor and run again elsewhere.
//
// Invariants: every message this worker reserved is in one of its processing lists until the one
// atomic step that acks, defers or dead-letters it; the pool never gets more tasks than it has free
// threads, so a warm shutdown knows exactly which tasks started; reserved ≤ capacity: a blocking wait
// that returns a message past it (its CLIENT UNBLOCK came too late) puts the message back on its queue.

import type { AckWriter } from './acks.js';
import type { Broker, Fetched, ListPair } from './broker.js';
import { ProtocolError } from './errors.js';
import type { EventBus } from './events.js';
import { PRIORITY_STEPS, processingList, queueList } from './keys.js';
import type { Logger } from './logger.js';
import { Reservations } from './reservations.js';
import type { AbortReason, Pool } from './pool.js';
import type { Lease } from './recovery.js';
import type { Revocations } from './revocations.js';
import { decodeEnvelope, withHeaders, type TaskEnvelope } from './protocol.js';
import type { Scheduler } from './scheduler.js';
import { Transitions } from './transitions.js';
import { IdleWaits } from './waits.js';
import { MAX_BATCH, type Outcome, type TaskInfo } from '../workers/types.js';

/**
 * Tasks expected to take less than this together share a batch (one message to a thread). Each batch
 * costs a hop to the thread and back, and under load more: the supervisor's work for a finished batch
 * (its ack, the next dispatch, a fetch: 1-1.5 ms of CPU on 2 cores) runs on the core the thread just
 * freed, so the thread waits that long for it. With 5 ms tasks, 20 ms batches (3 tasks) left the
 * threads 8% idle between tasks and 50 ms batches 4% (2,000 tasks per thread, `-c 2`). Batches form
 * only from a backlog (an even share of what waits), so a lone task never waits.
 */
const BATCH_BUDGET_MS = 50;
/** A rate slot this close is taken at once rather than waited for in the ETA set. */
const RATE_SLACK_MS = 5;
/** Weight of the newest run time in a task name's moving average. */
const RUNTIME_SMOOTHING = 0.2;
const FETCH_RETRY_MS = 500;

export interface ConsumerOptions {
  hostname: string;
  queues: readonly string[];
  concurrency: number;
  prefetchMultiplier: number;
  maxMessageBytes: number;
  /** Worker default hard time limit (seconds) for tasks that set none. */
  timeLimit: number | null;
}

interface Ready {
  /** The message as fetched: the reservation, and what acks remove by. */
  fetched: Fetched;
  msg: TaskEnvelope;
  ignoreResult: boolean;
  /** The thread needs the whole message (a bound task's `self.request`, or protocol 1's body). */
  needsRaw: boolean;
  /** Seconds before the thread is terminated (message, then task, then worker default), or null. */
  hardLimit: number | null;
  /** Epoch ms the wait is counted from: sent (our producer's stamp) or due (ETA), else first seen. */
  enqueuedAt: number;
}

type State = 'running' | 'quiet' | 'stopped';

export class Consumer {
  readonly #o: ConsumerOptions;
  readonly #broker: Broker;
  readonly #pool: Pool;
  readonly #revocations: Revocations;
  readonly #lease: Lease;
  readonly #bus: EventBus;
  readonly #log: Logger;
  readonly #tasks: ReadonlyMap<string, TaskInfo>;
  readonly #capacity: number;
  readonly #refillAt: number;
  /** All watched lists, step-major: every queue's step 0 list, then step 3, ... */
  readonly #pairsByStep: ListPair[][];
  readonly #waits: IdleWaits;
  readonly #transitions: Transitions;
  readonly #ready: Ready[] = [];
  #state: State = 'running';
  readonly #reservations = new Reservations();
  /**
   * Reserved messages whose outcome is known and being written (ack, retry, defer, dead letter). They
   * stay in the processing list until written, but no longer count against the prefetch bound: a
   * slot that waited for the ack's round trip would idle the threads for it.
   */
  #writes = 0;
  /** A connection came back: our processing lists may hold messages whose fetch reply was lost. */
  #reconcileWanted = false;
  /** Callers of revalidate() waiting for the next reconcile to complete. */
  #reconciled: (() => void)[] = [];
  /** Tasks in the pool plus writes not landed yet (ack, retry, defer, dead letter, unfetch, rate slot). */
  #active = 0;
  #rotation = 0;
  /** Running (or handed to a thread) task id → what ends its batch. */
  readonly #running = new Map<string, AbortController>();
  /** Moving average of the run time of each task name, in ms, for sizing batches. */
  readonly #runtimeMs = new Map<string, number>();
  #wake: (() => void) | null = null;
  /** A wake came while the loop was awake (a reconnect during a fetch, say): its next sleep is skipped. */
  #wakePending = false;
  /** The loop sleeps because no list had work (not because the capacity is used up). */
  #waitingForWork = false;
  #idleWaiters: (() => void)[] = [];
  #loopDone: Promise<void> = Promise.resolve();

  constructor(deps: {
    options: ConsumerOptions;
    broker: Broker;
    pool: Pool;
    acks: AckWriter;
    scheduler: Scheduler;
    revocations: Revocations;
    /** Tasks start and fetches run only while it is valid. */
    lease: Lease;
    bus: EventBus;
    logger: Logger;
    tasks: readonly TaskInfo[];
  }) {
    this.#o = deps.options;
    this.#broker = deps.broker;
    this.#pool = deps.pool;
    this.#revocations = deps.revocations;
    this.#lease = deps.lease;
    this.#bus = deps.bus;
    this.#log = deps.logger;
    this.#tasks = new Map(deps.tasks.map((t) => [t.name, t]));
    this.#capacity = deps.options.concurrency * deps.options.prefetchMultiplier;
    // Fetch again once a quarter of the capacity (at least one slot) is free; the threads still have
    // the other three quarters to work on meanwhile.
    this.#refillAt = Math.max(1, Math.floor(this.#capacity / 4));
    this.#broker.onReconnect(() => {
      this.#reconcileWanted = true;
      this.#wakeLoop();
    });
    this.#pairsByStep = PRIORITY_STEPS.map((step) =>
      this.#o.queues.map((q) => {
        const source = queueList(q, step);
        return { source, processing: processingList(this.#o.hostname, source) };
      }),
    );
    this.#transitions = new Transitions({
      broker: this.#broker,
      acks: deps.acks,
      scheduler: deps.scheduler,
      bus: this.#bus,
      logger: this.#log,
      hostname: this.#o.hostname,
      stopped: () => this.#state === 'stopped',
    });
    this.#waits = new IdleWaits({
      broker: this.#broker,
      pairs: this.pairs,
      connectionName: `celeriac:${this.#o.hostname}:wait`,
      logger: this.#log,
      lease: this.#lease,
      onMessage: (f, othersWaiting) => this.#waited(f, othersWaiting),
    });
  }

  /** Every (source, processing) pair this worker uses. */
  get pairs(): ListPair[] {
    return this.#pairsByStep.flat();
  }

  /** Messages reserved (in a processing list) and not yet acked, deferred or dead-lettered. */
  get reserved(): number {
    return this.#reservations.size;
  }

  /** Tasks handed to pool threads and not finished. */
  get running(): number {
    return this.#running.size;
  }

  /** Reserved messages waiting for a free thread. */
  get waiting(): number {
    return this.#ready.length;
  }

  start(): void {
    this.#loopDone = this.#loop();
  }

  /**
   * Stops fetching and hands reserved messages that have not started back to the front of their
   * queues now, for other workers, rather than when the running tasks are done. Resolves with how
   * many landed there (the others stay in the processing lists for the requeue).
   */
  async quiet(): Promise<number> {
    if (this.#state !== 'running') return 0;
    this.#state = 'quiet';
    this.#waits.close();
    // A revalidation waiting on the loop would wait forever: the loop ends here.
    for (const resolve of this.#reconciled.splice(0)) resolve();
    const released = this.#ready.splice(0);
    for (const r of released) this.#reservations.delete(r.fetched);
    const landed = Promise.all(released.map((r) => this.#unfetch(r.fetched)));
    this.#wakeLoop();
    this.#checkIdle();
    return (await landed).filter(Boolean).length;
  }

  /** Resolves when no task is running and nothing is waiting to be written. */
  async idle(): Promise<void> {
    await this.#loopDone;
    if (this.#active === 0) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * After our heartbeat expired: compares the processing lists with what is reserved here, drops the
   * reserved messages not started that a sweep handed to others, and hands back strays. Resolves once
   * done (the lease stays invalid until then).
   */
  revalidate(): Promise<void> {
    this.#reconcileWanted = true;
    const done = new Promise<void>((resolve) => this.#reconciled.push(resolve));
    this.#wakeLoop();
    return done;
  }

  /** The lease is valid again: fetch and start tasks. */
  resume(): void {
    this.#wakeLoop();
    this.#pump();
  }

  /** From now on, outcomes are dropped (their messages are requeued by the caller). */
  abandon(): void {
    void this.quiet();
    this.#state = 'stopped';
  }

  async #loop(): Promise<void> {
    while (this.#state === 'running') {
      if (this.#reconcileWanted) {
        await this.#reconcile();
        continue;
      }
      // Possibly presumed dead by now: nothing new lands in our lists until the heartbeat says.
      if (!this.#lease.valid) {
        await this.#sleep(false);
        continue;
      }
      const holding = this.#holding;
      const free = this.#capacity - holding;
      // Refill in batches: fetching whenever one slot frees costs a round trip per task. Writes are
      // bounded too, so a slow Redis slows fetching instead of piling up outcomes in memory.
      if (free <= 0 || (free < this.#refillAt && holding > 0) || this.#writes >= this.#capacity) {
        await this.#sleep(false);
        continue;
      }
      let fetched: Fetched[];
      try {
        fetched = await this.#broker.fetch(this.#fetchOrder(), free);
      } catch (err) {
        if (this.#state !== 'running') break;
        this.#log.warn({ event: 'fetch:failed', err: String(err) }, 'fetch failed; retrying');
        await new Promise((r) => setTimeout(r, FETCH_RETRY_MS));
        continue;
      }
      if (this.#state !== 'running') break;
      if (fetched.length > 0) {
        // A blocking wait still out may have brought messages meanwhile: the bound holds for all.
        const room = Math.max(0, this.#capacity - this.#holding);
        fetched.forEach((f, i) => (i < room ? this.#handle(f) : void this.#unfetch(f)));
        continue;
      }
      await this.#sleep(true);
    }
  }

  /** Reserved messages not finished yet: what the prefetch bound counts. */
  get #holding(): number {
    return this.#reservations.size - this.#writes;
  }

  /** An outcome is known and its write begins: its prefetch slot is free from now on. */
  #beginWrite(): void {
    this.#writes += 1;
    this.#capacityFreed();
  }

  /**
   * Only a loop asleep on a full capacity needs this: an awake one reads the capacity at its next
   * turn, and an idle one is woken by its blocking waits.
   */
  #capacityFreed(): void {
    if (this.#wake !== null && !this.#waitingForWork) this.#wakeLoop();
  }

  /** Step-major order with the queues rotated on every call, as kombu does, so no queue starves. */
  #fetchOrder(): ListPair[] {
    const n = this.#o.queues.length;
    const r = this.#rotation++ % n;
    return this.#pairsByStep.flatMap((pairs) => (n === 1 ? pairs : [...pairs.slice(r), ...pairs.slice(0, r)]));
  }

  /**
   * Until #wakeLoop; sleeping for work arms the idle waits. A wake that came while the loop was awake
   * ends this sleep before it starts: the loop decided to sleep without seeing what that wake was for
   * (a reconcile asked for while a fetch was out stayed unasked until the next message otherwise).
   */
  #sleep(forWork: boolean): Promise<void> {
    if (this.#wakePending) {
      this.#wakePending = false;
      return Promise.resolve();
    }
    this.#waitingForWork = forWork;
    if (forWork) this.#waits.arm();
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #wakeLoop(): void {
    const wake = this.#wake;
    this.#wake = null;
    this.#waitingForWork = false;
    this.#waits.disarm();
    if (wake) wake();
    else this.#wakePending = true;
  }

  /**
   * Hands back to their queues the messages in our processing lists that this process does not know
   * of (see reservations.ts). Runs with no fetch in flight: the loop's own fetch is awaited, and the
   * blocking waits are ended first, so every message moved into our lists so far has been seen.
   */
  async #reconcile(): Promise<void> {
    this.#reconcileWanted = false;
    this.#waitingForWork = false;
    // Only those asking so far: one asking during this round trip may have missed what it saw.
    const waiters = this.#reconciled.splice(0);
    await this.#waits.end();
    if (this.#state !== 'running') {
      for (const resolve of waiters) resolve();
      return;
    }
    try {
      const pairs = this.pairs;
      const listed = await this.#broker.listProcessing(pairs);
      const strays: Fetched[] = [];
      const gone = new Set<Fetched>();
      pairs.forEach((pair, i) => {
        const diff = this.#reservations.compare(pair.processing, listed[i] ?? []);
        for (const bytes of diff.strays) strays.push({ pair, bytes });
        for (const f of diff.gone) gone.add(f);
      });
      const moved = (await Promise.all(strays.map((f) => this.#broker.unfetch(f)))).filter(Boolean).length;
      if (moved > 0) this.#bus.emit('worker:reconciled', { count: moved });
      // Not started yet and now another worker's: not run here. One running or being written goes
      // on (at-least-once); its ack removes nothing.
      const dropped = this.#ready.filter((r) => gone.has(r.fetched));
      if (dropped.length > 0) {
        this.#ready.splice(0, this.#ready.length, ...this.#ready.filter((r) => !gone.has(r.fetched)));
        for (const r of dropped) this.#reservations.delete(r.fetched);
        this.#bus.emit('worker:superseded', { count: dropped.length });
      }
      for (const resolve of waiters) resolve();
    } catch (err) {
      this.#reconciled.unshift(...waiters);
      this.#reconcileWanted = true;
      this.#log.warn({ event: 'reconcile:failed', err: String(err) }, 'checking the processing lists after a reconnect failed; retrying');
      await new Promise((r) => setTimeout(r, FETCH_RETRY_MS));
    }
  }

  /** An idle wait brought `f`: the loop takes over with fetch.lua. */
  #waited(f: Fetched, othersWaiting: number): void {
    // In quiet or stopped state the message stays in the processing list for the requeue.
    const running = this.#state === 'running';
    const holds = running && this.#holding < this.#capacity;
    // Each other wait can still bring one message: they keep waiting (re-arming them all per message
    // cost more than the message) unless the free capacity cannot hold one from each. Ended before
    // the message is handled: handling it logs `task:received`, and a producer that sends on seeing
    // that line must find the waits already ended, not grabbing its messages past the bound.
    if (this.#waitingForWork && this.#capacity - this.#holding - (holds ? 1 : 0) < othersWaiting) this.#waits.endOthers(f.pair);
    if (holds) this.#handle(f);
    else if (running) void this.#unfetch(f);
    this.#wakeLoop();
  }

  /**
   * Hands a message back to the head of its queue, unrun, for whoever is free: one past the prefetch
   * bound (a wait returned before its CLIENT UNBLOCK landed), or one let go at shutdown. Resolves
   * true once it is there.
   */
  async #unfetch(f: Fetched): Promise<boolean> {
    this.#active += 1;
    const landed = await this.#transitions.unfetch(f);
    this.#active -= 1;
    this.#checkIdle();
    return landed;
  }

  #handle(f: Fetched): void {
    this.#reservations.add(f);
    let msg: TaskEnvelope;
    try {
      msg = decodeEnvelope(f.bytes.toString(), { maxBytes: this.#o.maxMessageBytes });
    } catch (err) {
      const rejection = err instanceof ProtocolError ? err : new ProtocolError('E_PROTOCOL', String(err));
      this.#reject(f, rejection);
      return;
    }
    const info = this.#tasks.get(msg.task);
    if (!info) {
      this.#reject(f, new ProtocolError('E_UNKNOWN_TASK', `task ${msg.task} is not registered in this worker`, { taskId: msg.id, taskName: msg.task }));
      return;
    }
    const queue = msg.routingKey ?? f.pair.source;
    this.#bus.emit('task:received', { id: msg.id, name: msg.task, queue, eta: msg.eta, retries: msg.retries });
    const now = Date.now();
    if (this.#revocations.has(msg.id)) {
      this.#revoke(f, msg, 'revoked');
      return;
    }
    if (msg.expires !== null && msg.expires <= now) {
      this.#revoke(f, msg, `expired at ${new Date(msg.expires).toISOString()}`);
      return;
    }
    if (msg.eta !== null && msg.eta > now) {
      this.#defer(f, msg, msg.eta, queue);
      return;
    }
    if (info.rateIntervalMs !== null && msg.rateSlot === null) {
      void this.#rateLimit(f, msg, info, info.rateIntervalMs, queue);
      return;
    }
    this.#makeReady(f, msg, info, now);
  }

  #makeReady(f: Fetched, msg: TaskEnvelope, info: TaskInfo, now: number): void {
    // Python producers stamp no send time: their wait counts from the ETA (or rate slot) or from when
    // we first saw it.
    const due = Math.max(msg.eta ?? Number.NEGATIVE_INFINITY, msg.rateSlot ?? Number.NEGATIVE_INFINITY);
    const enqueuedAt = Math.max(msg.sentAt ?? (due === Number.NEGATIVE_INFINITY ? now : Number.NEGATIVE_INFINITY), due);
    const hardLimit = msg.timeLimit[0] ?? info.timeLimit ?? this.#o.timeLimit;
    this.#ready.push({ fetched: f, msg, ignoreResult: msg.ignoreResult || info.ignoreResult, needsRaw: info.bind || msg.protocol === 1, hardLimit, enqueuedAt });
    this.#pump();
  }

  /**
   * Reserves the task's next start slot (shared by all workers). Due now: it runs. Later: it waits in the
   * ETA set, stamped with its slot so that it runs without asking again, so a backlog under a rate limit
   * waits in Redis, not in this worker's memory.
   */
  async #rateLimit(f: Fetched, msg: TaskEnvelope, info: TaskInfo, intervalMs: number, queue: string): Promise<void> {
    this.#active += 1;
    const delayMs = await this.#transitions.persist({ event: 'rate:failed', taskId: msg.id, message: 'reserving a rate slot failed; retrying' }, () => this.#broker.rateSlot(msg.task, intervalMs), () => this.#state === 'running');
    this.#active -= 1;
    if (delayMs === null) {
      // Stopping: the message stays in the processing list for the requeue.
      this.#reservations.delete(f);
      this.#checkIdle();
      return;
    }
    const now = Date.now();
    if (delayMs <= RATE_SLACK_MS) {
      this.#makeReady(f, msg, info, now);
      return;
    }
    const slot = now + delayMs;
    this.#defer(f, msg, slot, queue, withHeaders(f.bytes.toString(), { celeriac_rate_slot: slot }));
  }

  /**
   * Hands ready messages to idle threads, oldest first, in batches of tasks expected to take less than
   * BATCH_BUDGET_MS together (a task name not seen yet, or a slow one, travels alone), and no more
   * than an even share of what is ready, so no thread sits idle while another has a queue.
   */
  #pump(): void {
    while (this.#ready.length > 0 && this.#pool.free > 0 && this.#state === 'running' && this.#lease.valid) {
      const share = Math.min(MAX_BATCH, Math.ceil(this.#ready.length / this.#pool.free));
      const first = this.#ready.shift() as Ready;
      // Revoked after it was received: not run.
      if (this.#revocations.has(first.msg.id)) {
        this.#revoke(first.fetched, first.msg, 'revoked');
        continue;
      }
      const batch = [first];
      // A task with a hard time limit travels alone: the batch's timer is its own.
      let expectedMs = first.hardLimit === null ? this.#expectedMs(first) : Number.POSITIVE_INFINITY;
      while (batch.length < share) {
        const next = this.#ready[0] as Ready;
        expectedMs += this.#expectedMs(next);
        if (expectedMs > BATCH_BUDGET_MS || next.hardLimit !== null || this.#revocations.has(next.msg.id)) break;
        batch.push(this.#ready.shift() as Ready);
      }
      void this.#runBatch(batch);
    }
  }

  #expectedMs(r: Ready): number {
    return this.#runtimeMs.get(r.msg.task) ?? Number.POSITIVE_INFINITY;
  }

  /** Ends the thread running `id` (revoke --terminate); the task is stored as REVOKED. */
  terminate(id: string): void {
    this.#running.get(id)?.abort('terminate' satisfies AbortReason);
  }

  async #runBatch(batch: Ready[]): Promise<void> {
    this.#active += batch.length;
    const now = Date.now();
    const controller = new AbortController();
    for (const { fetched, msg, enqueuedAt } of batch) {
      this.#running.set(msg.id, controller);
      this.#bus.emit('task:started', { id: msg.id, name: msg.task, queue: msg.routingKey ?? fetched.pair.source, queueWaitMs: Math.max(0, now - enqueuedAt) });
    }
    const limit = batch[0]?.hardLimit ?? null;
    const timer = limit === null ? null : setTimeout(() => controller.abort('time_limit' satisfies AbortReason), limit * 1000);
    const outcomes = await this.#pool.runBatch(
      batch.map(({ fetched, msg, ignoreResult, needsRaw }) => ({ raw: needsRaw ? fetched.bytes.toString() : null, body: msg.body, id: msg.id, task: msg.task, retries: msg.retries, softTimeLimit: msg.timeLimit[1], ignoreResult })),
      controller.signal,
    );
    if (timer) clearTimeout(timer);
    const again: Ready[] = [];
    const finished: [Ready, Outcome][] = [];
    outcomes.forEach((outcome, i) => {
      const r = batch[i] as Ready;
      this.#running.delete(r.msg.id);
      if ('notRun' in outcome) {
        this.#active -= 1;
        again.push(r);
      } else if ('rejected' in outcome) {
        // Its thread could not decode the body: dead-lettered like a bad envelope, though counted as started.
        this.#active -= 1;
        this.#reject(r.fetched, new ProtocolError('E_PROTOCOL', outcome.rejected, { taskId: r.msg.id, taskName: r.msg.task }));
      } else if ('aborted' in outcome && outcome.aborted === 'terminate') {
        this.#active -= 1;
        this.#revoke(r.fetched, r.msg, 'terminated');
      } else if ('aborted' in outcome) {
        finished.push([r, {
          ok: false,
          runtimeMs: outcome.runtimeMs,
          exc: { excType: 'TimeLimitExceeded', excModule: 'billiard.exceptions', excMessage: `TimeLimitExceeded(${String(r.hardLimit)})`, traceback: null },
        }]);
      } else {
        finished.push([r, outcome]);
      }
    });
    if (finished.length > 0) void this.#finish(finished);
    if (again.length > 0) {
      // Still in the processing list: dispatched again, or left for the requeue once fetching stopped.
      if (this.#state === 'running') this.#ready.unshift(...again);
      else for (const r of again) this.#reservations.delete(r.fetched);
      this.#checkIdle();
    }
    this.#pump();
  }

  /** Tasks of one batch ran: their outcomes are written together (one ack for all but retries). */
  async #finish(done: readonly [Ready, Outcome][]): Promise<void> {
    for (const [{ msg }, outcome] of done) {
      const previous = this.#runtimeMs.get(msg.task);
      this.#runtimeMs.set(msg.task, previous === undefined ? outcome.runtimeMs : previous + RUNTIME_SMOOTHING * (outcome.runtimeMs - previous));
    }
    if (this.#state === 'stopped') {
      for (let i = 0; i < done.length; i++) this.#settle(null);
      return;
    }
    for (let i = 0; i < done.length; i++) this.#beginWrite();
    await this.#transitions.complete(
      done.map(([{ fetched, msg, ignoreResult, enqueuedAt }, outcome]) => ({ fetched, msg, outcome, ignoreResult, enqueuedAt })),
      (f) => this.#settle(f),
    );
  }

  /** Takes a message out of our processing list by `transition`; its prefetch slot is free at once. */
  #write(f: Fetched, transition: () => Promise<void>): void {
    this.#active += 1;
    this.#beginWrite();
    void transition().then(() => this.#settle(f));
  }

  #reject(f: Fetched, err: ProtocolError): void {
    this.#write(f, () => this.#transitions.deadLetter(f, err));
  }

  #revoke(f: Fetched, msg: TaskEnvelope, reason: string): void {
    this.#write(f, () => this.#transitions.revoke(f, msg, reason));
  }

  #defer(f: Fetched, msg: TaskEnvelope, eta: number, queue: string, stored?: string | Buffer): void {
    this.#write(f, () => this.#transitions.defer(f, msg, eta, queue, stored));
  }

  /**
   * One reserved message is done with: `done` has left our processing list (acked, deferred,
   * dead-lettered), or null when it stays there for the requeue (stopped).
   */
  #settle(done: Fetched | null): void {
    this.#active -= 1;
    if (done) {
      this.#reservations.delete(done);
      this.#writes -= 1;
    }
    this.#capacityFreed();
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#active === 0 && this.#state !== 'running') for (const w of this.#idleWaiters.splice(0)) w();
  }
}

