// The example task module: the tasks of the Celery tutorial app (examples/python/celery_app), under the
// same names, so a Python `add.delay(10, 20)` runs here. They double as fixtures for the tests.
//   celeriac worker -A ./dist/workers/tasks/celery_app.js

import { setTimeout as sleepMs } from 'node:timers/promises';
import { defineTask, type BoundTask } from '../registry.js';

export const add = defineTask('celery_app.tasks.add', { params: ['x', 'y'] }, (x: number, y: number) => x + y);

export const mul = defineTask('celery_app.tasks.mul', { params: ['x', 'y'] }, (x: number, y: number) => x * y);

export const xsum = defineTask('celery_app.tasks.xsum', { params: ['numbers'] }, (numbers: number[]) => numbers.reduce((a, b) => a + b, 0));

/** Returns what it was called with, as the Python `echo` does: `{args, kwargs}`. */
export const echo = defineTask('celery_app.tasks.echo', { bind: true }, (self: BoundTask) => ({
  args: self.request.args,
  kwargs: self.request.kwargs,
}));

/** Raises `ValueError(message)`, seen in Python as `builtins.ValueError`. */
export const fail = defineTask('celery_app.tasks.fail', { params: ['message'] }, (message = 'boom') => {
  const err = new Error(String(message));
  err.name = 'ValueError';
  throw err;
});

export const sleep = defineTask('celery_app.tasks.sleep', { params: ['seconds'] }, async (seconds: number) => {
  await sleepMs(seconds * 1000);
  return seconds;
});

/** Its request, for checking what a task sees (`self.request` in Celery). */
export const whoami = defineTask('celery_app.tasks.whoami', { bind: true }, (self: BoundTask) => ({
  id: self.request.id,
  task: self.request.task,
  retries: self.request.retries,
  hostname: self.request.hostname,
  args: self.request.args,
  kwargs: self.request.kwargs,
}));

/** Returns a value JSON cannot hold, for the serialisation-failure path. */
export const unserializable = defineTask('celery_app.tasks.unserializable', () => () => 'a function');

/** Ends its thread with process.exit, as a crashing native addon or a careless task would. */
export const crash = defineTask('celery_app.tasks.crash', () => {
  process.exit(3);
});

/** Retries until it has been retried `times` times (Celery's `self.retry`); says who finished it. */
export const flaky = defineTask('celery_app.tasks.flaky', { bind: true, params: ['times', 'countdown'] }, (self: BoundTask, times: number, countdown = 1) => {
  if (self.request.retries < times) {
    const err = new Error(`not yet (${self.request.retries})`);
    err.name = 'ValueError';
    throw self.retry({ countdown, exc: err });
  }
  return `js finished at retry ${self.request.retries}`;
});

/** Fails with a ValueError every time; retried automatically with exponential backoff, twice at most. */
export const unreliable = defineTask(
  'celery_app.tasks.unreliable',
  { params: ['message'], autoretryFor: ['ValueError'], maxRetries: 2, retryBackoff: 0.2, retryJitter: false },
  (message = 'flaky backend') => {
    const err = new Error(String(message));
    err.name = 'ValueError';
    throw err;
  },
);
