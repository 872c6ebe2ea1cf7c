// Every Redis key and channel name celeriac reads or writes, as pure functions. Names that Celery and
// kombu define (queue lists, priority sub-lists, result keys, bindings) follow them byte for byte so
// that Python producers and workers share them; our own keys live under the `celeriac:` prefix.

/** kombu's separator inside list and binding names: bytes 0x06 0x16. */
export const SEP = '\x06\x16';

/** kombu's default `priority_steps`; 0 is the highest priority on Redis. */
export const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/** The step a priority is rounded down to, as kombu does (out-of-range values are clamped). */
export function priorityStep(priority: number): number {
  const p = Math.min(9, Math.max(0, Math.trunc(priority)));
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step;
}

/** The list a message of `priority` on `queue` is pushed to: `<queue>` for step 0, else `<queue>\x06\x16<step>`. */
export function queueList(queue: string, priority = 0): string {
  const step = priorityStep(priority);
  return step === 0 ? queue : `${queue}${SEP}${step}`;
}

/** All lists of one queue in the order a worker takes from them (highest priority first). */
export function queueLists(queue: string): string[] {
  return PRIORITY_STEPS.map((step) => queueList(queue, step));
}

/** kombu's binding set, declared before a queue's first publish. */
export function bindingKey(queue: string): string {
  return `_kombu.binding.${queue}`;
}

/** The binding member for the default direct exchange: `<routing key>\x06\x16<pattern>\x06\x16<queue>`. */
export function bindingMember(queue: string): string {
  return `${queue}${SEP}${SEP}${queue}`;
}

/** Celery's result key; also the channel the result is published on. */
export function resultKey(taskId: string): string {
  return `celery-task-meta-${taskId}`;
}

/**
 * One processing list per (worker, source list): the source list is part of the name, so handing the
 * messages back needs no parsing, only a move from this list to the list named in it.
 */
export function processingList(hostname: string, sourceList: string): string {
  return `${processingPrefix(hostname)}${sourceList}`;
}

/** What precedes the source list's name in the names of a worker's processing lists. */
export function processingPrefix(hostname: string): string {
  return `celeriac:processing:${hostname}:`;
}

/** The set of source lists a worker has processing lists for (so a sweep can find them all). */
export function processingIndex(hostname: string): string {
  return `celeriac:processing-index:${hostname}`;
}

/** The liveness key of a worker; its value says which process holds the hostname. */
export function heartbeatKey(hostname: string): string {
  return `celeriac:heartbeat:${hostname}`;
}

/** Dead-lettered messages, newest first, each a JSON record with the reason and the raw message. */
export const DEAD_LETTER_KEY = 'celeriac:dead-letter';

/** Messages waiting for their ETA: a sorted set scored by due time in ms; member = `<list>\n<raw>`. */
export const ETA_KEY = 'celeriac:eta';

/** Every worker hostname that may hold messages in processing lists: what the sweep looks at. */
export const WORKERS_KEY = 'celeriac:workers';

/** Held by the worker that sweeps this round, so one live worker at a time does. */
export const SWEEP_LEASE_KEY = 'celeriac:sweep-lease';

/** Revoked task ids: a sorted set scored by when each may be forgotten (epoch ms). */
export const REVOKED_KEY = 'celeriac:revoked';

/** Where revokes are announced to running workers (JSON: ids, terminate). */
export const REVOKE_CHANNEL = 'celeriac:revoke';

/** The next free start slot of a rate-limited task name (epoch ms, on Redis's clock). */
export function rateKey(taskName: string): string {
  return `celeriac:rate:${taskName}`;
}

/** Held by the beat process that sends the schedule (a lease, refreshed while it lives). */
export const BEAT_LEADER_KEY = 'celeriac:beat:leader';

/** The last tick sent for a beat schedule entry (epoch ms). */
export function beatLastKey(entry: string): string {
  return `celeriac:beat:last:${entry}`;
}
