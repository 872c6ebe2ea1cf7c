// What the supervisor posts to a pool thread and what comes back cross as columns (workers/columns.ts):
// every kind of task and outcome must arrive as it left, through the structured clone postMessage uses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBatchColumns, fromOutcomeColumns, toBatchColumns, toOutcomeColumns } from '../workers/columns.js';
import type { BatchItem, ThreadOutcome } from '../workers/types.js';

test('a batch and its outcomes cross the thread boundary unchanged, whatever their kind', () => {
  const items: BatchItem[] = [
    { raw: '{"v2": 1}', body: { text: 'W1sxLCAyXSwge30sIG51bGxd', base64: true }, id: 'a', task: 'celery_app.tasks.add', retries: 0, softTimeLimit: null, ignoreResult: false },
    { raw: null, body: { text: '[[1, 2], {}, null]', base64: false }, id: 'c', task: 'celery_app.tasks.add', retries: 1, softTimeLimit: null, ignoreResult: false },
    { raw: '{"v1": 1}', body: null, id: 'b', task: 'old.task', retries: 3, softTimeLimit: 2.5, ignoreResult: true },
  ];
  assert.deepEqual(fromBatchColumns(structuredClone(toBatchColumns(items))), items);

  const exc = { excType: 'ValueError', excModule: 'builtins', excMessage: 'bad', traceback: 'Error: bad\n    at x' };
  const outcomes: ThreadOutcome[] = [
    { ok: true, json: '3', runtimeMs: 0.5 },
    { rejected: 'body is not valid base64' },
    { ok: true, json: null, runtimeMs: 0 },
    { ok: false, exc, runtimeMs: 1.25 },
    { ok: false, exc: { ...exc, excModule: null, traceback: null }, runtimeMs: 2, retryAt: 1_796_190_492_600 },
  ];
  assert.deepEqual(fromOutcomeColumns(structuredClone(toOutcomeColumns(outcomes))), outcomes);
  assert.deepEqual(fromOutcomeColumns(structuredClone(toOutcomeColumns([]))), []);
});
